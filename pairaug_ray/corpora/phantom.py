"""The phantom corpus: synthetic patients with persistent anatomy and findings that change over time.

It is the built-in dataset of the demo, the tests and offline experiments. Because the same patient
appears with different findings, it carries ground truth for "same patient, other condition",
which is what IntraAug claims to produce.

Everything derives from (seed, patient index): the patient's anatomy, sex, age, the number of
studies, their findings, report wording, exposure and noise. With corpus.phantom.demographic_anatomy
sex and age shape the anatomy (phantom_anatomy.shaped_by), for subgroup evaluation. Patients are rendered in parallel as Ray Data
tasks and the result is identical whatever the parallelism.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import ray

from pairaug_ray import images, schema, storage
from pairaug_ray.config import PhantomCorpusConfig
from pairaug_ray.corpora import phantom_anatomy as anatomy
from pairaug_ray.corpora import phantom_reports as reports
from pairaug_ray.corpora.common import report_text
from pairaug_ray.manifest import write_manifest
from pairaug_ray.pairs import IMAGES_DIR

PHANTOM_VERSION = "1"  # bump when rendering or wording changes: it is part of every pair_id


def patient_id(seed: int, index: int) -> str:
    return f"ph{seed:03d}-{index:06d}"


def split_of(cfg: PhantomCorpusConfig, index: int) -> str:
    """Patient-disjoint splits with exact proportions: a seeded permutation cut by the fractions."""
    order = np.random.default_rng([cfg.seed, 0x5EED]).permutation(cfg.patients)
    rank = int(np.nonzero(order == index)[0][0])
    n_train = round(cfg.split_fractions[0] * cfg.patients)
    n_val = round(cfg.split_fractions[1] * cfg.patients)
    return "train" if rank < n_train else ("validate" if rank < n_train + n_val else "test")


def render_patient(cfg: PhantomCorpusConfig, index: int, grid: anatomy.Grid | None = None) -> list[dict]:
    """All studies of one patient as row dicts, each with its image as a float array under 'pixels'."""
    rng = np.random.default_rng([cfg.seed, index])
    grid = grid or anatomy.Grid(cfg.size)
    an = anatomy.sample_anatomy(rng)
    sex = str(rng.choice(["M", "F"]))
    # The age has its own stream, so that drawing it changes nothing else of the patient.
    first_age = int(np.random.default_rng([cfg.seed, index, 0xA6E]).integers(20, 86))
    if cfg.demographic_anatomy:
        an = anatomy.shaped_by(an, sex, first_age)
    base = anatomy.base_image(grid, an)  # draws from the anatomy's own seed only
    pid = patient_id(cfg.seed, index)
    n_studies = int(rng.integers(cfg.studies_per_patient[0], cfg.studies_per_patient[1] + 1))
    rows, prev, changes = [], None, None
    for k in range(n_studies):
        if prev is None:
            findings = reports.initial_findings(rng)
        else:
            findings, changes = reports.evolve(prev, rng)
        raw, findings_text, impression_text, labels = reports.write_report(
            findings, changes, prev, rng, sex=sex
        )
        pixels, measured = anatomy.render_study(grid, an, base, findings, rng)
        age = first_age + (3 * k) // 2  # studies about 18 months apart
        rows.append(
            {
                "pixels": pixels,
                "raw_report": raw,
                schema.PATIENT_ID: pid,
                schema.SEX: sex,
                schema.AGE: age,
                schema.STUDY_ID: f"{pid}-s{k:02d}",
                schema.VIEW: "AP" if "PORTABLE AP" in raw else "PA",
                schema.FINDINGS: findings_text,
                schema.IMPRESSION: impression_text,
                **{schema.label_column(o): v for o, v in labels.items()},
                schema.SPLIT: split_of(cfg, index),
                schema.PHANTOM_STATE: json.dumps(
                    {
                        "findings": findings,
                        "changes": changes,
                        "study_index": k,
                        "sex": sex,
                        "age": age,
                        "anatomy": dataclasses.asdict(an),
                        **measured,
                    },
                    sort_keys=True,
                ),
            }
        )
        prev = findings
    return rows


def _quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    top = 255 if bit_depth == 8 else 65535
    return np.round(pixels * top).astype(np.uint8 if bit_depth == 8 else np.uint16)


def render_batch(batch: dict[str, np.ndarray], cfg: PhantomCorpusConfig, root: str) -> pa.Table:
    """Ray Data task: render the patients in `batch['id']`, write their PNGs, return manifest rows."""
    grid = anatomy.Grid(cfg.size)
    image_dir = storage.join(root, IMAGES_DIR)
    params = cfg.model_dump(mode="json")
    out = []
    for index in batch["id"].tolist():
        for row in render_patient(cfg, int(index), grid):
            pixels = _quantize(row.pop("pixels"), cfg.bit_depth)
            uri, image_id = images.write_png(pixels, image_dir)
            raw = row.pop("raw_report")
            text = report_text(cfg.text, raw, row[schema.FINDINGS], row[schema.IMPRESSION])
            row.update(
                {
                    schema.PAIR_ID: schema.make_pair_id(
                        "phantom", PHANTOM_VERSION, row[schema.STUDY_ID], image_id, text
                    ),
                    schema.IMAGE_ID: image_id,
                    # Relative to the dataset root, so a phantom corpus can be moved or copied to S3.
                    schema.IMAGE_URI: storage.join(IMAGES_DIR, image_id[:2], image_id + ".png")
                    if storage.is_local(root)
                    else uri,
                    schema.REPORT: text,
                    schema.ORIGIN: schema.ORIGIN_REAL,
                    schema.STATUS: schema.STATUS_OK if text else schema.STATUS_SKIPPED,
                    schema.ERROR: None if text else f"report text is empty in {cfg.text!r} mode",
                    schema.PROVENANCE: schema.make_provenance(
                        "corpus", model_id=f"phantom/{PHANTOM_VERSION}", seed=cfg.seed, params=params
                    ),
                }
            )
            out.append(row)
    return schema.rows_to_table(out)


def build_phantom(cfg: PhantomCorpusConfig, root: str) -> str:
    """Render the corpus into the pair dataset at `root` (local or s3://); returns the manifest URI."""
    root = storage.absolute(root)
    storage.makedirs(root)
    blocks = max(1, min(cfg.patients, 64))
    ds = ray.data.range(cfg.patients, override_num_blocks=blocks).map_batches(
        render_batch,
        fn_kwargs={"cfg": cfg, "root": root},
        batch_size=max(1, -(-cfg.patients // blocks)),
        batch_format="numpy",
    )
    return write_manifest(ds, root, info={"corpus": "phantom", "phantom": cfg.model_dump(mode="json")})
