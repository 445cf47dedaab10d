"""Quality checks on a rewritten report: does it do what the mode asked, and nothing else?

Every output of the rewriting stage passes through `check_rewrite`; a failing output is generated
again (up to `rewrite.max_attempts`) and, if it never passes, recorded with the reason returned
here. The reasons start with a short category ("empty", "too long", "unchanged", "chatter",
"no finding changed", "findings changed") so outcome counts can be grouped.
"""

from __future__ import annotations

import re

from pairaug_ray.text.labeler import ReportLabels, changed_observations, label_report

# Refusals and chatter around the report ("As an AI ...", "Here is the augmented report:", "Sure!").
_CHATTER = re.compile(
    r"""\bas an ai\b|\blanguage model\b|\bi(?:'m| am) (?:sorry|unable|not able)\b|\bi can(?:'t|not)\b
    |\bi (?:apologi[sz]e|would be happy)\b|^\s*(?:here(?:'s| is| are)|sure\b|certainly\b|of course\b|okay\b)
    |\b(?:augmented|rewritten|modified) (?:report|version)\b|\bthe original report\b""",
    re.IGNORECASE | re.VERBOSE,
)
# Harmless wrapping a model may add; removed before the checks.
_LABEL_PREFIX = re.compile(r"^\s*(?:augmentation|report|new report|impression)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def word_count(text: str) -> int:
    """Words as PairAug counts them for its minimum-length rule: `len(text.split(' '))`."""
    return len(text.split(" "))


def clean_output(text: str | None) -> str:
    """Strip whitespace, surrounding quotes/code fences and a leading 'Report:' label."""
    if not text:
        return ""
    out = text.strip()
    if out.startswith("```") and out.endswith("```"):
        out = out.strip("`").strip()
    out = _LABEL_PREFIX.sub("", out).strip()
    if len(out) >= 2 and out[0] in _QUOTES and out[-1] in _QUOTES:
        out = out[1:-1].strip()
    return re.sub(r"\s+", " ", out)


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def check_rewrite(source: str, output: str, mode: str, *, max_words: int) -> str | None:
    """None when `output` is an acceptable `mode` rewrite of `source`, else the reason it is not.

    - non-empty; at most `max_words` words; different from the source;
    - no refusal or chatter;
    - inter / intra: the labeler sees at least one finding changed; paraphrase: none changed.
    """
    return assess_rewrite(source, output, mode, max_words=max_words)[0]


def assess_rewrite(
    source: str,
    output: str,
    mode: str,
    *,
    max_words: int,
    source_labels: ReportLabels | None = None,
) -> tuple[str | None, ReportLabels | None]:
    """`check_rewrite`'s verdict plus the output's labels (when it got that far), so that callers
    labelling many candidates of one source label the source once and each output once."""
    if not output.strip():
        return "empty: the model returned no text", None
    n = len(output.split())
    if n > max_words:
        return f"too long: {n} words > {max_words}", None
    if _normalised(output) == _normalised(source):
        return "unchanged: the output repeats the input", None
    if m := _CHATTER.search(output):
        return f"chatter: {m.group(0).strip()!r} (a refusal or text around the report)", None
    out_labels = label_report(output)
    changed = changed_observations((source_labels or label_report(source)).labels, out_labels.labels)
    if mode in ("inter", "intra") and not changed:
        return "no finding changed: the labeler reads the same findings as in the input", out_labels
    if mode == "paraphrase" and changed:
        return f"findings changed: {', '.join(changed)} (a paraphrase must keep the meaning)", out_labels
    return None, out_labels
