"""A deterministic, model-free report rewriter: the `rules` back-end of the rewriting stage.

It does what PairAug asks an LLM to do (its public InterAug/IntraAug/AugText prompts), with rules built
on the project's labeler (`text/labeler.py`) and sentence splitter (`sections.split_sentences`):

- ``inter`` ("partial opposite meanings"): k in [min_flips, max_flips] observations change
  polarity. A finding the report states (positive or uncertain) is negated ("No pleural
  effusion.", "Heart size is normal."); one it negates becomes a positive statement with a
  plausible severity and side ("There is a small right pleural effusion."). Observations the
  report mentions are preferred; when too few can flip, a new positive finding (CheXpert-5 or
  pneumothorax) is added.
- ``intra`` (the same patient later): at least one observation appears or resolves, phrased
  temporally ("New small left pleural effusion.", "The previously seen right pneumothorax has
  resolved."), and sometimes a remaining positive finding changes severity ("The right pleural
  effusion has increased in size.").
- ``paraphrase`` (the AugText baseline): sentences are reworded without changing what they say
  about any observation; sentences are reordered only when none can be reworded.

How a rewrite is built. The input is split into sentences and labelled once. Only sentences in the
labeler's scope are edited: for a report with FINDINGS / IMPRESSION / CONCLUSION headers, those
sections' sentences; otherwise (no headers, or other headers) the sentences the labeler reads.
Headers, other sections (INDICATION, COMPARISON, ...) and untouched sentences are copied verbatim,
with the whitespace between them. Every sentence that states a flipped observation is rewritten,
so findings and impression agree. Where possible it is cut in its own words: an item of a negated
list ("No pleural effusion or pneumothorax." with the effusion flipped becomes "There is a small
right pleural effusion. No pneumothorax."), a trailing hedge (", concerning for pneumonia"), or
the clauses that do not speak about the flipped observation are kept; the cut text must label
exactly as before. Otherwise the sentence is rebuilt: the flipped observation gets its new
statement, observations it negated become "No A, B or C.", positive ones are restated, and
uncertain ones that only hedged a finding being negated are dropped with it. When a positive
finding is added, "No acute cardiopulmonary process."-style sentences are replaced by it (and
"The lungs are clear." when the new finding is in the lung parenchyma). A finding the report
never mentioned is inserted before its first sentence of pure negations (where positives end in
a typical report), or after its last sentence. New sentences follow the style of the sentence
they replace or sit next to: prose (capitalised, all capitals or all lower case; final period or
not) or PairAug's preprocessed form (lower case, no punctuation, joined by "," with no space).

Guarantees, checked with the labeler inside `rewrite_report` for every output: the text is not
empty and differs from the input after whitespace/case normalisation (even with punctuation
ignored); for ``inter`` and ``intra`` at least one observation's label changes
(`changed_observations`) and every planned flip happened, for ``paraphrase`` no label changes
(No Finding included, except for an input with nothing to label, where any words make it 1). A
candidate that fails is replaced by another seeded variant; after a few, a construction that
always works is used (``inter``/``intra``: add a positive statement of an observation that is not
positive yet; ``paraphrase``: reorder, then an "Overall, ..." lead-in, then repeat a sentence).
See docs/rewriting-rules.md.


Labelling is the labeler's own per-sentence code, with results cached per sentence text (reports
repeat a small vocabulary of sentences), so checking a candidate costs only its new sentences.

The package, one job per module:

- `result`: the version, the modes and what a rewrite returns (`RuleRewrite`, `RuleEdit`);
  `seeding`: the seeded random stream of each attempt.
- `analysis`: reading a report (sentences, scope, mentions, labels; cached per sentence).
- `observations`: the observations and their short names; `attributes`: a finding's side,
  severity and location, read or drawn; `phrasing`: how a finding is stated.
- `style`: the report's surface form; `assemble`: the new text from the input and an `Edit`.
- ``inter`` / ``intra``: `plan` (which findings change), `cut` (a sentence in its own words,
  minus a flipped finding), `compose` (what each sentence becomes), `change` (the mode).
- ``paraphrase``: `rewording` (candidate rewordings of a sentence), `paraphrase` (the mode).
"""

from __future__ import annotations

from pairaug_ray.text.rewrite.analysis import analyse
from pairaug_ray.text.rewrite.change import change
from pairaug_ray.text.rewrite.paraphrase import paraphrase
from pairaug_ray.text.rewrite.result import MODES, RULES_VERSION, Mode, RuleEdit, RuleRewrite

__all__ = ["MODES", "RULES_VERSION", "Mode", "RuleEdit", "RuleRewrite", "rewrite_report"]


def rewrite_report(
    text: str, mode: Mode, seed: int, *, min_flips: int = 1, max_flips: int = 2
) -> RuleRewrite:
    """Rewrite one report (prose, MIMIC-style with headers, or PairAug-preprocessed text).

    Deterministic for (text, mode, seed, min_flips, max_flips). See the package docstring for what
    each mode does and for the guarantees, which are checked here with the labeler.
    """
    if mode not in MODES:
        raise ValueError(f"unknown rewrite mode {mode!r}; expected one of {', '.join(MODES)}")
    if not 1 <= min_flips <= max_flips:
        raise ValueError(f"need 1 <= min_flips <= max_flips, got {min_flips}, {max_flips}")
    if not isinstance(text, str):
        raise TypeError(f"report text must be a string, got {type(text).__name__}")
    doc = analyse(text)
    if mode == "paraphrase":
        return paraphrase(doc, seed, min_flips, max_flips)
    return change(doc, mode, seed, min_flips, max_flips)
