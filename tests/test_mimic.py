"""The MIMIC-CXR-JPG adapter on a tiny fake tree with the real file names and column headers."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pairaug_ray import schema
from pairaug_ray.config import MimicCorpusConfig
from pairaug_ray.corpora.mimic import MimicLayoutError, import_mimic, load_index
from pairaug_ray.manifest import read_manifest

# The published headers of MIMIC-CXR-JPG v2.0.0.
METADATA_COLUMNS = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
CHEXPERT_COLUMNS = [
    "subject_id",
    "study_id",
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]

REPORT_EFFUSION = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with shortness of breath

 COMPARISON:  ___

 FINDINGS:
 
 There is a moderate left pleural effusion with adjacent atelectasis.  No pneumothorax.
 Heart size is normal.
 
 IMPRESSION:
 
 Moderate left pleural effusion.
"""
REPORT_NO_IMPRESSION = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)

 FINDINGS:  Endotracheal tube terminates 4 cm above the carina.  Lungs are clear.
"""

STUDIES = [  # subject, study, [(dicom, view, split)], report or None
    (
        "10000032",
        "50414267",
        [
            ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA", "train"),
            ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL", "train"),
        ],
        REPORT_EFFUSION,
    ),
    (
        "10000032",
        "53189527",
        [("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "AP", "train")],
        REPORT_NO_IMPRESSION,
    ),
    (
        "10000764",
        "57375967",
        [("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "PA", "validate")],
        REPORT_EFFUSION,
    ),
    (
        "10000898",
        "50771383",
        [("1a2b3c4d-00000000-00000000-00000000-00000001", "PA", "test")],
        None,
    ),  # no report file
]


def _write_csv_gz(path, df: pd.DataFrame) -> None:
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)


@pytest.fixture
def mimic_tree(tmp_path):
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    meta, split, labels = [], [], []
    for subject, study, imgs, report in STUDIES:
        study_dir = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        study_dir.mkdir(parents=True)
        for dicom, view, sp in imgs:
            buf = io.BytesIO()
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(
                buf, "JPEG"
            )
            (study_dir / f"{dicom}.jpg").write_bytes(buf.getvalue())
            meta.append(
                [
                    dicom,
                    subject,
                    study,
                    "CHEST (PA AND LAT)",
                    view,
                    3056,
                    2544,
                    21800506,
                    213014.531,
                    "CHEST (PA AND LAT)",
                    "postero-anterior",
                    "Erect",
                ]
            )
            split.append([dicom, study, subject, sp])
        if report is not None:
            (study_dir.parent / f"s{study}.txt").write_text(report)
        effusion = 1.0 if report == REPORT_EFFUSION else np.nan
        labels.append(
            [
                subject,
                study,
                np.nan,
                0.0,
                np.nan,
                np.nan,
                np.nan,
                np.nan,
                np.nan,
                np.nan,
                np.nan,
                effusion,
                np.nan,
                np.nan,
                0.0 if report == REPORT_EFFUSION else np.nan,
                np.nan,
            ]
        )
    _write_csv_gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame(meta, columns=METADATA_COLUMNS))
    _write_csv_gz(
        root / "mimic-cxr-2.0.0-split.csv.gz",
        pd.DataFrame(split, columns=["dicom_id", "study_id", "subject_id", "split"]),
    )
    _write_csv_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", pd.DataFrame(labels, columns=CHEXPERT_COLUMNS))
    return root


def test_index_keeps_frontal_views(mimic_tree):
    df = load_index(MimicCorpusConfig(root=str(mimic_tree)))
    assert sorted(df["ViewPosition"]) == ["AP", "PA", "PA", "PA"]
    assert "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962" not in set(df["dicom_id"])
    assert len(load_index(MimicCorpusConfig(root=str(mimic_tree), views=("PA",), splits=("train",)))) == 1


def test_import_pairaug_text_and_chexpert_labels(ray_local, mimic_tree, tmp_path):
    out = str(tmp_path / "pairs")
    import_mimic(MimicCorpusConfig(root=str(mimic_tree)), out)
    rows = {r[schema.STUDY_ID]: r for r in read_manifest(out).take_all()}
    assert set(rows) == {"50414267", "53189527", "57375967", "50771383"}
    r = rows["50414267"]
    assert r[schema.PATIENT_ID] == "10000032" and r[schema.VIEW] == "PA" and r[schema.SPLIT] == "train"
    assert r[schema.IMAGE_URI].endswith(
        "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    )
    # PairAug preprocessing: impression first, lower case, no punctuation, sentences joined by ",".
    assert r[schema.REPORT].startswith(
        "moderate left pleural effusion,there is a moderate left pleural effusion"
    )
    assert r[schema.FINDINGS].startswith("There is a moderate left pleural effusion")
    assert r[schema.IMPRESSION] == "Moderate left pleural effusion."
    assert r[schema.label_column("Pleural Effusion")] == 1 and r[schema.label_column("Cardiomegaly")] == 0
    assert r[schema.label_column("Edema")] is None
    assert rows["57375967"][schema.SPLIT] == "validate"
    missing = rows["50771383"]
    assert (
        missing[schema.STATUS] == schema.STATUS_ERROR and "s50771383.txt: not found" in missing[schema.ERROR]
    )
    assert rows["53189527"][schema.STATUS] == schema.STATUS_OK


def test_import_chexzero_text_and_labeler(ray_local, mimic_tree, tmp_path):
    out = str(tmp_path / "pairs")
    import_mimic(MimicCorpusConfig(root=str(mimic_tree), text="chexzero", labels="labeler"), out)
    rows = {r[schema.STUDY_ID]: r for r in read_manifest(out).take_all()}
    assert rows["50414267"][schema.REPORT] == "Moderate left pleural effusion."
    assert rows["53189527"][schema.REPORT] == "NO IMPRESSION"
    # Labels from this project's labeler on findings + impression.
    assert rows["50414267"][schema.label_column("Pleural Effusion")] == 1
    assert rows["50414267"][schema.label_column("Pneumothorax")] == 0
    assert rows["53189527"][schema.label_column("Support Devices")] == 1


def test_reports_root_and_missing_layout(ray_local, mimic_tree, tmp_path):
    with pytest.raises(MimicLayoutError, match="mimic-cxr-2.0.0-metadata.csv.gz not found"):
        load_index(MimicCorpusConfig(root=str(tmp_path)))
    # Reports in a separate tree (the layout of mimic-cxr-reports.zip).
    reports = tmp_path / "reports"
    for txt in mimic_tree.rglob("s*.txt"):
        dest = reports / txt.relative_to(mimic_tree)
        dest.parent.mkdir(parents=True, exist_ok=True)
        txt.rename(dest)
    out = str(tmp_path / "pairs")
    import_mimic(MimicCorpusConfig(root=str(mimic_tree), reports_root=str(reports)), out)
    statuses = sorted(r[schema.STATUS] for r in read_manifest(out).take_all())
    assert statuses == ["error", "ok", "ok", "ok"]


# The published headers of MIMIC-IV v2.2 hosp/patients and hosp/admissions.
PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_COLUMNS = [
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "deathtime",
    "admission_type",
    "admit_provider_id",
    "admission_location",
    "discharge_location",
    "insurance",
    "language",
    "marital_status",
    "race",
    "edregtime",
    "edouttime",
    "hospital_expire_flag",
]


@pytest.fixture
def mimic_iv_tree(tmp_path):
    """10000032: F, 52 in anchor year 2180 (the fake studies are dated 2180-05-06), race WHITE over
    three admissions (one UNKNOWN); 10000764: M, anchor 2178 -> 2 years older at the study, race
    'BLACK/CAPE VERDEAN' once and UNABLE TO OBTAIN once; 10000898 has no MIMIC-IV row."""
    root = tmp_path / "mimiciv" / "2.2"
    (root / "hosp").mkdir(parents=True)
    patients = [
        ["10000032", "F", 52, 2180, "2014 - 2016", None],
        ["10000764", "M", 86, 2178, "2008 - 2010", None],
    ]
    _write_csv_gz(root / "hosp" / "patients.csv.gz", pd.DataFrame(patients, columns=PATIENTS_COLUMNS))

    def admission(subject, hadm, race):
        row = dict.fromkeys(ADMISSIONS_COLUMNS)
        row.update(subject_id=subject, hadm_id=hadm, admittime="2180-05-06 22:23:00", race=race)
        return row

    admissions = [
        admission("10000032", 22595853, "WHITE"),
        admission("10000032", 22841357, "UNKNOWN"),
        admission("10000032", 25742920, "WHITE - OTHER EUROPEAN"),
        admission("10000764", 27897940, "BLACK/CAPE VERDEAN"),
        admission("10000764", 29378459, "UNABLE TO OBTAIN"),
    ]
    _write_csv_gz(root / "hosp" / "admissions.csv.gz", pd.DataFrame(admissions, columns=ADMISSIONS_COLUMNS))
    return root


def test_mimic_iv_join_adds_sex_age_at_the_study_and_race_group(
    ray_local, mimic_tree, mimic_iv_tree, tmp_path
):
    cfg = MimicCorpusConfig(root=str(mimic_tree), mimic_iv_root=str(mimic_iv_tree))
    out = str(tmp_path / "pairs")
    import_mimic(cfg, out)
    rows = {r[schema.STUDY_ID]: r for r in read_manifest(out).take_all()}
    a, b, unknown = rows["50414267"], rows["57375967"], rows["50771383"]
    assert (a[schema.SEX], a[schema.AGE], a[schema.RACE]) == ("F", 52, "WHITE")
    assert (b[schema.SEX], b[schema.AGE], b[schema.RACE]) == ("M", 88, "BLACK")
    assert (unknown[schema.SEX], unknown[schema.AGE], unknown[schema.RACE]) == (None, None, None)
    # Without MIMIC-IV the columns are not invented.
    assert schema.SEX not in load_index(MimicCorpusConfig(root=str(mimic_tree))).columns


def test_race_groups_and_a_missing_mimic_iv_table_are_named(mimic_tree, tmp_path):
    from pairaug_ray.corpora.mimic_iv import MimicIVLayoutError, race_group

    assert [race_group(v) for v in ("ASIAN - CHINESE", "HISPANIC/LATINO - DOMINICAN", "SOUTH AMERICAN")] == [
        "ASIAN",
        "HISPANIC",
        "HISPANIC",
    ]
    assert race_group("AMERICAN INDIAN/ALASKA NATIVE") == "OTHER"
    assert race_group("PATIENT DECLINED TO ANSWER") is None and race_group(float("nan")) is None
    with pytest.raises(MimicIVLayoutError, match="hosp/patients.csv.gz not found"):
        load_index(MimicCorpusConfig(root=str(mimic_tree), mimic_iv_root=str(tmp_path)))


def test_the_report_tree_alone_is_a_report_only_corpus(ray_local, mimic_tree, tmp_path):
    """corpus.reports with format mimic reads files/pXX/pSUBJECT/sSTUDY.txt without the images or
    the metadata: one row per report, in PairAug's text form, its split from the official split
    file beside the tree (so validate and test studies are never drawn into training data)."""
    from pairaug_ray.config import ReportsCorpusConfig
    from pairaug_ray.corpora.reports import import_reports

    out = str(tmp_path / "reports")
    import_reports(ReportsCorpusConfig(path=str(mimic_tree), format="mimic"), out)
    rows = {r[schema.STUDY_ID]: r for r in read_manifest(out).take_all()}
    assert set(rows) == {"50414267", "53189527", "57375967"}  # 50771383 has no report file
    assert {s: r[schema.SPLIT] for s, r in rows.items()} == {
        "50414267": "train",
        "53189527": "train",
        "57375967": "validate",
    }
    effusion = rows["50414267"]
    assert effusion[schema.PATIENT_ID] == "10000032" and effusion[schema.IMAGE_URI] is None
    assert effusion[schema.SOURCE_KIND] == "report" and effusion[schema.STATUS] is None
    assert effusion[schema.REPORT].startswith("moderate left pleural effusion")
    assert effusion[schema.label_column("Pleural Effusion")] == 1
    assert rows["53189527"][schema.REPORT] == rows["53189527"][schema.REPORT].lower() != ""
