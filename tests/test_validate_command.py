"""`etl validate` as a user runs it: the reject table, masked examples, quarantine file, exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from specs import signups_project


def validate(file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", "validate", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "YOTPO_TOKEN": "secret-token-value", "COLUMNS": "200"},
    )


def row(email: str = "", phone: str = "", when: str = "2024-03-01T10:00:00Z") -> dict[str, object]:
    return {"email": email, "phone": phone, "signed_up_at": when}


def test_rejects_are_tabled_by_rule_with_distinct_masked_examples_and_quarantined(
    tmp_path: Path,
) -> None:
    rows = [row(email=f"ann{i}@shop.io") for i in range(5)]
    rows += [row(email=f"bob{i}@@bad.example") for i in range(4)]
    rows += [row(email="cy@shop.io", phone="+14155552671")] * 2
    rows += [row(email="dee@shop.io", when="yesterday")]
    result = validate(signups_project(tmp_path, rows))

    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "signups: 12 rows read, 5 valid, 7 rejected" in out
    table = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.split("┃ rule")[1].splitlines()
        if line.count("│") >= 3 and line.split("│")[1].strip()
    }
    assert table == {"email": "4", "customer_identity": "2", "occurred_at": "1"}
    assert out.count("email 'b***@@bad.example' is not a valid address") == 1  # distinct, masked
    assert "bob0" not in out and "+14155552671" not in out and "secret-token-value" not in out

    quarantine = pd.read_csv(next((tmp_path / ".etl" / "rejects" / "signups").glob("*.csv")))
    assert len(quarantine) == 7
    assert quarantine.groupby("reject_rule").size().to_dict() == {
        "customer_identity": 2,
        "email": 4,
        "occurred_at": 1,
    }
    assert set(quarantine.loc[quarantine["reject_rule"] == "email", "email"]) == {
        f"bob{i}@@bad.example" for i in range(4)
    }  # the original values, for fixing


def test_a_clean_source_exits_0_and_writes_no_quarantine(tmp_path: Path) -> None:
    result = validate(
        signups_project(tmp_path, [row(email="ann@Shop.IO"), row(phone="+447911123456")])
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "signups: 2 rows read, 2 valid, 0 rejected"
    assert "rule" not in result.stdout  # no reject table
    assert not (tmp_path / ".etl" / "rejects").exists()


def cells(out: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.count("│") >= 3
    ]


def test_the_type_table_shows_read_and_sent_types_and_null_counts(tmp_path: Path) -> None:
    file = signups_project(tmp_path, [row(email="ann@shop.io"), row(email="bo@shop.io")])
    (tmp_path / "signups.csv").write_text(
        "email,phone,signed_up_at,total,visits\n"
        "ann@shop.io,,2024-03-01T10:00:00Z,NaN,3\n"
        "bo@shop.io,,2024-03-01T10:00:00Z,12.5,NULL\n"
        "cy@shop.io,,2024-03-01T10:00:00Z,twelve,4\n"
    )
    text = (
        file.read_text()
        .replace("customer:", "properties: {total: total, visits: visits}\n  customer:")
        .replace("path: signups.csv", "path: signups.csv\n  columns: {total: float}")
    )
    file.write_text(text)
    result = validate(file)
    assert result.returncode == 1, result.stderr
    assert cells(result.stdout)[:5] == [
        ["signed_up_at", "string (inferred)", "string (timestamp)", "0"],
        ["email", "string (inferred)", "string", "0"],
        ["phone", "empty (inferred)", "nothing (all null)", "3"],
        ["total", "float (declared)", "number", "1"],
        ["visits", "integer (inferred)", "number", "1"],
    ]
    assert ["type", "1", "total 'twelve' is not a float"] in cells(result.stdout)
