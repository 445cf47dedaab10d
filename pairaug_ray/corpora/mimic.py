"""MIMIC-CXR-JPG v2.0.0 in its published layout, as a pair manifest.

    ROOT/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, ...
    ROOT/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split
    ROOT/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, <14 CheXpert labels>
    ROOT/files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg
    REPORTS/files/pXX/pSUBJECT/sSTUDY.txt  (from mimic-cxr-reports.zip; REPORTS defaults to ROOT)
    MIMIC_IV/hosp/{patients,admissions}.csv.gz  optional: sex, age and race (corpora/mimic_iv.py)

One row per image of a kept view (PA and AP by default, as PairAug and CheXzero use); each image
is paired with its study's report. A missing or unreadable report becomes a row error; a report
with too little text for the chosen text mode is kept as skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import ray

from pairaug_ray import schema, storage
from pairaug_ray.config import MimicCorpusConfig
from pairaug_ray.corpora.common import report_text
from pairaug_ray.errors import UserError
from pairaug_ray.manifest import write_manifest
from pairaug_ray.text.labeler import label_report
from pairaug_ray.text.sections import extract_sections

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"


class MimicLayoutError(UserError, FileNotFoundError):
    """The folder does not have MIMIC-CXR-JPG's published layout; the message names what is missing."""


def study_path(subject_id: str, study_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def _read_csv(root: str, name: str, required: list[str]) -> pd.DataFrame:
    uri = storage.join(root, name)
    if not storage.exists(uri):
        raise MimicLayoutError(
            f"{name} not found under {root}; is corpus.mimic.root the MIMIC-CXR-JPG folder?"
        )
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        df = pd.read_csv(f, compression="gzip", dtype={"dicom_id": str, "subject_id": str, "study_id": str})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MimicLayoutError(f"{uri} lacks column(s) {missing}; found {list(df.columns)}")
    return df


def load_index(cfg: MimicCorpusConfig) -> pd.DataFrame:
    """The images to import: metadata joined with the official split (and labels), views filtered."""
    root = storage.absolute(cfg.root)
    meta = _read_csv(root, METADATA_CSV, ["dicom_id", "subject_id", "study_id", "ViewPosition"])
    split = _read_csv(root, SPLIT_CSV, ["dicom_id", "split"])
    df = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="inner", validate="one_to_one")
    df = df[df["ViewPosition"].isin(cfg.views) & df["split"].isin(cfg.splits)]
    if cfg.labels == "chexpert":
        labels = _read_csv(root, CHEXPERT_CSV, ["subject_id", "study_id", *schema.CHEXPERT_OBSERVATIONS])
        df = df.merge(labels, on=["subject_id", "study_id"], how="left", validate="many_to_one")
    if cfg.mimic_iv_root:
        from pairaug_ray.corpora.mimic_iv import age_at_study, load_demographics

        people = load_demographics(cfg.mimic_iv_root)
        df = df.merge(people, on="subject_id", how="left", validate="many_to_one")
        dates = df["StudyDate"] if "StudyDate" in df.columns else pd.Series([None] * len(df), index=df.index)
        df["age"] = [
            age_at_study(a, y, d) for a, y, d in zip(df["anchor_age"], df["anchor_year"], dates, strict=True)
        ]
    df = df.sort_values(["subject_id", "study_id", "dicom_id"], kind="stable")
    if cfg.limit:
        keep = df["study_id"].drop_duplicates().iloc[: cfg.limit]
        df = df[df["study_id"].isin(keep)]
    return df.reset_index(drop=True)


def _labels_from_csv(row: dict) -> dict[str, int | None]:
    out = {}
    for obs in schema.CHEXPERT_OBSERVATIONS:
        v = row.get(obs)
        out[schema.label_column(obs)] = (
            None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
        )
    return out


def _demographics(rec: dict) -> dict[str, object]:
    def known(v: object) -> object:
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else v

    age = known(rec.get("age"))
    return {
        schema.SEX: known(rec.get("sex")),
        schema.AGE: None if age is None else int(age),
        schema.RACE: known(rec.get("race")),
    }


def read_reports(batch: pd.DataFrame, cfg: MimicCorpusConfig) -> pa.Table:
    """Ray Data task: read each study's report, extract sections, build manifest rows."""
    root = storage.absolute(cfg.root)
    reports_root = storage.absolute(cfg.reports_root or cfg.root)
    cache: dict[str, str | Exception] = {}
    params = cfg.model_dump(mode="json")
    rows = []
    for rec in batch.to_dict("records"):
        subject, study, dicom = rec["subject_id"], rec["study_id"], rec["dicom_id"]
        rel = study_path(subject, study)
        report_uri = storage.join(reports_root, rel + ".txt")
        if report_uri not in cache:
            try:
                cache[report_uri] = storage.read_text(report_uri)
            except (FileNotFoundError, OSError, UnicodeDecodeError) as e:
                cache[report_uri] = e
        raw = cache[report_uri]
        row = {
            schema.PATIENT_ID: subject,
            schema.STUDY_ID: study,
            schema.IMAGE_ID: dicom,
            schema.VIEW: rec.get("ViewPosition"),
            schema.IMAGE_URI: storage.join(root, rel, dicom + ".jpg"),
            schema.SPLIT: rec["split"],
            schema.ORIGIN: schema.ORIGIN_REAL,
            schema.PROVENANCE: schema.make_provenance(
                "corpus", model_id="mimic-cxr-jpg/2.0.0", params=params
            ),
        }
        if isinstance(raw, Exception):
            reason = "not found" if isinstance(raw, FileNotFoundError) else f"{type(raw).__name__}: {raw}"
            row.update({schema.STATUS: schema.STATUS_ERROR, schema.ERROR: f"report {report_uri}: {reason}"})
            text = None
        else:
            sections = extract_sections(raw)
            text = report_text(cfg.text, raw, sections.findings, sections.impression)
            row.update(
                {
                    schema.FINDINGS: sections.findings,
                    schema.IMPRESSION: sections.impression,
                    schema.REPORT: text,
                }
            )
            if text:
                row[schema.STATUS] = schema.STATUS_OK
            else:
                row.update(
                    {
                        schema.STATUS: schema.STATUS_SKIPPED,
                        schema.ERROR: f"report has no usable text in {cfg.text!r} mode",
                    }
                )
            if cfg.labels == "labeler":
                row.update(
                    label_report(
                        " ".join(s for s in (sections.findings, sections.impression) if s) or raw
                    ).as_row()
                )
        if cfg.labels == "chexpert":
            row.update(_labels_from_csv(rec))
        if cfg.mimic_iv_root:
            row.update(_demographics(rec))
        row[schema.PAIR_ID] = schema.make_pair_id("mimic", subject, study, dicom, text)
        rows.append(row)
    return schema.rows_to_table(rows)


def check_root(cfg: MimicCorpusConfig) -> None:
    """Refuse a root without MIMIC-CXR-JPG's index files before any work starts (and before the
    command makes its output folder)."""
    for name in (METADATA_CSV, SPLIT_CSV):
        if not storage.exists(storage.join(cfg.root, name)):
            raise MimicLayoutError(
                f"{name} not found under {cfg.root}; is corpus.mimic.root the MIMIC-CXR-JPG folder?"
            )


def import_mimic(cfg: MimicCorpusConfig, out_root: str) -> str:
    """Convert MIMIC-CXR-JPG under `cfg.root` into the pair dataset at `out_root` (images stay in place)."""
    index = load_index(cfg)
    if index.empty:
        raise MimicLayoutError(
            f"no images of views {list(cfg.views)} in splits {list(cfg.splits)} under {cfg.root}"
        )
    blocks = max(1, min(len(index) // 2000 + 1, 200))
    ds = ray.data.from_pandas(index).repartition(blocks)
    ds = ds.map_batches(read_reports, fn_kwargs={"cfg": cfg}, batch_format="pandas", batch_size=2000)
    return write_manifest(
        ds, out_root, info={"corpus": "mimic-cxr-jpg", "mimic": cfg.model_dump(mode="json")}
    )
