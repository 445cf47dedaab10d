"""Report sections, CheXzero's impression rule, PairAug's preprocessing and sentence splitting."""

from __future__ import annotations

import pytest

from pairaug_ray.text.sections import (
    Sentence,
    chexzero_impression,
    extract_sections,
    find_headers,
    pairaug_text,
    split_sentences,
)

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.

 RECOMMENDATION(S):  Nipple markers on repeat radiograph.

 NOTIFICATION:  Dr. ___ was told at 10:30 a.m. on ___.
"""


def test_mimic_report_all_headers() -> None:
    s = extract_sections(MIMIC_REPORT)
    assert s.findings == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
        "opacities that most likely represent nipple shadows. The cardiomediastinal silhouette is normal."
    )
    assert s.impression == "No acute cardiopulmonary process."
    assert list(s.sections) == [
        "FINAL REPORT",
        "EXAMINATION",
        "INDICATION",
        "TECHNIQUE",
        "COMPARISON",
        "FINDINGS",
        "IMPRESSION",
        "RECOMMENDATION(S)",
        "NOTIFICATION",
    ]
    assert s.sections["FINAL REPORT"] == ""
    assert s.sections["INDICATION"] == "___F with new onset ascites // eval for infection"
    assert s.sections["COMPARISON"] == "___."
    assert s.sections["RECOMMENDATION(S)"] == "Nipple markers on repeat radiograph."
    # "10:30" and "a.m." do not start sections.
    assert s.sections["NOTIFICATION"] == "Dr. ___ was told at 10:30 a.m. on ___."


def test_inline_headers_and_irregular_whitespace() -> None:
    s = extract_sections("FINDINGS:  No   effusion.\tHeart normal. IMPRESSION:No acute\n\n process.")
    assert s.findings == "No effusion. Heart normal."
    assert s.impression == "No acute process."


def test_missing_impression_and_conclusion_fallback() -> None:
    assert extract_sections("FINDINGS: Small left effusion.").impression is None
    s = extract_sections("FINDINGS: Small left effusion.\nCONCLUSION: Left effusion.")
    assert (s.findings, s.impression) == ("Small left effusion.", "Left effusion.")
    # An IMPRESSION beats a CONCLUSION wherever it is.
    s = extract_sections("IMPRESSION: Effusion.\nCONCLUSION: Something else.")
    assert s.impression == "Effusion."


def test_no_headers_means_no_sections() -> None:
    s = extract_sections("The lungs are clear. No effusion.")
    assert (s.findings, s.impression, s.sections) == (None, None, {})


def test_empty_section_and_repeated_header() -> None:
    s = extract_sections("FINDINGS: Clear lungs.\nIMPRESSION:\n")
    assert s.impression is None and s.sections["IMPRESSION"] == ""
    s = extract_sections("IMPRESSION: First read.\nADDENDUM\nIMPRESSION: Revised read.")
    assert s.impression == "Revised read."


def test_line_start_headers_in_any_case_and_combined_section() -> None:
    s = extract_sections("Findings: Clear.\nImpression: Normal.")
    assert (s.findings, s.impression) == ("Clear.", "Normal.")
    s = extract_sections("FINDINGS AND IMPRESSION: No acute process.")
    assert (s.findings, s.impression) == (None, "No acute process.")


def test_find_headers_offsets() -> None:
    text = "Intro. FINDINGS: a. IMPRESSION: b."
    headers = find_headers(text)
    assert [(h.name, text[h.start : h.end]) for h in headers] == [
        ("FINDINGS", "FINDINGS:"),
        ("IMPRESSION", "IMPRESSION:"),
    ]


# --- CheXzero -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (MIMIC_REPORT, "No acute cardiopulmonary process."),
        ("FINDINGS: x. IMPRESSION: first. ADDENDUM IMPRESSION: second  one.", "second one."),
        ("IMPRESSION: a. NOTIFICATION: n. RECOMMENDATION(S): r.", "a."),
        ("FINDINGS: nothing to see.", "NO IMPRESSION"),
        ("Impression: lower case is not the header.", "NO IMPRESSION"),
        ("IMPRESSION:glued to the text.", "NO IMPRESSION"),
        # An end marker before the last IMPRESSION gives an empty impression ...
        ("FINDINGS: x RECOMMENDATION: y IMPRESSION: z", ""),
        # ... unless it is the very first token, which CheXzero's truthiness test ignores.
        ("RECOMMENDATION: y IMPRESSION: z", "z"),
        # RECOMMENDATION: is looked up before RECOMMENDATIONS:, whatever their order.
        ("IMPRESSION: a RECOMMENDATIONS: b RECOMMENDATION: c", "a RECOMMENDATIONS: b"),
        ("IMPRESSION: a NOTIFICATIONS: b", "a"),
    ],
)
def test_chexzero_impression(report: str, expected: str) -> None:
    assert chexzero_impression(report) == expected


# --- PairAug --------------------------------------------------------------------------------------
def test_pairaug_text_known_string() -> None:
    impression = "1. No acute cardiopulmonary process. 2. Stable mild cardiomegaly."
    findings = (
        "Heart size is mildly enlarged, 1.5 cm nodule.\nNo pleural effusion or pneumothorax. Café noted. Ok."
    )
    assert pairaug_text(impression, findings) == (
        "no acute cardiopulmonary process,stable mild cardiomegaly,heart size is mildly enlarged,"
        "5 cm nodule,no pleural effusion or pneumothorax,caf noted"
    )


def test_pairaug_text_edge_cases() -> None:
    # Fewer than 3 tokens in total: dropped.
    assert pairaug_text("No effusion.", None) is None
    assert pairaug_text(None, None) is None
    # A sentence whose tokens are all non-ASCII is dropped after counting as 2 tokens.
    assert pairaug_text("\u00e9\u00e9 \u00e9. Clear lungs.", None) is None
    assert pairaug_text("No pleural effusion", None) == "no pleural effusion"
    # De-identification underscores are word characters; times split at the colon.
    assert pairaug_text("Discussed with Dr. ___ at 10:30", None) == "discussed with dr,___ at 10 30"
    assert pairaug_text("Small\ufffd\ufffdleft effusion", None) == "small left effusion"


# --- sentences ------------------------------------------------------------------------------------
def _texts(text: str) -> list[str]:
    sentences = split_sentences(text)
    for s in sentences:
        assert text[s.start : s.end] == s.text
    return [s.text for s in sentences]


def test_sentence_offsets() -> None:
    text = "  No effusion.  Mild cardiomegaly!\n\nPneumonia? "
    assert split_sentences(text) == [
        Sentence("No effusion.", 2, 14),
        Sentence("Mild cardiomegaly!", 16, 34),
        Sentence("Pneumonia?", 36, 46),
    ]


def test_abbreviations_and_decimals_do_not_split() -> None:
    text = "Dr. Smith measured a 1.5 cm nodule, e.g. in the RUL, vs. scar. No effusion."
    assert _texts(text) == [
        "Dr. Smith measured a 1.5 cm nodule, e.g. in the RUL, vs. scar.",
        "No effusion.",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. No effusion. 2. Mild cardiomegaly.", ["No effusion.", "Mild cardiomegaly."]),
        ("1. No effusion 2. Mild cardiomegaly.", ["No effusion", "Mild cardiomegaly."]),
        ("IMPRESSION:\n1) No effusion\n2) Mild cardiomegaly", ["No effusion", "Mild cardiomegaly"]),
    ],
)
def test_numbered_lists(text: str, expected: list[str]) -> None:
    assert _texts(text) == expected


def test_number_at_sentence_end_is_not_a_list_marker() -> None:
    assert _texts("Compared with study 2. The heart is normal.") == [
        "Compared with study 2.",
        "The heart is normal.",
    ]


def test_run_ons_and_semicolons_stay_whole() -> None:
    assert _texts("no effusion heart normal lungs clear") == ["no effusion heart normal lungs clear"]
    assert _texts("No effusion; heart normal, lungs clear.") == ["No effusion; heart normal, lungs clear."]


def test_pairaug_form_splits_at_joining_commas() -> None:
    text = pairaug_text("No acute process. Heart size normal.", "Lungs are clear, no effusion.")
    assert text == "no acute process,heart size normal,lungs are clear no effusion"
    assert _texts(text) == ["no acute process", "heart size normal", "lungs are clear no effusion"]
    # A thousands separator is not a joiner.
    assert _texts("weight 1,500 g") == ["weight 1,500 g"]


def test_headers_are_not_sentences() -> None:
    assert _texts("FINDINGS: No effusion. IMPRESSION: Normal.") == ["No effusion.", "Normal."]
