"""The `augment` job end to end: on S3, killed and resumed, with bad input; re-pruning; the error budget."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pairaug_ray import schema, storage
from pairaug_ray.config import load_config, parse_config
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pipeline.augment import ErrorBudgetExceeded, augment_job
from pairaug_ray.pipeline.prune import prune_job

pytestmark = pytest.mark.slow


def job_dict(output_dir: str, corpus: dict, tiny_models: dict, **sections) -> dict:
    """A small, fast augment job: 64 px, 5 denoising steps, one CPU actor per stage."""
    d = {
        "run": {"name": "t", "output_dir": output_dir, "seed": 3},
        "ray": {"progress_bars": False},
        "corpus": corpus,
        "models": {"diffusion": tiny_models["diffusion"], "scorer": tiny_models["scorer"]},
        "rewrite": {"modes": ["inter", "intra", "paraphrase"], "min_words": 10, "rows_per_file": 8},
        "generate": {
            "height": 64,
            "width": 64,
            "num_gpus": 0,
            "num_cpus": 0.5,
            "max_actors": 1,
            "rows_per_file": 8,
            "inter": {"num_inference_steps": 4, "batch_size": 4},
            "intra": {"num_inference_steps": 4},
        },
        "score": {"num_cpus": 0.5, "max_actors": 1, "rows_per_file": 8},
        "prune": {"tau": -0.12},
        "augment": {"examples": 2},
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return d


def _pairs(root: str) -> list[dict]:
    """Every row of a pair dataset, read with pyarrow (a Ray Data execution per read costs a second)."""
    tables = []
    for uri in storage.list_files(storage.join(root, "manifest"), ".parquet"):
        fs, path = storage.filesystem(uri)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables, promote_options="default").to_pylist()


def _check_synthetic(cfg) -> list[dict]:
    """Every pair once; every generated pair scored, flagged by the recorded thresholds."""
    synthetic = _pairs(cfg.synthetic_dir())
    ids = [r[schema.PAIR_ID] for r in synthetic]
    assert len(ids) == len(set(ids))
    generated = _pairs(cfg.generate_dir())
    augtext = [r for r in _pairs(cfg.rewrite_dir()) if r[schema.ORIGIN] == "augtext"]
    assert set(ids) == {r[schema.PAIR_ID] for r in generated} | {r[schema.PAIR_ID] for r in augtext}
    info = json.loads(synthetic[0][schema.PRUNING])
    for r in synthetic:
        if r[schema.ORIGIN] == "inter" and r[schema.STATUS] == "ok":
            assert r[schema.KEPT] == (r[schema.SCORE_A] > info["tau"])
        if r[schema.ORIGIN] == "intra" and r[schema.STATUS] == "ok":
            assert r[schema.KEPT] == all(
                r[k] > info["thresholds"][k] for k in (schema.SCORE_S1, schema.SCORE_S2, schema.SCORE_S3)
            )
            assert json.loads(r[schema.SCORING])["original"] == "real"
        if r[schema.STATUS] != "ok":
            assert not r[schema.KEPT]
    return synthetic


def write_bad_corpus(root: str, phantom_root: str) -> dict[str, str]:
    """Six good rows and one of each kind of bad row under ROOT (local or s3://); returns
    pair_id -> the error expected for it."""
    good = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"][:6]
    corrupt = storage.join(root, "corrupt.png")
    storage.write_bytes(corrupt, b"\x89PNG\r\n\x1a\n this is not image data")
    rows, expected = [], {}

    def add(base: dict, pid: str, error: str | None, **change):
        rows.append({**base, schema.PAIR_ID: pid, **change})
        if error:
            expected[pid] = error

    for r in good:
        add(r, r[schema.PAIR_ID], None)
    g = good[0]
    add(g, "bad-empty", "report is empty", **{schema.REPORT: "   "})
    add(
        g,
        "bad-bytes",
        "not valid UTF-8 (byte 0xff",
        **{schema.REPORT: b"Heart size normal \xff\xfe effusion."},
    )
    add(g, "bad-long", "1,000,000 characters", **{schema.REPORT: "x" * 1_000_000})
    add(g, "bad-missing", "file not found", **{schema.IMAGE_URI: storage.join(root, "no-such.png")})
    add(g, "bad-corrupt", "not a readable PNG/JPEG/DICOM", **{schema.IMAGE_URI: corrupt})
    add(g, "bad-label", "'yes' is not a label", **{schema.LABEL_COLUMNS[0]: "yes"})
    add(g, good[1][schema.PAIR_ID], "duplicate pair_id", **{schema.REPORT: g[schema.REPORT] + " Also noted."})
    for r in rows:  # report as bytes, one label column as text: a wrong column type
        r[schema.REPORT] = (
            r[schema.REPORT] if isinstance(r[schema.REPORT], bytes) else r[schema.REPORT].encode()
        )
        lab = r[schema.LABEL_COLUMNS[0]]
        r[schema.LABEL_COLUMNS[0]] = lab if isinstance(lab, str) else ("" if lab is None else f"{float(lab)}")
    table = pa.Table.from_pylist(rows)
    assert table.schema.field(schema.REPORT).type == pa.binary()
    assert table.schema.field(schema.LABEL_COLUMNS[0]).type == pa.string()
    fs, path = storage.filesystem(storage.join(root, "manifest", "part-0.parquet"))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(table, f)
    return expected


@pytest.fixture(scope="module")
def bad_corpus(phantom_root, tmp_path_factory) -> tuple[str, dict[str, str]]:
    root = str(tmp_path_factory.mktemp("bad"))
    return root, write_bad_corpus(root, phantom_root)


@pytest.fixture(scope="module")
def s3_run(ray_local, s3_server, phantom_root, tiny_models, tmp_path_factory, kill_midway):
    """One augment job shared by the tests below (each job costs about a minute on 2 cores): a corpus
    of six good rows and seven bad ones, on S3, augmented into S3 in all three modes, by a `pairaug
    augment` process killed (SIGKILL) half-way through generation and then rerun to the end."""
    import s3fs

    bucket = "s3://augment-job"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket[5:])
    corpus = f"{bucket}/bad-corpus"
    expected = write_bad_corpus(corpus, phantom_root)
    d = job_dict(
        f"{bucket}/run",
        {"kind": "manifest", "manifest": corpus},
        tiny_models,
        ray={"address": ray_local.get_runtime_context().gcs_address},
        models={"cache_dir": str(tmp_path_factory.mktemp("cache"))},
        augment={"max_error_fraction": 0.9, "examples": 2},
        generate={"rows_per_file": 2, "inter": {"num_inference_steps": 4, "batch_size": 2}},
    )
    cfg_path = tmp_path_factory.mktemp("job") / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    cfg = load_config(cfg_path)
    partial = kill_midway(["augment", "--config", str(cfg_path)], watch=cfg.generate_dir(), rows=2)
    assert not storage.exists(storage.join(cfg.run.output_dir, "summary.json"))
    # The rerun, in this process, resumes: validation and rewrites are reused, generation continues.
    return cfg, augment_job(cfg), expected, partial


def test_augment_on_s3(s3_run):
    cfg, summary, _, _ = s3_run
    assert cfg.run.output_dir.startswith("s3://")
    synthetic = _check_synthetic(cfg)
    origins = Counter(r[schema.ORIGIN] for r in synthetic)
    assert origins["inter"] > 0 and origins["intra"] > 0 and origins["augtext"] > 0
    assert all(
        r[schema.IMAGE_URI].startswith(cfg.generate_dir()) for r in synthetic if r[schema.ORIGIN] != "augtext"
    )

    on_s3 = json.loads(storage.read_text(f"{cfg.run.output_dir}/summary.json"))
    assert on_s3["stages"] == json.loads(storage.json_text(summary["stages"]))
    assert on_s3["stages"]["generate"]["ok"] == origins["inter"] + origins["intra"]
    assert on_s3["stages"]["score"]["ok"] == on_s3["stages"]["generate"]["ok"]
    kept = sum(c["kept"] for c in on_s3["stages"]["prune"]["by_origin"].values())
    assert kept == sum(bool(r[schema.KEPT]) for r in synthetic) > 0
    for picture in ("scores.png", "examples.png"):
        assert storage.read_bytes(f"{cfg.run.output_dir}/{picture}")[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_s3["outputs"]["examples"] == f"{cfg.run.output_dir}/examples.png"


def test_bad_rows_are_recorded_and_good_rows_proceed(s3_run):
    cfg, summary, expected, _ = s3_run
    validated = _pairs(cfg.validated_dir())
    assert len(validated) == 13
    errors = {r[schema.PAIR_ID]: r[schema.ERROR] for r in validated if r[schema.STATUS] == "error"}
    dup_id = next(pid for pid, e in expected.items() if e == "duplicate pair_id")
    for pid, message in expected.items():
        if pid == dup_id:  # one of the two rows that share the id keeps it; the other is renamed
            assert sum("duplicate pair_id " + dup_id in e for e in errors.values()) == 1
        else:
            assert message in errors[pid], (pid, errors.get(pid))
    assert len(errors) == len(expected)
    assert summary["stages"]["validate"] == {
        "rows": 13,
        "ok": 6,
        "error": 7,
        "error_fraction": round(7 / 13, 4),
    }
    # Every good row went on: each was rewritten and drawn.
    good = {r[schema.PAIR_ID] for r in validated if r[schema.STATUS] == "ok"}
    rewritten = {r[schema.PARENT_ID] for r in _pairs(cfg.rewrite_dir())}
    assert rewritten == good
    assert summary["stages"]["generate"]["ok"] > 0 and summary["stages"]["generate"].get("error", 0) == 0


def _stamps(*roots: str) -> dict[str, str]:
    out = {}
    for root in roots:
        fs, path = storage.filesystem(root)
        for f in fs.find(path, detail=True).values():
            out[f["name"]] = str(f.get("LastModified") or f.get("mtime"))
    assert out
    return out


def test_reprune_without_regenerating(s3_run, capsys):
    from pairaug_ray.cli import main

    cfg, _, _, _ = s3_run
    stamp = _stamps(cfg.generate_dir(), cfg.score_dir())
    prune_job(cfg, tau=2.0, epsilon=0.0)  # cosines never exceed 1: no InterAug pair survives
    strict = _check_synthetic(cfg)
    assert not any(r[schema.KEPT] for r in strict if r[schema.ORIGIN] == "inter")

    config = cfg.run.output_dir + "/job.yaml"
    storage.write_text(config, yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["prune", "--config", config, "--tau", "-2", "--epsilon", "5"]) == 0
    loose = _check_synthetic(cfg)
    assert all(r[schema.KEPT] for r in loose if r[schema.STATUS] == "ok")
    assert "tau -2.0, epsilon 5.0" in capsys.readouterr().out
    # Nothing upstream was touched.
    assert stamp == _stamps(cfg.generate_dir(), cfg.score_dir())


def test_near_duplicate_rule_drops_a_copied_training_image(s3_run, tiny_models, tmp_path):
    """prune.near_duplicate: an InterAug image that is a training image (copied in here, as a
    memorising generator would reproduce it) is dropped with its reason in the row; the others keep
    PairAug's verdict and their nearest-training similarity. Provenance: IntraAug and AugText rows
    are flagged as the source patient's data, InterAug rows are not."""
    from pairaug_ray.pairs import manifest_columns, read_columns
    from pairaug_ray.pipeline.common import real_pairs_root
    from pairaug_ray.pipeline.prune import near_duplicates

    def resolved(root: str) -> list[dict]:  # image URIs absolute: the rows move to another root
        return read_columns(root, manifest_columns(root)).to_pylist()

    cfg, _, _, _ = s3_run
    scored = resolved(cfg.score_dir())
    train = [
        r for r in resolved(real_pairs_root(cfg)) if r[schema.SPLIT] == "train" and r[schema.STATUS] == "ok"
    ]
    inter = [r for r in scored if r[schema.ORIGIN] == "inter" and r[schema.STATUS] == "ok"]
    assert train and len(inter) >= 2
    copied = inter[0]
    copied[schema.IMAGE_URI] = train[0][schema.IMAGE_URI]
    src = str(tmp_path / "scored")
    from pairaug_ray.manifest import write_manifest

    write_manifest(scored, src)
    # The tiny CLIP has random weights: its embeddings of any two radiographs are close (cosine
    # about 0.997), so the threshold is set; calibration is tested on constructed features.
    near = {"enabled": True, "encoder": {"path": tiny_models["scorer"]}, "threshold": 0.99995}
    base = cfg.model_dump(mode="json")
    nd_cfg = parse_config({**base, "prune": {**base["prune"], "near_duplicate": near, "output": None}})
    out = str(tmp_path / "synthetic")
    prune_job(nd_cfg, input_root=src, output_root=out)
    rows = {r[schema.PAIR_ID]: r for r in _pairs(out)}
    dropped = rows[copied[schema.PAIR_ID]]
    assert dropped[schema.KEPT] is False
    assert f"near-duplicate of training pair {train[0][schema.PAIR_ID]}" in dropped[schema.PRUNE_REASON]
    assert dropped[schema.NEAREST_TRAIN_SIMILARITY] == pytest.approx(1.0, abs=1e-5)
    info = json.loads(dropped[schema.PRUNING])
    assert info["near_duplicate_threshold"] == 0.99995
    for r in inter[1:]:
        kept = rows[r[schema.PAIR_ID]]
        assert kept[schema.NEAREST_TRAIN_SIMILARITY] < 0.99995
        assert kept[schema.KEPT] == (kept[schema.SCORE_A] > info["tau"])
        assert kept[schema.KEPT] or "tau" in kept[schema.PRUNE_REASON]
    # Without the rule the copy was kept or pruned by its score alone, never as a near-duplicate.
    plain = {r[schema.PAIR_ID]: r for r in _pairs(cfg.synthetic_dir())}
    assert "near-duplicate" not in (plain[copied[schema.PAIR_ID]][schema.PRUNE_REASON] or "")
    flags = Counter((r[schema.ORIGIN], r[schema.DERIVED_FROM_PATIENT]) for r in rows.values())
    assert set(flags) <= {("inter", False), ("intra", True), ("augtext", True)}, flags
    assert flags[("intra", True)] and flags[("inter", False)] and flags[("augtext", True)]
    # Calibrated on the real training images when no threshold is set.
    _, calibrated = near_duplicates(
        parse_config({**base, "prune": {**base["prune"], "near_duplicate": {**near, "threshold": None}}}), src
    )
    assert 0.9 < calibrated <= 1.0


def test_reader_verdicts_prune_the_pairs_readers_rejected(s3_run, tmp_path):
    """prune.reader_verdicts through the prune job: a reader study drawn from the run (its images on
    S3), a reader who rates some pairs poor, and a reprune that drops exactly those, with the
    readers' reason; every other pair keeps the scores' verdict."""
    from pairaug_ray.pipeline.common import real_pairs_root
    from pairaug_ray.reader_study import db
    from pairaug_ray.reader_study.draw import draw_study

    cfg, _, _, _ = s3_run
    plain_root = str(tmp_path / "plain")
    prune_job(cfg, output_root=plain_root)
    plain = {r[schema.PAIR_ID]: r for r in _pairs(plain_root)}
    study_dir = str(tmp_path / "study")
    doc = draw_study(
        real_pairs_root(cfg),
        plain_root,
        study_dir,
        cases_per_task=4,
        tasks=("pairs",),
        include_pruned=True,
        image_size=64,
    )
    engine = db.open_study_db(db.default_url(study_dir))
    db.register_cases(engine, doc["cases"])
    reader = db.reader_for_token(engine, db.add_reader(engine, "r1"))
    cases = doc["cases"]
    kept_cases = [c for c in cases if c["kept"]]
    assert kept_cases, "the draw has kept pairs half the time"
    poor = {kept_cases[0]["pair_id"], next(c["pair_id"] for c in cases if not c["kept"])}
    for c in cases:
        db.record_answer(engine, reader.id, c["case_id"], "poor" if c["pair_id"] in poor else "good", 2.0)
    base = cfg.model_dump(mode="json")
    judged_cfg = parse_config(
        {**base, "prune": {**base["prune"], "reader_verdicts": study_dir, "output": None}}
    )
    judged_root = str(tmp_path / "judged")
    prune_job(judged_cfg, output_root=judged_root)
    judged = {r[schema.PAIR_ID]: r for r in _pairs(judged_root)}
    assert set(judged) == set(plain)
    changed = {p for p in judged if judged[p][schema.KEPT] != plain[p][schema.KEPT]}
    assert changed == {kept_cases[0]["pair_id"]}
    assert judged[kept_cases[0]["pair_id"]][schema.PRUNE_REASON] == "readers: rated poor by 1 of 1 readers"
    assert all(not judged[p][schema.KEPT] for p in poor)
    assert json.loads(judged[kept_cases[0]["pair_id"]][schema.PRUNING])["reader_vetoes"] == 2


def test_error_budget_stops_the_job_and_keeps_the_work(ray_local, bad_corpus, tiny_models, tmp_path):
    root, _ = bad_corpus
    cfg = parse_config(job_dict(str(tmp_path / "run"), {"kind": "manifest", "manifest": root}, tiny_models))
    with pytest.raises(
        ErrorBudgetExceeded,
        match=r"validate: 7 of 13 rows ended in an error \(54% > augment.max_error_fraction 20%\)",
    ):
        augment_job(cfg)
    assert len(_pairs(cfg.validated_dir())) == 13  # the validated corpus is kept for the rerun


# --- kill and resume ------------------------------------------------------------------------------------------


def test_kill_and_resume(s3_run):
    cfg, summary, _, partial = s3_run
    rewrites = [
        r
        for r in _pairs(cfg.rewrite_dir())
        if r[schema.ORIGIN] in ("inter", "intra") and r[schema.STATUS] == "ok"
    ]
    generated = _pairs(cfg.generate_dir())
    ids = [r[schema.PAIR_ID] for r in generated]
    assert len(ids) == len(set(ids)) == len(rewrites) == summary["stages"]["generate"]["rows"] > partial > 0
    assert {r[schema.PARENT_ID] for r in generated} == {r[schema.PARENT_ID] for r in rewrites}
    _check_synthetic(cfg)
    assert summary["stages"]["score"]["ok"] == len(generated)


def test_nothing_drawn_prunes_to_an_empty_set(ray_local, tmp_path):
    """A job whose rewrite made no rows (a small corpus under rewrite.patient_fraction, or only short
    reports) ends with an empty synthetic set that training reads, not with an error at prune."""
    from pairaug_ray.pairs import read_columns
    from pairaug_ray.pipeline.runner import write_empty_manifest

    scored = str(tmp_path / "scored")
    write_empty_manifest(scored)
    cfg = parse_config(
        {
            "run": {"output_dir": str(tmp_path / "run")},
            "ray": {"address": ray_local.get_runtime_context().gcs_address, "progress_bars": False},
        }
    )
    summary = prune_job(cfg, input_root=scored)
    assert summary["rows"] == 0 and summary["by_origin"] == {}
    assert read_columns(cfg.synthetic_dir(), [schema.KEPT]).num_rows == 0
