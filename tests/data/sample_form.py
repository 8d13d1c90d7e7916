"""Fictional residents for a collection form (信息采集表), as a community worker exports it.

`python -m tests.data.sample_form` rewrites tests/data/tongzilin-collection-form.csv;
tests and `make bench` call ``form_csv`` for forms of any size. Every person is
made up: names are drawn from common family and given names, numbers from a
seeded generator.
"""
from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta
from pathlib import Path

HEADER = ["社区", "网格", "户号", "姓名", "性别", "出生日期", "联系电话", "电子邮箱", "居住类型", "国籍",
          "首选语言", "标签", "证件类型", "证件号码", "居留许可类型", "居留许可到期日", "同意短信通知", "同意邮件通知"]
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["秀英", "桂英", "建华", "志强", "晓明", "海燕", "雪梅", "子涵", "一诺", "浩然", "思远", "欣怡", "俊杰", "婷婷"]
FOREIGN = {
    "US": ("en", ["James Miller", "Emily Johnson", "Michael Brown", "Sarah Davis"]),
    "GB": ("en", ["Oliver Smith", "Amelia Jones", "Harry Wilson"]),
    "FR": ("fr", ["Marie Dubois", "Lucas Martin", "Camille Bernard"]),
    "DE": ("de", ["Lukas Schmidt", "Anna Müller", "Felix Wagner"]),
    "JP": ("ja", ["佐藤 花子", "鈴木 一郎", "高橋 美咲"]),
    "KR": ("ko", ["김민준", "이서연", "박지훈"]),
    "IN": ("en", ["Priya Sharma", "Arjun Patel"]),
    "RU": ("ru", ["Иван Петров", "Анна Смирнова"]),
    "IT": ("it", ["Giulia Rossi", "Marco Bianchi"]),
    "TH": ("th", ["Somchai Srisuk", "Napat Chaiyaporn"]),
    "NG": ("en", ["Chinedu Okafor", "Ngozi Adeyemi"]),
}
PERMITS = ["residence_permit_work", "residence_permit_study", "residence_permit_family", "visa_business"]
TAGS = ["志愿者", "党员", "残疾人", "退役军人"]


def rows(count: int, *, seed: int = 7, community: str = "tongzilin", foreign_share: float = 0.3):
    rng = random.Random(seed)
    today = date(2026, 11, 26)
    for index in range(count):
        grid = f"{community}-{rng.randint(1, 12):02d}"
        household = f"{community}-h{index // 3:05d}"
        birth = date(1935, 1, 1) + timedelta(days=rng.randint(0, 32000))
        phone = f"1{rng.choice('3578')}{rng.randint(0, 999999999):09d}"
        tags = "、".join(sorted(set(rng.sample(TAGS, rng.randint(0, 2)) + (["老年人"] if birth.year < 1960 else []))))
        if rng.random() < foreign_share:
            nationality = rng.choice(sorted(FOREIGN))
            language, names = FOREIGN[nationality]
            name = f"{rng.choice(names)} {index}"
            yield [community, grid, household, name, rng.choice("男女"), birth.isoformat(), phone,
                   f"resident{index}@example.org", "境外", nationality, language, tags, "护照",
                   f"{nationality}{rng.randint(0, 99999999):08d}{index}", rng.choice(PERMITS),
                   (today + timedelta(days=rng.randint(-30, 900))).isoformat(), "是", rng.choice(["是", "否"])]
        else:
            name = rng.choice(FAMILY) + rng.choice(GIVEN)
            yield [community, grid, household, name, rng.choice("男女"), birth.isoformat(), phone, "",
                   rng.choice(["户籍", "户籍", "非户籍"]), "CN", "zh-CN", tags, "", "", "", "", "是", "否"]


def form_csv(count: int, **kwargs) -> bytes:
    """A UTF-8 CSV (with BOM, as spreadsheet programs write it) of ``count`` residents."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(rows(count, **kwargs))
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


if __name__ == "__main__":
    path = Path(__file__).with_name("tongzilin-collection-form.csv")
    path.write_bytes(form_csv(200))
    print(f"wrote {path}")
