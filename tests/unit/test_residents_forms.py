import io

import pytest
from openpyxl import Workbook

from services.residents import forms
from tests.data.sample_form import HEADER, form_csv

ENGLISH = "community_id,name,residence_type,nationality,preferred_language,birth_date,permit_type,permit_expires_on\n"


def commands(form):
    return [forms.to_command(number, raw) for number, raw in form.rows]


def test_the_shipped_sample_form_is_all_valid():
    from pathlib import Path

    form = forms.read((Path(__file__).parents[1] / "data" / "tongzilin-collection-form.csv").read_bytes())
    results = commands(form)
    assert len(results) == 200 and all(errors == [] for _, errors in results)
    foreign = [c for c, _ in results if c["residence_type"] == "foreign"]
    assert 40 <= len(foreign) <= 80  # about 30% foreign, as in Tongzilin


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_english_headers_with_or_without_bom(bom):
    content = bom + (ENGLISH + "tongzilin,Marie Dubois,foreign,FR,fr,1986-04-12,residence_permit_work,2027-01-31\n").encode()
    [(command, errors)] = commands(forms.read(content))
    assert errors == [] and command["name"] == "Marie Dubois" and command["permit_expires_on"].year == 2027


def test_chinese_headers_and_values_are_translated():
    content = form_csv(1, seed=3, foreign_share=0.0)
    [(command, errors)] = commands(forms.read(content))
    assert errors == []
    assert command["residence_type"] in ("registered", "non_registered") and command["gender"] in ("male", "female")
    assert command["consent"] == {"inapp": True, "sms": True, "email": False}


def test_each_bad_row_is_reported_with_row_column_and_reason_and_good_rows_go_on():
    content = (ENGLISH
               + "tongzilin,Marie Dubois,foreign,FR,fr,1986-04-12,residence_permit_work,2024-13-01\n"
               + "tongzilin,王秀英,registered,CN,zh-CN,1948-03-02,,\n"
               + "tongzilin,,foreign,XX,en,,,\n").encode()
    results = commands(forms.read(content))
    assert [str(e) for e in results[0][1]] == ["row 2, permit_expires_on: not a date: 2024-13-01"]
    assert results[1][1] == [] and results[1][0]["name"] == "王秀英"
    assert sorted(str(e) for e in results[2][1]) == [
        "row 4, name: Missing data for required field",
        "row 4, nationality: not an ISO 3166-1 alpha-2 country code: XX",
    ]


def test_personal_values_are_not_echoed_in_errors():
    content = (ENGLISH.replace("\n", ",phone\n") + "tongzilin,Marie,foreign,FR,fr,,,,SECRET-PHONE\n").encode()
    [(_, errors)] = commands(forms.read(content))
    assert errors and all("SECRET-PHONE" not in str(e) for e in errors)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (ENGLISH.encode(), "header but no rows"),
        ((ENGLISH + ",,,,,,,\n").encode(), "header but no rows"),
        ("社区,姓名\ntongzilin,王秀英\n".encode(), "missing required columns: residence_type"),
        ("社区,姓名,居住类型,国籍\ntongzilin,王秀英,户籍,CN\n".encode("gbk"), "not UTF-8"),
        (b"PK\x03\x04 this is not really a workbook", "not a readable XLSX"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(content, message):
    with pytest.raises(forms.FormError, match=message):
        forms.read(content)


def test_very_long_values_are_rejected_per_row():
    content = (ENGLISH + f"tongzilin,{'名' * 5000},registered,CN,zh-CN,,,\n").encode()
    [(_, errors)] = commands(forms.read(content))
    assert [e.column for e in errors] == ["name"]


def test_xlsx_export_of_the_form():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    from datetime import datetime

    sheet.append(["tongzilin", "tongzilin-01", "h1", "Marie Dubois", "女", datetime(1986, 4, 12), 13800001111, "",
                  "境外", "FR", "fr", "志愿者", "护照", "E12345678", "residence_permit_work", datetime(2027, 1, 31),
                  "是", "否"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    [(command, errors)] = commands(forms.read(buffer.getvalue(), "form.xlsx"))
    assert errors == []
    assert command["phone"] == "13800001111" and command["tags"] == ["volunteer"]
    assert command["birth_date"].isoformat() == "1986-04-12" and command["document_type"] == "passport"


def test_a_50000_row_form_reads_and_validates():
    form = forms.read(form_csv(50_000))
    assert len(form.rows) == 50_000
    assert form.rows[-1][0] == 50_001  # spreadsheet row numbers: the header is row 1
    assert all(not errors for _, errors in commands(form))


def test_an_unclosed_quote_refuses_the_file_naming_its_row():
    content = "\n".join([",".join(HEADER)] + form_csv(3, seed=3).decode("utf-8-sig").splitlines()[1:2]
                        + ['tongzilin,,,"Jean Valjean,男,1990-01-01'] + form_csv(3, seed=4).decode().splitlines()[1:])
    with pytest.raises(forms.FormError) as refused:
        forms.read(content.encode())
    assert refused.value.code == "unclosed_quote" and str(refused.value).startswith("row 3: a quote opened")


def test_a_stray_quote_inside_a_cell_is_still_read():
    content = "\n".join([",".join(HEADER), 'tongzilin,,,Jean "JJ" Valjean,男,,,,户籍,CN,zh-CN,,,,,,,'])
    [(_, row)] = forms.read(content.encode()).rows
    assert row["name"] == 'Jean "JJ" Valjean'


def test_cells_beyond_the_header_are_a_row_error_and_empty_ones_are_not():
    lines = form_csv(3, seed=3).decode("utf-8-sig").splitlines()
    content = "\n".join([lines[0], lines[1] + ",,", lines[2] + ",surplus", lines[3]])
    form = forms.read(content.encode())
    assert len(form.rows) == 3
    assert {n: [str(e) for e in errors] for n, errors in form.row_errors.items()} == {
        3: [f"row 3, column {len(HEADER) + 1}: a value in a column without a header"]}


@pytest.mark.parametrize("header", ["name,name", "name,姓名"])
def test_a_repeated_column_refuses_the_file(header):
    content = f"community_id,residence_type,nationality,{header}\ntongzilin,registered,CN,A,B\n".encode()
    with pytest.raises(forms.FormError) as refused:
        forms.read(content)
    assert refused.value.code == "repeated_column" and str(refused.value).startswith("name is given twice")
    assert refused.value.details == {"column": "name", "columns": [4, 5]}


def test_a_value_under_an_empty_title_in_xlsx_is_a_row_error():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["community_id", "name", "residence_type", "nationality", None, None])
    sheet.append(["tongzilin", "王秀英", "registered", "CN", None, "13800001111"])
    sheet.append(["tongzilin", "李桂英", "registered", "CN"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    form = forms.read(buffer.getvalue(), "form.xlsx")
    assert [str(e) for errors in form.row_errors.values() for e in errors] == [
        "row 2, column 6: a value in a column without a header"]
