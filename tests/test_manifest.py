"""The pair schema and manifest round trips through Ray Data, on local disk and on S3 (moto)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pairaug_ray import schema, storage
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import (
    SUMMARY_COLUMNS,
    ManifestNotFoundError,
    read_columns,
    read_info,
    summarize,
    summarize_root,
)


def _rows(n: int = 5) -> list[dict]:
    rows = []
    for i in range(n):
        report = f"Small left pleural effusion number {i}."
        rows.append(
            {
                schema.PAIR_ID: schema.make_pair_id("test", i, report),
                schema.PATIENT_ID: f"p{i // 2}",
                schema.STUDY_ID: f"s{i}",
                schema.IMAGE_URI: f"images/{i}.png",
                schema.REPORT: report,
                schema.FINDINGS: report,
                schema.label_column("Pleural Effusion"): 1,
                schema.label_column("Pneumothorax"): 0 if i % 2 else None,
                schema.label_column("Edema"): -1 if i == 3 else None,
                schema.SPLIT: "train" if i < 4 else "test",
                schema.ORIGIN: schema.ORIGIN_REAL if i < 3 else schema.ORIGIN_INTER,
                schema.PARENT_ID: None if i < 3 else "abc",
                schema.PROVENANCE: schema.make_provenance(
                    "test", model_id="m", prompt="p", seed=i, params={"k": i}
                ),
                schema.STATUS: schema.STATUS_OK if i != 4 else schema.STATUS_ERROR,
                schema.ERROR: None if i != 4 else "row 4: image unreadable",
                "user_note": f"note {i}",
            }
        )
    return rows


def test_pair_id_is_stable_and_content_derived():
    assert schema.make_pair_id("a", 1, None) == schema.make_pair_id("a", 1, None)
    assert schema.make_pair_id("a", 1) != schema.make_pair_id("a", 2)
    assert schema.make_pair_id("ab", "c") != schema.make_pair_id("a", "bc")  # parts are delimited
    assert len(schema.make_pair_id("x")) == 24


def test_label_columns_cover_the_14_observations():
    assert len(schema.LABEL_COLUMNS) == 14 and len(set(schema.LABEL_COLUMNS)) == 14
    assert schema.label_column("Pleural Effusion") == "label_pleural_effusion"
    with pytest.raises(KeyError, match="unknown CheXpert observation"):
        schema.label_column("Effusion")


def test_conform_fills_casts_and_keeps_user_columns():
    t = schema.conform(pa.table({schema.PAIR_ID: ["a"], schema.label_column("Edema"): [1.0], "extra": [3]}))
    assert t.schema.field(schema.label_column("Edema")).type == pa.int8()
    assert t.column_names[: len(schema.CORE_COLUMNS)] == list(schema.CORE_COLUMNS)
    assert t.column_names[-1] == "extra" and t.column(schema.REPORT).null_count == 1


@pytest.mark.parametrize(
    "column, values, match",
    [
        (schema.SPLIT, ["training"], "column 'split' has values \\['training'\\]"),
        (schema.label_column("Edema"), [2], "label_edema"),
        (schema.STATUS, ["done"], "column 'status'"),
    ],
)
def test_conform_rejects_bad_values(column, values, match):
    with pytest.raises(schema.ManifestSchemaError, match=match):
        schema.conform(pa.table({schema.PAIR_ID: ["a"], column: values}))


def test_conform_requires_pair_id():
    with pytest.raises(schema.ManifestSchemaError, match="no 'pair_id'"):
        schema.conform(pa.table({schema.REPORT: ["x"]}))
    with pytest.raises(schema.ManifestSchemaError, match="null value"):
        schema.conform(pa.table({schema.PAIR_ID: pa.array([None], pa.string())}))


def _round_trip(root: str) -> None:
    rows = _rows()
    write_manifest(rows, root, info={"corpus": "unit"})
    ds = read_manifest(root)
    back = sorted(ds.take_all(), key=lambda r: r[schema.STUDY_ID])
    assert len(back) == len(rows)
    for orig, got in zip(rows, back, strict=True):
        for key in (
            schema.PAIR_ID,
            schema.REPORT,
            schema.SPLIT,
            schema.ORIGIN,
            schema.PARENT_ID,
            schema.ERROR,
            "user_note",
        ):
            assert got[key] == orig[key], key
        assert got[schema.label_column("Pleural Effusion")] == 1
        assert got[schema.label_column("Pneumothorax")] == orig[schema.label_column("Pneumothorax")]
        assert got[schema.PROVENANCE]["seed"] == orig[schema.PROVENANCE]["seed"]
        assert got[schema.PROVENANCE]["prompt_hash"] == schema.text_hash("p")
        # Relative image paths come back resolved against the dataset root.
        assert got[schema.IMAGE_URI] == storage.join(storage.absolute(root), orig[schema.IMAGE_URI])
    s = summarize_root(root)  # a column read with pyarrow, no Ray execution
    assert s == summarize(read_columns(root, list(SUMMARY_COLUMNS)))
    assert s["rows"] == 5 and s["patients"] == 3
    assert s["split"] == {"test": 1, "train": 4} and s["status"] == {"error": 1, "ok": 4}
    assert s["labels"]["Edema"]["uncertain"] == 1 and s["labels"]["Pleural Effusion"]["positive"] == 5
    assert read_info(root)["corpus"] == "unit"
    files = storage.list_files(storage.join(root, "manifest"), ".parquet")
    assert files, "the manifest is Parquet"
    # Overwrite replaces the manifest instead of appending duplicates.
    write_manifest(rows[:2], root)
    assert read_manifest(root).count() == 2


def test_round_trip_local(ray_local, tmp_path):
    _round_trip(str(tmp_path / "pairs"))


@pytest.mark.s3
def test_round_trip_s3(ray_local, s3_bucket):
    _round_trip(f"{s3_bucket}/datasets/pairs")


def test_schema_is_identical_across_files(ray_local, tmp_path):
    """Blocks with different inferred types (all-null labels, float labels) still share one schema."""
    import pyarrow.parquet as pq

    root = str(tmp_path / "mixed")
    a = pa.table({schema.PAIR_ID: ["a"], schema.label_column("Edema"): pa.array([None], pa.null())})
    b = pa.table({schema.PAIR_ID: ["b"], schema.label_column("Edema"): [1.0]})
    import ray

    write_manifest(ray.data.from_arrow([a, b]), root)
    schemas = {
        pq.read_schema(f).remove_metadata()
        for f in storage.list_files(storage.join(root, "manifest"), ".parquet")
    }
    assert len(schemas) == 1
    assert next(iter(schemas)).field(schema.label_column("Edema")).type == pa.int8()


def test_missing_manifest_error(ray_local, tmp_path):
    with pytest.raises(ManifestNotFoundError, match="no pair manifest"):
        read_manifest(str(tmp_path / "nothing"))
