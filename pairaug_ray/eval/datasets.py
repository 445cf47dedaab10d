"""Evaluation datasets as one table: image_id, image_uri, one float column per label (1, 0, or NaN
for uncertain / not annotated, which the metrics exclude per label).

Adapters read the real file layouts (the label CSVs in the torchxrayvision wheel show them):
  manifest   a pair manifest of this project (the phantom corpus's test split, a MIMIC import)
  chexpert   CheXpert CSV: Path, Frontal/Lateral, 14 observation columns (1.0 / 0.0 / -1.0 / blank),
             first frontal view per study; or the test set's groundtruth.csv (Study + the same 14
             columns), each study's view1_frontal.jpg, as CheXzero evaluates
  padchest   PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv(.gz): ImageID, ImageDir,
             MethodLabel, Labels (a Python-list string); labels stripped and lower-cased as
             CheXzero's preprocess_padchest.py does; physician-labelled rows by default
  rsna       stage_2_train_labels.csv(.zip): patientId, box, Target; one row per box, so the label is
             the maximum over a patient's rows; images <patientId>.dcm
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pairaug_ray import schema, storage
from pairaug_ray.errors import UserError


class DatasetFormatError(UserError, ValueError):
    """The label file does not have the layout its adapter expects."""


@dataclass
class EvalSet:
    name: str
    labels: list[str]
    frame: pd.DataFrame  # image_id, image_uri, <label>... (+ report, origin where known)
    info: dict[str, Any] = field(default_factory=dict)

    def y(self) -> np.ndarray:
        return self.frame[self.labels].to_numpy(dtype=float)


def _read_csv(path: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)  # pandas reads .gz/.zip and s3:// (through s3fs) itself
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {path}") from None


def _require(df: pd.DataFrame, columns: list[str], path: str, adapter: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: the {adapter} adapter needs column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns[:12]))}"
        )


def _uncertain(values: pd.Series, uncertain: str, missing: str) -> pd.Series:
    """CheXpert coding: 1 positive, 0 negative, -1 uncertain, blank not mentioned."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    blank = v.isna()
    v[v == -1] = {"exclude": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    v[blank] = 0.0 if missing == "negative" else np.nan
    return v


def from_manifest(
    root: str,
    labels: list[str],
    split: str | None = "test",
    uncertain: str = "exclude",
    missing: str = "negative",
    name: str = "manifest",
) -> EvalSet:
    """A pair manifest's rows of one split (status ok), labels from its label_* columns."""
    from pairaug_ray.pairs import manifest_columns, read_columns

    cols = set(manifest_columns(root))
    wanted = [schema.label_column(lb) for lb in labels]
    absent = [c for c in wanted if c not in cols]
    if absent:
        raise DatasetFormatError(f"{root}: the manifest has no label column(s) {', '.join(absent)}")
    extras = [
        c for c in (schema.PATIENT_ID, schema.REPORT, schema.ORIGIN, *schema.DEMOGRAPHIC_COLUMNS) if c in cols
    ]
    base = [schema.PAIR_ID, schema.IMAGE_URI, schema.STATUS, schema.SPLIT]
    df = read_columns(root, [*base, *wanted, *extras]).to_pandas()
    df = df[df[schema.STATUS] == schema.STATUS_OK]
    if split:
        df = df[df[schema.SPLIT] == split]
    out = pd.DataFrame(
        {schema.IMAGE_ID: df[schema.PAIR_ID].to_numpy(), schema.IMAGE_URI: df[schema.IMAGE_URI].to_numpy()}
    )
    for lb, c in zip(labels, wanted, strict=True):
        out[lb] = _uncertain(df[c].reset_index(drop=True), uncertain, missing).to_numpy()
    for extra in extras:
        out[extra] = df[extra].to_numpy()
    return EvalSet(name, list(labels), out.reset_index(drop=True), {"root": root, "split": split})


def _sex(values: pd.Series) -> np.ndarray:
    """'Male'/'M' -> 'M', 'Female'/'F' -> 'F', anything else unknown."""
    first = values.astype(str).str.strip().str.upper().str[:1]
    return first.where(first.isin(["M", "F"]), None).to_numpy(dtype=object)


def from_chexpert(
    csv: str,
    images_root: str,
    labels: list[str],
    uncertain: str = "exclude",
    missing: str = "negative",
    first_frontal_per_study: bool = True,
    name: str = "chexpert",
) -> EvalSet:
    """Two real layouts: the train/valid CSVs (`Path` per image, `Frontal/Lateral`), and the test set's
    ground truth as CheXzero uses it (`groundtruth.csv`: `Study` per study, whose first frontal image is
    `<Study>/view1_frontal.jpg`, CheXzero's "view1" choice)."""
    df = _read_csv(csv)
    if "Path" not in df.columns and "Study" in df.columns:
        _require(df, ["Study", *labels], csv, "chexpert")
        rel = df["Study"].str.replace(r"^CheXpert-v1\.0(-small)?/", "", regex=True).str.rstrip("/")
        uris = [storage.join(images_root, r, "view1_frontal.jpg") for r in rel]
        out = pd.DataFrame({schema.IMAGE_ID: df["Study"].to_numpy(), schema.IMAGE_URI: uris})
    else:
        _require(df, ["Path", *labels], csv, "chexpert")
        if "Frontal/Lateral" in df:
            df = df[df["Frontal/Lateral"].astype(str).str.lower() == "frontal"]
        else:
            df = df[df["Path"].str.contains("frontal", case=False)]
        if first_frontal_per_study:
            # CheXzero's test set: the first frontal view (view1) of each study.
            df = df.assign(_study=df["Path"].str.replace(r"/[^/]+$", "", regex=True)).sort_values("Path")
            df = df.drop_duplicates("_study", keep="first")
        # Paths start with the archive's folder (CheXpert-v1.0[-small]/...); images_root holds its contents.
        rel = df["Path"].str.replace(r"^CheXpert-v1\.0(-small)?/", "", regex=True)
        out = pd.DataFrame(
            {
                schema.IMAGE_ID: df["Path"].to_numpy(),
                schema.IMAGE_URI: [storage.join(images_root, r) for r in rel],
            }
        )
    for lb in labels:
        out[lb] = _uncertain(df[lb].reset_index(drop=True), uncertain, missing).to_numpy()
    # train/patient00001/study1/... : the patient, so that a probe's splits keep patients apart.
    patient = out[schema.IMAGE_ID].astype(str).str.extract(r"(patient\d+)", expand=False)
    if patient.notna().all():
        out[schema.PATIENT_ID] = patient.to_numpy()
    # The train/valid CSVs carry Sex and Age (the test set's groundtruth.csv does not).
    if "Sex" in df:
        out[schema.SEX] = _sex(df["Sex"].reset_index(drop=True))
    if "Age" in df:
        out[schema.AGE] = pd.to_numeric(df["Age"], errors="coerce").to_numpy()
    return EvalSet(name, list(labels), out, {"csv": csv, "images_root": images_root, "uncertain": uncertain})


def _padchest_labels(cell: Any) -> list[str]:
    if not isinstance(cell, str) or not cell.strip():
        return []
    try:
        items = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        items = re.findall(r"'([^']*)'", cell)
    return [str(x).strip().lower() for x in items if str(x).strip()]


def from_padchest(
    csv: str,
    images_root: str,
    labels: list[str] | None = None,
    physician_only: bool = True,
    frontal_only: bool = True,
    min_positives: int = 50,
    name: str = "padchest",
) -> EvalSet:
    """labels None: every label with at least `min_positives` positives in the selected rows (the list
    is recorded in info, since PadChest results depend on it)."""
    df = _read_csv(csv, low_memory=False)
    _require(df, ["ImageID", "ImageDir", "Labels", "MethodLabel"], csv, "padchest")
    if physician_only:
        df = df[df["MethodLabel"] == "Physician"]
    if frontal_only and "Projection" in df:
        df = df[df["Projection"].isin(["PA", "AP", "AP_horizontal"])]
    parsed = df["Labels"].map(_padchest_labels)
    counts = pd.Series([lb for row in parsed for lb in set(row)]).value_counts()
    if labels is None:
        labels = sorted(lb for lb, n in counts.items() if n >= min_positives and lb != "normal")
    else:
        labels = [lb.strip().lower() for lb in labels]
    uris = [
        storage.join(images_root, str(int(d)) if str(d).isdigit() else str(d), i)
        for d, i in zip(df["ImageDir"], df["ImageID"], strict=True)
    ]
    out = pd.DataFrame({schema.IMAGE_ID: df["ImageID"].to_numpy(), schema.IMAGE_URI: uris})
    sets = [set(r) for r in parsed]
    for lb in labels:
        out[lb] = np.array([1.0 if lb in s else 0.0 for s in sets])
    if "PatientID" in df:
        out[schema.PATIENT_ID] = df["PatientID"].astype(str).to_numpy()
    if "PatientSex_DICOM" in df:
        out[schema.SEX] = _sex(df["PatientSex_DICOM"].reset_index(drop=True))
    if "PatientBirth" in df and "StudyDate_DICOM" in df:
        born = pd.to_numeric(df["PatientBirth"], errors="coerce").to_numpy()
        year = pd.to_numeric(df["StudyDate_DICOM"].astype(str).str[:4], errors="coerce").to_numpy()
        out[schema.AGE] = year - born
    info = {
        "csv": csv,
        "images_root": images_root,
        "physician_only": physician_only,
        "labels": labels,
        "positives": {lb: int(counts.get(lb, 0)) for lb in labels},
    }
    return EvalSet(name, labels, out, info)


def from_rsna(csv: str, images_root: str, name: str = "rsna", image_suffix: str = ".dcm") -> EvalSet:
    df = _read_csv(csv)
    _require(df, ["patientId", "Target"], csv, "rsna")
    per_patient = df.groupby("patientId", sort=True)["Target"].max()
    out = pd.DataFrame(
        {
            schema.IMAGE_ID: per_patient.index.to_numpy(),
            schema.IMAGE_URI: [storage.join(images_root, f"{p}{image_suffix}") for p in per_patient.index],
            "Pneumonia": per_patient.to_numpy(dtype=float),
            schema.PATIENT_ID: per_patient.index.to_numpy(),  # one image per patient in RSNA
        }
    )
    return EvalSet(name, ["Pneumonia"], out, {"csv": csv, "images_root": images_root})


def load_eval_set(spec) -> EvalSet:
    """From an `evaluate.datasets[]` entry (config.EvalDatasetConfig)."""
    if spec.kind == "manifest":
        return from_manifest(
            spec.path, list(spec.labels), spec.split, spec.uncertain, spec.missing, spec.name
        )
    if spec.kind == "chexpert":
        return from_chexpert(
            spec.path, spec.images_root, list(spec.labels), spec.uncertain, spec.missing, name=spec.name
        )
    if spec.kind == "padchest":
        return from_padchest(
            spec.path,
            spec.images_root,
            list(spec.labels) if spec.labels else None,
            min_positives=spec.min_positives,
            name=spec.name,
        )
    if spec.kind == "rsna":
        return from_rsna(spec.path, spec.images_root, name=spec.name)
    raise ValueError(f"unknown dataset kind {spec.kind!r}")
