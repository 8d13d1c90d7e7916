"""The resident information collection form (信息采集表): CSV or XLSX in, commands out.

Pure Python. Headers may be in Chinese or English; common Chinese values
(女, 境外, 护照, 志愿者…) are translated to the registry's codes. Each bad
row is reported with its number, column and reason; good rows go on.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime

from marshmallow import ValidationError

from services.residents.domain import RegisterResident

HEADERS = {
    "community_id": ("community_id", "community", "社区", "所属社区", "社区编号"),
    "grid_id": ("grid_id", "grid", "网格", "网格编号"),
    "household_id": ("household_id", "household", "户号", "家庭户号"),
    "name": ("name", "姓名"),
    "gender": ("gender", "性别"),
    "birth_date": ("birth_date", "出生日期"),
    "phone": ("phone", "联系电话", "电话", "手机号码"),
    "email": ("email", "电子邮箱", "邮箱"),
    "residence_type": ("residence_type", "居住类型", "人员类型"),
    "nationality": ("nationality", "国籍", "国籍代码"),
    "preferred_language": ("preferred_language", "首选语言", "语言"),
    "tags": ("tags", "标签", "人员标签"),
    "document_type": ("document_type", "证件类型"),
    "document_number": ("document_number", "证件号码"),
    "permit_type": ("permit_type", "居留许可类型", "签证类型"),
    "permit_expires_on": ("permit_expires_on", "居留许可到期日", "有效期至"),
    "consent_sms": ("consent_sms", "同意短信通知"),
    "consent_email": ("consent_email", "同意邮件通知"),
}
_BY_HEADER = {alias.strip().lower(): name for name, aliases in HEADERS.items() for alias in aliases}
REQUIRED_COLUMNS = ("community_id", "name", "residence_type", "nationality")
# Columns whose values are personal data: never echoed in an error report.
PERSONAL_COLUMNS = frozenset({"name", "phone", "email", "document_number", "birth_date"})
VALUES = {
    "gender": {"女": "female", "男": "male", "其他": "other", "未说明": "unspecified"},
    "residence_type": {"户籍": "registered", "户籍人口": "registered", "非户籍": "non_registered",
                       "流动人口": "non_registered", "境外": "foreign", "境外人员": "foreign", "外籍": "foreign"},
    "document_type": {"身份证": "id_card", "居民身份证": "id_card", "护照": "passport",
                      "通行证": "travel_permit", "其他": "other"},
    "tags": {"老年人": "elderly", "残疾人": "disabled", "志愿者": "volunteer", "党员": "party_member",
             "退役军人": "veteran", "低保": "low_income"},
}
YES = {"y", "yes", "true", "1", "是", "同意"}
_REGISTER = RegisterResident()  # one instance: building a schema costs more than loading a row
XLSX_MAGIC = b"PK\x03\x04"


class FormError(Exception):
    """The file as a whole cannot be read: no row is imported. ``code`` and ``details`` for the 400."""

    def __init__(self, message: str, code: str = "invalid_form", details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.details = details or {}


def repeated(column: str) -> str:
    """The reason a column given twice is refused, at the ingest door as in a form."""
    return f"{column} is given twice"


@dataclass
class RowError:
    row: int
    column: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "reason": self.reason}

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.reason}"


@dataclass
class Form:
    columns: list[str]
    rows: list[tuple[int, dict]]  # (row number as a spreadsheet shows it, raw values)
    ignored_columns: list[str] = field(default_factory=list)
    row_errors: dict[int, list[RowError]] = field(default_factory=dict)  # found while reading, by row number


def read(content: bytes, filename: str = "") -> Form:
    if not content or not content.strip():
        raise FormError("the file is empty")
    if content.startswith(XLSX_MAGIC) or filename.lower().endswith(".xlsx"):
        header, records = _read_xlsx(content)
    else:
        header, records = _read_csv(content)
    columns, ignored = _map_header(header)
    titled = {i for i, title in enumerate(header) if title.strip()}  # beyond it, or under an empty title
    rows, row_errors = [], {}
    for number, values in records:
        if not any(v.strip() for v in values):
            continue
        rows.append((number, dict(zip(columns, values))))
        untitled = next((i for i, value in enumerate(values) if value.strip() and i not in titled), None)
        if untitled is not None:  # the value is not echoed: it may be personal data
            row_errors[number] = [RowError(number, f"column {untitled + 1}", "a value in a column without a header")]
    if not rows:
        raise FormError("the file has a header but no rows")
    return Form([c for c in columns if c], rows, ignored, row_errors)


def _read_csv(content: bytes):
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormError(
            f"the file is not UTF-8 (byte 0x{content[exc.start]:02x} at position {exc.start}); "
            "save the form as 'CSV UTF-8'"
        ) from None
    records = []
    try:  # strict: a quote never closed is an error, not the rest of the file read into one cell
        records.extend(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            row = len(records) + 1
            raise FormError(f"row {row}: a quote opened in this row is never closed, so every later row would "
                            "be read into one cell", code="unclosed_quote", details={"row": row}) from None
        records = _read_csv_leniently(text)  # a stray quote inside a cell, as spreadsheets accept it
    header, body = records[0], records[1:]
    return header, [(index + 2, row) for index, row in enumerate(body)]


def _read_csv_leniently(text: str) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise FormError(f"the file is not valid CSV: {exc}") from None


def _read_xlsx(content: bytes):
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise FormError(f"the file is not a readable XLSX workbook: {type(exc).__name__}") from None
    rows = workbook.worksheets[0].iter_rows(values_only=True)
    header = [_cell(v) for v in next(rows, ())]
    if not any(header):
        raise FormError("the file is empty")
    return header, [(index + 2, [_cell(v) for v in row]) for index, row in enumerate(rows)]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _map_header(header: list[str]) -> tuple[list[str | None], list[str]]:
    columns, ignored = [], []
    for title in header:
        name = _BY_HEADER.get(title.strip().lower())
        if name is not None and name in columns:
            raise FormError(f"{repeated(name)}: columns {columns.index(name) + 1} and {len(columns) + 1} "
                            f"({title.strip()!r})", code="repeated_column",
                            details={"column": name, "columns": [columns.index(name) + 1, len(columns) + 1]})
        columns.append(name)
        if name is None and title.strip():
            ignored.append(title.strip())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise FormError(
            "missing required columns: " + ", ".join(f"{c} ({'/'.join(HEADERS[c][1:3])})" for c in missing)
        )
    return columns, ignored


def to_command(number: int, raw: dict) -> tuple[dict | None, list[RowError]]:
    """One row as a ``RegisterResident`` command, or the reasons it is not one."""
    values = {k: v.strip() for k, v in raw.items() if k and v is not None and v.strip()}
    for column, translations in VALUES.items():
        if column in values and column != "tags":
            values[column] = translations.get(values[column], values[column])
    if "tags" in values:
        parts = values["tags"].replace("、", ";").replace(",", ";").replace(",", ";").split(";")
        values["tags"] = [VALUES["tags"].get(p.strip(), p.strip()) for p in parts if p.strip()]
    consent = {"inapp": True}
    for channel in ("sms", "email"):
        consent[channel] = values.pop(f"consent_{channel}", "").lower() in YES
    values["consent"] = consent
    try:
        return _REGISTER.load(values), []
    except ValidationError as exc:
        return None, [RowError(number, column, _reason(column, messages, values))
                      for column, messages in _flatten(exc.messages)]


def _flatten(messages, prefix=""):
    for key, value in messages.items():
        name = f"{prefix}{key}" if key != "_schema" else (prefix.rstrip(".") or "row")
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _reason(column: str, messages: list, values: dict) -> str:
    text = "; ".join(str(m).rstrip(".") for m in messages)
    value = values.get(column)
    if column.endswith(("_on", "_date")) and isinstance(value, str) and "date" in text.lower():
        return f"not a date: {value}"
    if value is not None and column not in PERSONAL_COLUMNS and isinstance(value, str) and value not in text:
        return f"{text}: {value}"
    return text
