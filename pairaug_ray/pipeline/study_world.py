"""The report-rich study's world (study.regime: report-rich; docs/study.md).

PairAug is for a corpus with far more reports than images. The study makes that world from the
phantom: every patient has images and reports, and the study hides the images of all but
study.image_fraction of the training patients (whole patients, seeded):

    <study>/image-part       the pairs the CLIPs, the generator and the scorer may see: the image
                             part's training pairs, and every validation and test pair
    <study>/other-reports.jsonl
                             the other training patients' reports, as report-only rows
                             (corpus.reports): InterAug draws them as written and rewritten

Every later part of the study runs on a config whose corpus is the image part plus those reports
(`report_rich_config`); the ceiling arm (real-all) trains on the whole world's training pairs.
The test ledger (`check_test_ledger`, `record_test_scoring`) keeps the test split a held-out one:
one design scores it; another is refused unless study.rescore_test records a second look.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pandas as pd

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, JobConfig
from pairaug_ray.manifest import write_manifest
from pairaug_ray.pairs import manifest_columns, patient_subset, read_columns, read_info, write_info
from pairaug_ray.pipeline.trained_models import derive
from pairaug_ray.text.train_text import training_text

IMAGE_PART, OTHER_REPORTS, ELSEWHERE = "image-part", "other-reports.jsonl", "elsewhere"
TEST_LEDGER = "test_ledger.json"
# The reports' columns in other-reports.jsonl, as corpus.reports reads them.
_ID, _TEXT = "id", schema.REPORT


def split_world(cfg: JobConfig, world_root: str, out: str) -> dict[str, Any]:
    """Write the image part and the other patients' reports (reused when made with the same world and
    fraction). Returns what each holds."""
    s = cfg.study
    # The world's own parameters (the phantom's, recorded by its build) and the text written for the
    # reports belong to what the split is made from: a world rebuilt in place is split again.
    made_with = {
        "world": world_root,
        "world_info": {k: v for k, v in read_info(world_root).items() if k in ("phantom", "mimic")},
        "image_fraction": s.image_fraction,
        "seed": cfg.train.subset_seed,
        "text": _report_text(cfg),
    }
    image_root, reports_path = storage.join(out, IMAGE_PART), storage.join(out, OTHER_REPORTS)
    info = read_info(image_root)
    if info.get("report_rich") == made_with and storage.exists(reports_path):
        return info["counts"]
    with progress.stage(
        "world", f"report-rich: images of {s.image_fraction:.0%} of the training patients"
    ) as shown:
        frame = read_columns(world_root, manifest_columns(world_root)).to_pandas()
        frame = frame[frame[schema.STATUS] == schema.STATUS_OK]
        train = frame[schema.SPLIT] == schema.SPLITS[0]
        has_image = patient_subset(
            frame[schema.PATIENT_ID].to_numpy(), s.image_fraction, cfg.train.subset_seed
        )
        image_part = frame[~train | has_image]
        others = frame[train & ~has_image]
        if image_part[schema.SPLIT].eq(schema.SPLITS[0]).sum() == 0 or others.empty:
            raise ConfigError(
                f"study.image_fraction {s.image_fraction}: the image part holds "
                f"{int(image_part[schema.SPLIT].eq(schema.SPLITS[0]).sum())} training pairs and the "
                f"report part {len(others)} reports; each needs some (more patients, or another fraction)"
            )
        write_manifest(records(image_part), image_root)
        # The reports in the text the CLIP trains on and the generator is prompted with (the
        # impression, as the study's real pairs), one row each, with patient and study.
        lines = [
            json.dumps(
                {
                    _ID: r[schema.PAIR_ID],
                    _TEXT: training_text(r, _report_text(cfg)),
                    schema.PATIENT_ID: r[schema.PATIENT_ID],
                    schema.STUDY_ID: r.get(schema.STUDY_ID),
                }
            )
            for r in records(others)
        ]
        storage.write_text(reports_path, "\n".join(lines) + "\n")
        counts = {
            "image_part": {
                "training_pairs": int(image_part[schema.SPLIT].eq(schema.SPLITS[0]).sum()),
                "training_patients": int(
                    image_part.loc[image_part[schema.SPLIT] == schema.SPLITS[0], schema.PATIENT_ID].nunique()
                ),
            },
            "reports": {"rows": len(others), "patients": int(others[schema.PATIENT_ID].nunique())},
            "all_training_pairs": int(train.sum()),
        }
        write_info(image_root, {"report_rich": made_with, "counts": counts})
        shown["line"] = (
            f"{counts['image_part']['training_pairs']} training pairs of {counts['image_part']['training_patients']} "
            f"patients with images; {counts['reports']['rows']} reports of {counts['reports']['patients']} patients without"
        )
    return counts


def _report_text(cfg: JobConfig) -> str:
    """The text of each report row: what the real pairs train on (the control's denials are not the report's)."""
    return "impression" if cfg.train.text == "impression+denials" else cfg.train.text


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # arrays, lists: present
        return False


def report_rich_config(cfg: JobConfig, out: str) -> JobConfig:
    """The study's config from here on: the image part as the corpus, the other reports beside it."""
    return derive(
        cfg,
        {
            "corpus.kind": "manifest",
            "corpus.manifest": storage.join(out, IMAGE_PART),
            "corpus.reports": {
                "path": storage.join(out, OTHER_REPORTS),
                "format": "jsonl",
                "text_field": _TEXT,
                "id_field": _ID,
                "patient_field": schema.PATIENT_ID,
                "study_field": schema.STUDY_ID,
                "text": "as_given",
                "duplicates": "keep",  # two patients may share a short impression: both are drawn
            },
        },
    )


def elsewhere_config(cfg: JobConfig, world: JobConfig, out: str) -> JobConfig:
    """The config whose finetune_t2i trains the generator of the reports-elsewhere arm: a phantom
    world of other patients (another seed), in its own folder."""
    return derive(
        world,
        {
            "run.output_dir": storage.join(out, ELSEWHERE),
            "corpus.kind": "phantom",
            "corpus.reports": None,
            "corpus.out": None,
            "corpus.phantom.patients": cfg.study.elsewhere_patients,
            "corpus.phantom.seed": cfg.study.elsewhere_seed,
            "finetune_t2i.storage_path": None,
        },
    )


# --- the test ledger -----------------------------------------------------------------------------------


# Settings that say where and how a job runs, not what it computes: a design is the same without them.
EXECUTION_KEYS = (
    "ray",
    "run.output_dir",
    "models.cache_dir",
    "eval_generator",
    "study.rescore_test",
    "study.quick",
    "study.decisions",
    "study.output",
    *(
        f"{stage}.{k}"
        for stage in ("generate", "score", "evaluate")
        for k in (
            "num_cpus",
            "num_gpus",
            "min_actors",
            "max_actors",
            "batch_size",
            "checkpoints_per_pass",
            "rows_per_file",
        )
    ),
    *(
        f"{stage}.{k}"
        for stage in ("train", "finetune_t2i")
        for k in ("num_workers", "cpus_per_worker", "use_gpu")
    ),
)


def design_settings(cfg: JobConfig) -> dict[str, Any]:
    """What a study's result depends on: every setting, flattened to dotted keys, but EXECUTION_KEYS."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if prefix and any(prefix == k or prefix.startswith(k + ".") for k in EXECUTION_KEYS):
            return
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = node

    walk(cfg.model_dump(mode="json"), "")
    return flat


def design_digest(cfg: JobConfig) -> str:
    return hashlib.sha256(json.dumps(design_settings(cfg), sort_keys=True).encode()).hexdigest()[:16]


def design_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys whose values differ. A key the recorded design did not have is a setting added to
    the code since (its default reproduces what ran then), not a difference."""
    return sorted(k for k, v in recorded.items() if k not in now or now[k] != v)


def check_test_ledger(cfg: JobConfig, out: str) -> list[dict[str, Any]]:
    """Refuse, before any work, to score the test split with a design other than the one that already
    scored it here (unless study.rescore_test). Returns the ledger's entries."""
    path = storage.join(out, TEST_LEDGER)
    entries = json.loads(storage.read_text(path)) if storage.exists(path) else []
    if cfg.study.split != schema.SPLITS[2]:
        return entries
    now = design_settings(cfg)
    others = [(e, design_differences(e["settings"], now)) for e in entries]
    others = [(e, diff) for e, diff in others if diff]
    if len(others) == len(entries) and others and not cfg.study.rescore_test:
        first, diff = others[0]
        raise ConfigError(
            f"study.split {cfg.study.split!r}: this study folder's test split was scored on {first['at']} by "
            f"another design ({', '.join(diff[:6])}{' ...' if len(diff) > 6 else ''} differ; see {path}). A "
            "design chosen after seeing test results makes the test split a validation split: decide on "
            "study.split validate, or set study.rescore_test true to record a second look"
        )
    return entries


def record_test_scoring(cfg: JobConfig, out: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Add this scoring of the test split to the ledger; the study's record of how often it was seen."""
    digest, now = design_digest(cfg), design_settings(cfg)
    if not any(not design_differences(e["settings"], now) for e in entries):
        entries = [
            *entries,
            {
                "design": digest,
                "at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "rescore": bool(entries),
                "settings": now,
            },
        ]
        storage.write_json(storage.join(out, TEST_LEDGER), entries)
    return {"designs_scored": len(entries), "this_design": digest, "entries": entries}
