"""Patient attributes from MIMIC-IV for MIMIC-CXR pairs: sex, age at the study and race group.

    MIMIC_IV/hosp/patients.csv.gz     subject_id, gender, anchor_age, anchor_year, anchor_year_group, dod
    MIMIC_IV/hosp/admissions.csv.gz   subject_id, hadm_id, admittime, ..., race, ...

(MIMIC-IV v1.0 kept admissions under core/ and called the column `ethnicity`; both are read.)
MIMIC-CXR shares MIMIC-IV's subject ids and its per-patient date shift, so the age at a study is
`anchor_age + (year of StudyDate - anchor_year)` (anchor_age is 91 for everyone older than 89).
A patient's race is the most frequent known value over their admissions, mapped to the groups
RoentGen-v2 and the fairness literature use (WHITE, BLACK, ASIAN, HISPANIC, OTHER); "UNKNOWN",
"UNABLE TO OBTAIN" and "PATIENT DECLINED TO ANSWER" are unknown (null), never a group.
"""

from __future__ import annotations

import pandas as pd

from pairaug_ray import storage
from pairaug_ray.errors import UserError

PATIENTS_CSV = "hosp/patients.csv.gz"
ADMISSIONS_CSVS = ("hosp/admissions.csv.gz", "core/admissions.csv.gz")
UNKNOWN_RACE = ("UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER")


class MimicIVLayoutError(UserError, FileNotFoundError):
    """The folder is not MIMIC-IV's published layout; the message names what is missing."""


def race_group(value: object) -> str | None:
    """A MIMIC-IV race value ('BLACK/CAPE VERDEAN', 'ASIAN - CHINESE', ...) as its group, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip().upper()
    if v in UNKNOWN_RACE:
        return None
    for group in ("WHITE", "BLACK", "ASIAN"):
        if v.startswith(group):
            return group
    if v.startswith("HISPANIC") or v == "SOUTH AMERICAN":
        return "HISPANIC"
    return "OTHER"


def _read(root: str, name: str, required: list[str], any_of: list[str] | None = None) -> pd.DataFrame:
    uri = storage.join(root, name)
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        df = pd.read_csv(f, compression="gzip", dtype={"subject_id": str}, low_memory=False)
    missing = [c for c in required if c not in df.columns]
    if any_of and not any(c in df.columns for c in any_of):
        missing.append(" or ".join(any_of))
    if missing:
        raise MimicIVLayoutError(f"{uri} lacks column(s) {missing}; found {list(df.columns)}")
    return df


def load_demographics(root: str) -> pd.DataFrame:
    """One row per subject: subject_id, sex ('F'/'M'), anchor_age, anchor_year, race (group or None)."""
    root = storage.absolute(root)
    if not storage.exists(storage.join(root, PATIENTS_CSV)):
        raise MimicIVLayoutError(
            f"{PATIENTS_CSV} not found under {root}; is corpus.mimic.mimic_iv_root the MIMIC-IV folder?"
        )
    patients = _read(root, PATIENTS_CSV, ["subject_id", "gender", "anchor_age", "anchor_year"])
    out = pd.DataFrame(
        {
            "subject_id": patients["subject_id"],
            "sex": patients["gender"].where(patients["gender"].isin(["F", "M"])),
            "anchor_age": pd.to_numeric(patients["anchor_age"], errors="coerce"),
            "anchor_year": pd.to_numeric(patients["anchor_year"], errors="coerce"),
        }
    ).drop_duplicates("subject_id")
    admissions_name = next((n for n in ADMISSIONS_CSVS if storage.exists(storage.join(root, n))), None)
    if admissions_name is None:
        raise MimicIVLayoutError(
            f"none of {list(ADMISSIONS_CSVS)} under {root}: race needs the admissions table"
        )
    adm = _read(root, admissions_name, ["subject_id"], any_of=["race", "ethnicity"])
    column = "race" if "race" in adm.columns else "ethnicity"
    groups = pd.DataFrame({"subject_id": adm["subject_id"], "race": adm[column].map(race_group)}).dropna()
    # The most frequent known group over a patient's admissions; ties go to the alphabetically first.
    counts = groups.value_counts(["subject_id", "race"]).rename("n").reset_index()
    counts = counts.sort_values(["subject_id", "n", "race"], ascending=[True, False, True], kind="stable")
    race = counts.drop_duplicates("subject_id")[["subject_id", "race"]]
    return out.merge(race, on="subject_id", how="left")


def age_at_study(anchor_age: float, anchor_year: float, study_date: object) -> int | None:
    """Whole years at a study dated `study_date` (MIMIC-CXR's StudyDate, YYYYMMDD, shifted as MIMIC-IV)."""
    if anchor_age != anchor_age:  # NaN: no patient row
        return None
    year = None
    if study_date is not None and study_date == study_date:
        digits = str(int(float(study_date))) if not isinstance(study_date, str) else study_date.strip()
        year = int(digits[:4]) if len(digits) >= 4 and digits[:4].isdigit() else None
    if year is None or anchor_year != anchor_year:
        return int(anchor_age)
    return max(0, int(anchor_age + (year - anchor_year)))
