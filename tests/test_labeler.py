"""The rule-based CheXpert-style labeler: mentions, negation/uncertainty scope, aggregation."""

from __future__ import annotations

import pytest

from pairaug_ray.corpora.iu_reports import iu_archive, load_iu_reports, score
from pairaug_ray.schema import CHEXPERT_OBSERVATIONS, label_column
from pairaug_ray.text.labeler import (
    OTHER_FINDING,
    Mention,
    ReportLabels,
    changed_observations,
    label_report,
)
from pairaug_ray.text.sections import split_sentences


def labels(text: str) -> dict[str, int | None]:
    return label_report(text).labels


def mentioned(text: str) -> dict[str, int]:
    """Only the observations the text speaks about."""
    return {k: v for k, v in labels(text).items() if v is not None}


# Each observation: one positive, one negative, one uncertain phrasing.
CASES = [
    ("Enlarged Cardiomediastinum", "The mediastinum is widened.", 1),
    ("Enlarged Cardiomediastinum", "Cardiomediastinal silhouette is within normal limits.", 0),
    ("Enlarged Cardiomediastinum", "Possible mediastinal widening.", -1),
    ("Cardiomegaly", "The heart is moderately enlarged.", 1),
    ("Cardiomegaly", "No cardiomegaly.", 0),
    ("Cardiomegaly", "Borderline cardiomegaly.", -1),
    ("Lung Opacity", "Patchy opacity in the right lower lobe.", 1),
    ("Lung Opacity", "No focal airspace opacity.", 0),
    ("Lung Opacity", "Questionable left basilar infiltrate.", -1),
    ("Lung Lesion", "A 1.5 cm nodule in the right upper lobe.", 1),
    ("Lung Lesion", "No suspicious pulmonary nodules or masses.", 0),
    ("Lung Lesion", "Possible right hilar mass.", -1),
    ("Edema", "Moderate pulmonary edema.", 1),
    ("Edema", "There is no pulmonary edema.", 0),
    ("Edema", "Findings may represent mild interstitial edema.", -1),
    ("Consolidation", "Right lower lobe consolidation.", 1),
    ("Consolidation", "No focal consolidation.", 0),
    ("Consolidation", "Probable left basilar consolidation.", -1),
    ("Pneumonia", "Right lower lobe pneumonia.", 1),
    ("Pneumonia", "No evidence of pneumonia.", 0),
    ("Pneumonia", "Opacity concerning for infection.", -1),
    ("Atelectasis", "Plate-like atelectasis at the left base.", 1),
    ("Atelectasis", "No atelectasis.", 0),
    ("Atelectasis", "Streaky opacity, likely atelectasis.", -1),
    ("Pneumothorax", "Small left apical pneumothorax.", 1),
    ("Pneumothorax", "No pneumothorax is seen.", 0),
    ("Pneumothorax", "Questionable tiny right apical pneumothorax.", -1),
    ("Pleural Effusion", "Small bilateral pleural effusions.", 1),
    ("Pleural Effusion", "The costophrenic angles are sharp.", 0),
    ("Pleural Effusion", "Small left effusion versus pleural thickening.", -1),
    ("Pleural Other", "Right apical pleural thickening.", 1),
    ("Pleural Other", "No pleural thickening.", 0),
    ("Pleural Other", "Possible pleural scarring.", -1),
    ("Fracture", "Healed left rib fractures.", 1),
    ("Fracture", "No acute displaced fracture.", 0),
    ("Fracture", "Possible nondisplaced rib fracture.", -1),
    ("Support Devices", "Endotracheal tube terminates 4 cm above the carina.", 1),
    ("Support Devices", "The nasogastric tube has been removed.", 0),
    ("Support Devices", "Possible retained catheter fragment.", -1),
]


@pytest.mark.parametrize(("observation", "text", "expected"), CASES)
def test_each_observation(observation: str, text: str, expected: int) -> None:
    assert labels(text)[observation] == expected


def test_every_observation_is_covered_three_ways() -> None:
    covered = {(o, v) for o, _, v in CASES}
    for obs in CHEXPERT_OBSERVATIONS[1:]:
        assert {(obs, 1), (obs, 0), (obs, -1)} <= covered, obs


# --- scope ----------------------------------------------------------------------------------------
def test_negation_spreads_over_a_list() -> None:
    assert mentioned("No pleural effusion or pneumothorax.") == {
        "No Finding": 1,
        "Pleural Effusion": 0,
        "Pneumothorax": 0,
    }
    assert mentioned("No focal consolidation, pleural effusion, or pneumothorax is seen.") == {
        "No Finding": 1,
        "Consolidation": 0,
        "Pleural Effusion": 0,
        "Pneumothorax": 0,
    }


def test_but_ends_negation_scope() -> None:
    assert mentioned("No effusion, but there is a small left pneumothorax.") == {
        "Pleural Effusion": 0,
        "Pneumothorax": 1,
    }


@pytest.mark.parametrize(
    "text",
    [
        "Cannot exclude early pneumonia.",
        "Early pneumonia cannot be excluded.",
        "Pneumonia cannot be ruled out.",
        "Pneumonia is not excluded.",
        "Atelectasis versus pneumonia.",
        "Atelectasis or pneumonia.",
        "Pneumonia?",
    ],
)
def test_uncertainty(text: str) -> None:
    assert labels(text)["Pneumonia"] == -1


def test_uncertainty_beats_negation_for_cannot_exclude() -> None:
    # A negation and an "exclude" cue on one mention: uncertain wins, as in CheXpert.
    assert labels("No evidence to rule out pneumonia.")["Pneumonia"] == -1
    assert labels("No definite consolidation, though pneumonia cannot be excluded.")["Pneumonia"] == -1


@pytest.mark.parametrize(
    ("text", "observation", "expected"),
    [
        ("No evidence of pneumonia; may be atelectasis.", "Atelectasis", -1),
        ("No evidence of pneumonia; may be atelectasis.", "Pneumonia", 0),
        ("Possible small effusion, no pneumothorax.", "Pneumothorax", 0),
        ("Possible small effusion, no pneumothorax.", "Pleural Effusion", -1),
        ("No focal consolidation to suggest pneumonia.", "Pneumonia", 0),
        ("Right lower lobe opacity concerning for pneumonia.", "Pneumonia", -1),
        ("Right lower lobe opacity concerning for pneumonia.", "Lung Opacity", 1),
        ("Pleural effusion has resolved, small pneumothorax persists.", "Pleural Effusion", 0),
        ("Pleural effusion has resolved, small pneumothorax persists.", "Pneumothorax", 1),
        ("Atelectasis rather than pneumonia.", "Pneumonia", 0),
        ("Atelectasis rather than pneumonia.", "Atelectasis", 1),
        ("No change in the small left pleural effusion.", "Pleural Effusion", 1),
        ("No new consolidation.", "Consolidation", -1),
        ("Lungs are clear without focal consolidation, effusion, or edema.", "Edema", 0),
        ("Small effusion, possible pneumonia.", "Pleural Effusion", 1),
    ],
)
def test_scope_rules(text: str, observation: str, expected: int) -> None:
    assert labels(text)[observation] == expected


# --- size and contour phrases ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Stable cardiomegaly.", 1),
        ("Heart size is normal.", 0),
        ("The heart is not enlarged.", 0),
        ("Normal heart size.", 0),
        ("Heart size is top normal.", 0),
        ("The heart may be enlarged.", -1),
        ("Enlarged cardiac silhouette.", 1),
        ("Heart size and mediastinal contours are within normal limits.", 0),
        # A size word elsewhere in the clause is not about the heart; "stable" says nothing.
        ("Stable heart size, moderately enlarged and tortuous aorta.", None),
        ("No effusion, heart is enlarged.", 1),
    ],
)
def test_heart_size(text: str, expected: int | None) -> None:
    assert labels(text)["Cardiomegaly"] == expected


def test_chf_implies_uncertain_cardiomegaly() -> None:
    assert mentioned("Findings consistent with congestive heart failure.") == {
        "Cardiomegaly": -1,
        "Edema": 1,
    }
    # Vascular congestion suggests edema; CheXpert calls it uncertain.
    assert mentioned("Mild pulmonary vascular congestion.") == {"Edema": -1}


def test_look_alikes_are_excluded() -> None:
    assert labels("Small pericardial effusion.")["Pleural Effusion"] is None
    assert labels("Calcified granuloma and calcified nodule.")["Lung Lesion"] is None
    assert labels("Compression deformity with collapse of the T7 vertebral body.")["Atelectasis"] is None
    assert labels("Biapical pleural scarring.")["Lung Opacity"] is None
    assert labels("Median sternotomy wires and mediastinal clips.")["Support Devices"] is None


# --- No Finding -----------------------------------------------------------------------------------
def test_no_acute_process_is_no_finding() -> None:
    result = label_report("No acute cardiopulmonary process.")
    assert result.labels == {o: (1 if o == "No Finding" else None) for o in CHEXPERT_OBSERVATIONS}
    assert result.mentions == ()


def test_no_finding_rules() -> None:
    # Support devices do not stop No Finding.
    assert mentioned("Right PICC tip in the SVC. Lungs are clear.") == {"No Finding": 1, "Support Devices": 1}
    # Positive or uncertain findings do, and No Finding is then None, never 0.
    assert labels("Small left effusion.")["No Finding"] is None
    assert labels("Possible small left effusion.")["No Finding"] is None
    # Abnormalities outside the 14 block it too (CheXpert's No Finding list), unless negated.
    result = label_report("Hyperinflated lungs compatible with emphysema.")
    assert result.labels["No Finding"] is None
    assert {m.observation for m in result.mentions} == {OTHER_FINDING}
    assert labels("No emphysema.")["No Finding"] == 1
    # Nothing to read: nothing to say.
    assert labels("")["No Finding"] is None
    assert labels("   \n ")["No Finding"] is None


# --- mentions and report structure ----------------------------------------------------------------
def test_mentions_carry_sentence_index_and_offsets() -> None:
    text = "Heart size is normal.  No effusion, but small left pneumothorax."
    result = label_report(text)
    assert result.mentions == (
        Mention("Cardiomegaly", "negative", 0, 0, 20, "Heart size is normal"),
        Mention("Pleural Effusion", "negative", 1, 26, 34, "effusion"),
        Mention("Pneumothorax", "positive", 1, 51, 63, "pneumothorax"),
    )
    sentences = split_sentences(text)
    for m in result.mentions:
        assert text[m.start : m.end] == m.text
        s = sentences[m.sentence_index]
        assert s.start <= m.start < m.end <= s.end


def test_only_findings_and_impression_of_a_headed_report_are_labelled() -> None:
    report = (
        "INDICATION: Fever, evaluate for pneumonia.\n"
        "FINDINGS: Small right pleural effusion.\n"
        "IMPRESSION: Right effusion. No pneumonia.\n"
    )
    result = label_report(report)
    assert mentioned(report) == {"Pleural Effusion": 1, "Pneumonia": 0}
    indication = split_sentences(report)[0]
    assert all(m.start > indication.end for m in result.mentions)
    assert label_report(report, findings_impression_only=False).labels["Pneumonia"] == -1
    # Headed, but no findings/impression: the request and procedure sections are still skipped.
    assert mentioned("EXAMINATION: Chest.\nINDICATION: Rule out pneumonia.\nWET READ: Small effusion.") == {
        "Pleural Effusion": 1
    }


def test_pairaug_form_text() -> None:
    assert mentioned("no acute process,moderate cardiomegaly,no pleural effusion,left base atelectasis") == {
        "Cardiomegaly": 1,
        "Pleural Effusion": 0,
        "Atelectasis": 1,
    }


def test_as_row_uses_manifest_columns() -> None:
    row = label_report("Small left pneumothorax.").as_row()
    assert list(row) == [label_column(o) for o in CHEXPERT_OBSERVATIONS]
    assert row["label_pneumothorax"] == 1 and row["label_no_finding"] is None


def test_report_labels_is_frozen() -> None:
    result = label_report("No effusion.")
    assert isinstance(result, ReportLabels)
    with pytest.raises(AttributeError):
        result.labels = {}  # type: ignore[misc]


# --- changed_observations -------------------------------------------------------------------------
def test_changed_observations() -> None:
    before = labels("Small left pleural effusion. No pneumothorax.")
    after = labels("No pleural effusion. Small left pneumothorax.")
    assert changed_observations(before, after) == ["Pneumothorax", "Pleural Effusion"]
    assert changed_observations(before, before) == []
    # No Finding is not a finding; column-keyed, float and NaN labels (pandas) compare by value.
    assert changed_observations({"No Finding": 1}, {"No Finding": None}) == []
    row = {label_column("Edema"): 1.0, label_column("Fracture"): float("nan")}
    assert changed_observations(row, {"Edema": 1}) == []
    assert changed_observations(row, {"Edema": 0}) == ["Edema"]


# --- real reports ---------------------------------------------------------------------------------
# Floors below the measured values (docs/labeler.md) with margin; MeSH indexing is not a gold
# standard, so these guard against regressions rather than certify accuracy.
IU_FLOORS = {  # observation: (precision, recall), labeler positive (1) vs MeSH term
    "Cardiomegaly": (0.95, 0.80),
    "Pleural Effusion": (0.93, 0.80),
    "Pneumothorax": (0.85, 0.70),
    "No Finding": (0.80, 0.92),
}


@pytest.mark.slow
def test_iu_reports_precision_recall_floors() -> None:
    archive = iu_archive()
    if archive is None:
        pytest.skip("the torchxrayvision wheel (data/NLMCXR_reports.tgz) is not installed")
    reports = load_iu_reports(archive)
    assert len(reports) > 3900
    labelled = [label_report(r.text) for r in reports]
    scores = {s.observation: s for s in score(reports, labelled)}
    for obs, (precision, recall) in IU_FLOORS.items():
        s = scores[obs]
        assert s.precision >= precision and s.recall >= recall, s
