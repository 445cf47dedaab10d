"""`label_file`: text / JSONL / CSV in, CSV / JSONL / Parquet out, bad rows kept with an error."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.label_io import label_file

COLUMNS = ["id", *CHEXPERT_OBSERVATIONS, "error"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_text_input_to_csv(tmp_path: Path) -> None:
    src = tmp_path / "reports.txt"
    src.write_text("No pleural effusion.\nModerate cardiomegaly. Possible pneumonia.\n", encoding="utf-8")
    out = tmp_path / "labels" / "out.csv"  # the folder does not exist yet
    assert label_file(str(src), str(out)).labelled == 2
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["0", "1"]
    assert rows[0]["Pleural Effusion"] == "0" and rows[0]["No Finding"] == "1"
    assert rows[1]["Cardiomegaly"] == "1" and rows[1]["Pneumonia"] == "-1"
    assert rows[1]["No Finding"] == "" and rows[1]["Edema"] == "" and rows[1]["error"] == ""


def test_jsonl_input_with_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "reports.jsonl"
    lines = [
        json.dumps({"study": "s1", "text": "Small left pneumothorax."}),
        json.dumps({"study": "s2", "text": 42}),
        "{not json",
        "",  # blank lines are not records
        json.dumps({"study": "s4"}),
        json.dumps({"study": "s5", "text": "No acute process."}),
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert label_file(str(src), str(out), column="text", id_column="study").labelled == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == ["study", *CHEXPERT_OBSERVATIONS, "error"]
    assert [r["study"] for r in rows] == ["s1", "s2", None, "s4", "s5"]
    assert rows[0]["Pneumothorax"] == 1 and rows[0]["error"] is None
    assert rows[1]["error"] == "row 1: field 'text' is int, not a string"
    assert rows[2]["error"].startswith("row 2: invalid JSON")
    assert rows[3]["error"] == "row 3: field 'text' is missing"
    for bad in rows[1:4]:
        assert all(bad[o] is None for o in CHEXPERT_OBSERVATIONS)
    assert rows[4]["No Finding"] == 1


def test_csv_input_to_parquet(tmp_path: Path) -> None:
    src = tmp_path / "reports.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report", "other"])
        writer.writerow(["FINDINGS: Heart size is normal.\nIMPRESSION: No pleural effusion.", "x"])
        writer.writerow(["", "missing report"])
        writer.writerow(["Right IJ central line tip in the SVC.", "y"])
    out = tmp_path / "out.parquet"
    assert label_file(str(src), str(out)).labelled == 2
    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    assert str(table.schema.field("Cardiomegaly").type) == "int8"
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert (rows[0]["Cardiomegaly"], rows[0]["Pleural Effusion"], rows[0]["No Finding"]) == (0, 0, 1)
    assert rows[1]["error"] == "row 1: field 'report' is missing"
    assert rows[2]["Support Devices"] == 1


def test_compressed_csv_with_named_columns(tmp_path: Path) -> None:
    src = tmp_path / "reports.csv.gz"
    with gzip.open(src, "wt", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["sid", "txt"], ["a", "No pneumothorax."], ["b", "Small pneumothorax."]])
    out = tmp_path / "out.csv"
    assert label_file(str(src), str(out), column="txt", id_column="sid").labelled == 2
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["sid"], r["Pneumothorax"]) for r in rows] == [("a", "0"), ("b", "1")]


def test_unreadable_requests_fail_loudly(tmp_path: Path) -> None:
    src = tmp_path / "reports.csv"
    src.write_text("text\nNo effusion.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no column 'report'"):
        label_file(str(src), str(tmp_path / "out.csv"))
    txt = tmp_path / "reports.txt"
    txt.write_text("No effusion.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="plain-text"):
        label_file(str(txt), str(tmp_path / "out.csv"), column="report")


def test_blank_text_line_is_an_error_row(tmp_path: Path) -> None:
    src = tmp_path / "reports.txt"
    src.write_text("No effusion.\n\nSmall effusion.", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert label_file(str(src), str(out)).labelled == 2
    rows = read_csv(out)
    assert [r["Pleural Effusion"] for r in rows] == ["0", "", "1"]
    assert rows[1]["error"] == "row 1: field 'report' is empty"


@pytest.mark.s3
def test_s3_input_and_output(s3_bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    with fs.open(f"{s3_bucket}/in/reports.txt", "w") as fh:
        fh.write("No effusion.\nSmall pneumothorax.\n")
    assert label_file(f"{s3_bucket}/in/reports.txt", f"{s3_bucket}/out/labels.parquet").labelled == 2
    with fs.open(f"{s3_bucket}/out/labels.parquet", "rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    assert [(r["Pleural Effusion"], r["Pneumothorax"]) for r in rows] == [(0, None), (None, 1)]
