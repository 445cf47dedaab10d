"""The rewrite stage and job: every back-end path, quality checks, provenance, resume, secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, parse_config
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pipeline.rewrite import rewrite_job
from pairaug_ray.stages.rewrite import expand_tasks, rewrite_pair_id
from pairaug_ray.testing.fake_openai import FakeOpenAIServer, FaultPlan
from pairaug_ray.text.labeler import changed_observations, label_report

TEST_API_KEY_ENV = "PAIRAUG_TEST_API_KEY"  # set in conftest.py before Ray starts

LONG = (
    "There is a small left pleural effusion. Heart size is normal. No pneumothorax. No focal consolidation. "
    "No pulmonary edema. The mediastinal contours are normal."
)


def _job(tmp_path, corpus: str, **rewrite) -> object:
    return parse_config(
        {
            "run": {"name": "t", "output_dir": str(tmp_path / "run"), "seed": 3},
            "ray": {"num_cpus": 2},
            "corpus": {"kind": "manifest", "manifest": corpus},
            "rewrite": rewrite,
        }
    )


def _rows(out: str) -> list[dict]:
    return read_manifest(out).take_all()


def test_expand_tasks_ids_skips_and_done():
    cfg = parse_config({"rewrite": {"modes": ["inter", "paraphrase"], "n": 2}}).rewrite
    parents = schema.rows_to_table(
        [
            {
                schema.PAIR_ID: "p1",
                schema.REPORT: LONG,
                schema.IMAGE_URI: "/img/1.png",
                schema.SPLIT: "train",
                schema.PATIENT_ID: "a",
            },
            {
                schema.PAIR_ID: "p2",
                schema.REPORT: "No effusion.",
                schema.IMAGE_URI: "/img/2.png",
                schema.SPLIT: "train",
            },
        ]
    )
    rows = expand_tasks(parents, cfg=cfg).to_pylist()
    assert len(rows) == 8
    by_id = {r[schema.PAIR_ID]: r for r in rows}
    first = by_id[rewrite_pair_id("p1", "inter", 0)]
    assert (
        first[schema.ORIGIN] == "inter"
        and first[schema.PARENT_ID] == "p1"
        and first[schema.IMAGE_URI] is None
    )
    assert (
        first[schema.SOURCE_IMAGE_URI] == "/img/1.png"
        and first[schema.PATIENT_ID] == "a"
        and first[schema.STATUS] is None
    )
    para = by_id[rewrite_pair_id("p1", "paraphrase", 1)]
    assert (
        para[schema.ORIGIN] == "augtext"
        and para[schema.IMAGE_URI] == "/img/1.png"
        and para[schema.SAMPLE_INDEX] == 1
    )
    short = by_id[rewrite_pair_id("p2", "inter", 0)]
    assert short[schema.STATUS] == "skipped" and "2 words (< min_words 20)" in short[schema.ERROR]
    done = frozenset({rewrite_pair_id("p1", "inter", 0), rewrite_pair_id("p2", "paraphrase", 1)})
    assert len(expand_tasks(parents, cfg=cfg, done=done)) == 6


def test_patient_fraction_rewrites_whole_patients_of_a_nested_draw():
    parents = schema.rows_to_table(
        [
            {
                schema.PAIR_ID: f"p{i}-{k}",
                schema.REPORT: LONG,
                schema.SPLIT: "train",
                schema.PATIENT_ID: f"pt{i}",
            }
            for i in range(200)
            for k in range(2)
        ]
    )

    def rewritten(fraction: float) -> dict[str, set[str]]:
        cfg = parse_config({"rewrite": {"modes": ["inter"], "patient_fraction": fraction}}).rewrite
        by_patient: dict[str, set[str]] = {}
        for r in expand_tasks(parents, cfg=cfg).to_pylist():
            by_patient.setdefault(r[schema.PATIENT_ID], set()).add(r[schema.PARENT_ID])
        return by_patient

    half, tenth = rewritten(0.5), rewritten(0.1)
    assert 80 <= len(half) <= 120 and 10 <= len(tenth) <= 30
    assert all(len(studies) == 2 for studies in half.values())  # a patient's reports go in together
    assert set(tenth) <= set(half)  # a smaller draw is part of a larger one
    assert len(rewritten(1.0)) == 200


def _assert_rewrites_are_valid(rows: list[dict]) -> None:
    for r in rows:
        if r[schema.STATUS] != "ok":
            continue
        mode = {"inter": "inter", "intra": "intra", "augtext": "paraphrase"}[r[schema.ORIGIN]]
        changed = changed_observations(
            label_report(r[schema.SOURCE_REPORT]).labels, label_report(r[schema.REPORT]).labels
        )
        assert bool(changed) == (mode != "paraphrase"), (mode, r[schema.SOURCE_REPORT], r[schema.REPORT])
        assert r[schema.REPORT].strip() and r[schema.REPORT] != r[schema.SOURCE_REPORT]
        # Labels of the new report are those the labeler reads in it.
        assert {c: r[c] for c in schema.LABEL_COLUMNS} == label_report(r[schema.REPORT]).as_row()


def test_rules_job_writes_each_row_once_and_resumes(ray_local, phantom_root, tmp_path):
    cfg = _job(tmp_path, phantom_root, backend="rules", modes=["inter", "intra", "paraphrase"], min_words=10)
    summary = rewrite_job(cfg)
    out = cfg.rewrite_dir()
    rows = _rows(out)
    train = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"]
    assert len(rows) == 3 * len(train) == summary["rows"]
    assert len({r[schema.PAIR_ID] for r in rows}) == len(rows)
    assert {r[schema.STATUS] for r in rows} <= {"ok", "skipped"}
    assert sum(r[schema.STATUS] == "ok" for r in rows) > 0.8 * len(rows)
    _assert_rewrites_are_valid(rows)
    prov = rows[0][schema.PROVENANCE]
    assert (
        prov["backend"] == "rules"
        and prov["stage"] == "rewrite"
        and prov["attempts"] >= 1
        and prov["seed"] is not None
    )
    assert json.loads(prov["params"])["mode"] in ("inter", "intra", "paraphrase")
    assert summary["by_origin"]["inter"]["ok"] + summary["by_origin"]["inter"].get("skipped", 0) == len(train)
    # A rerun finds everything done: nothing is added, nothing duplicated, results identical.
    files = storage.list_files(storage.join(out, "manifest"), ".parquet")
    again = rewrite_job(cfg)
    assert (
        again["rows"] == summary["rows"]
        and storage.list_files(storage.join(out, "manifest"), ".parquet") == files
    )
    # Changing what shapes the rows is refused for the same output.
    other = _job(tmp_path, phantom_root, backend="rules", modes=["inter"], min_words=10, temperature=0.9)
    with pytest.raises(ConfigError, match="holds rewrite output made with other settings"):
        rewrite_job(other)


def test_openai_job_survives_faults_and_keeps_secrets(ray_local, phantom_root, tmp_path):
    plan = FaultPlan(
        rate_429=0.1,
        retry_after_s=0.2,
        rate_500=0.1,
        rate_slow=0.05,
        slow_s=2.0,
        rate_malformed=0.05,
        rate_refusal=0.1,
        rate_long=0.1,
        seed=1,
    )
    key = os.environ[TEST_API_KEY_ENV]
    with FakeOpenAIServer(plan, api_key=key) as server:
        cfg = _job(
            tmp_path,
            phantom_root,
            backend="openai",
            modes=["inter", "paraphrase"],
            min_words=10,
            batch_size=8,
            openai={
                "base_url": server.base_url,
                "api_key_env": TEST_API_KEY_ENV,
                "concurrency": 8,
                "timeout_s": 1.0,
                "max_retries": 4,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.5,
            },
        )
        summary = rewrite_job(cfg)
        outcomes = server.outcomes()
    rows = _rows(cfg.rewrite_dir())
    train = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"]
    assert len(rows) == 2 * len(train) and len({r[schema.PAIR_ID] for r in rows}) == len(rows)
    for fault in ("429", "500", "slow", "malformed", "refusal", "long"):
        assert outcomes[fault] > 0, fault
    assert outcomes["401"] == 0  # the key from the environment reached the server
    statuses = {r[schema.STATUS] for r in rows}
    assert statuses <= {"ok", "error", "skipped"} and "ok" in statuses
    for r in rows:
        if r[schema.STATUS] == "error":
            assert r[schema.ERROR] and r[schema.REPORT] is None
    _assert_rewrites_are_valid(rows)
    retried = [r for r in rows if (r[schema.PROVENANCE]["attempts"] or 0) > 1]
    assert retried, "faults forced retries"
    assert summary["model_calls"] >= len([r for r in rows if r[schema.STATUS] != "skipped"])
    assert summary["tokens_in"] > 0 and summary["tokens_out"] > 0
    # The API key is nowhere in what was written.
    for f in storage.list_files(cfg.rewrite_dir()):
        assert key.encode() not in Path(f).read_bytes(), f


def test_missing_api_key_is_a_clear_error(ray_local, phantom_root, tmp_path):
    with FakeOpenAIServer() as server:
        cfg = _job(
            tmp_path,
            phantom_root,
            backend="openai",
            openai={"base_url": server.base_url, "api_key_env": "PAIRAUG_NO_SUCH_KEY"},
        )
        with pytest.raises(Exception, match="PAIRAUG_NO_SUCH_KEY is not set"):
            rewrite_job(cfg)


def test_vllm_processor_config_and_optional_import():
    from pairaug_ray.stages import rewrite_vllm

    cfg = parse_config(
        {
            "rewrite": {
                "backend": "vllm",
                "vllm": {
                    "model": "/models/llama",
                    "replicas": 2,
                    "tensor_parallel_size": 4,
                    "batch_size": 32,
                    "accelerator_type": "H100",
                    "engine_kwargs": {"enforce_eager": True},
                },
            }
        }
    ).rewrite
    pc = rewrite_vllm.processor_config(cfg, "/models/llama")
    assert type(pc).__name__ == "vLLMEngineProcessorConfig"
    assert pc.model_source == "/models/llama" and pc.concurrency == 2 and pc.batch_size == 32
    assert pc.accelerator_type == "H100" and pc.should_continue_on_error is True
    assert pc.engine_kwargs["tensor_parallel_size"] == 4 and pc.engine_kwargs["enforce_eager"] is True
    assert pc.engine_kwargs["max_model_len"] == 4096
    pre = rewrite_vllm.Preprocess(cfg, 0, attempt=1)(
        {schema.PAIR_ID: "x", schema.ORIGIN: "inter", schema.SOURCE_REPORT: LONG}
    )
    assert pre["messages"][0]["content"].startswith("Following is an original chest X-Ray report")
    assert pre["messages"][1]["content"] == LONG
    assert pre["sampling_params"]["temperature"] == 0.5 and pre["sampling_params"]["max_tokens"] == 300
    # The project imports without vLLM: only this back-end needs it.
    import importlib.util

    assert importlib.util.find_spec("vllm") is None


def test_vllm_passes_retry_quality_failures(ray_local, phantom_root, tmp_path):
    """The pass loop, with a stand-in for the vLLM processor that answers like it (generated_text)."""
    from pairaug_ray.text.rewrite import rewrite_report

    def factory(config, preprocess, postprocess):
        def run(ds):
            def generate(row):
                row = preprocess(row)
                user = row["messages"][1]["content"]
                # First pass: echo the input for half the rows (fails "unchanged"); later passes rewrite.
                if preprocess.attempt == 1 and int(row[schema.PAIR_ID][:2], 16) % 2:
                    row["generated_text"] = user
                else:
                    row["generated_text"] = rewrite_report(user, "inter", row["sampling_params"]["seed"]).text
                return postprocess(row)

            return ds.map(generate)

        return run

    model_dir = tmp_path / "fake-model"
    model_dir.mkdir()
    cfg = _job(
        tmp_path, phantom_root, backend="vllm", modes=["inter"], min_words=10, vllm={"model": str(model_dir)}
    )
    summary = rewrite_job(cfg, vllm_processor_factory=factory)
    rows = _rows(cfg.rewrite_dir())
    assert len(rows) == len({r[schema.PAIR_ID] for r in rows}) == summary["rows"]
    assert {r[schema.STATUS] for r in rows} <= {"ok", "skipped"}
    attempts = {r[schema.PROVENANCE]["attempts"] for r in rows if r[schema.STATUS] == "ok"}
    assert attempts == {1, 2}  # half needed the second pass
    _assert_rewrites_are_valid(rows)
