"""A rule-based CheXpert-style report labeler: 14 observations, each 1 / 0 / -1 / None.

Why rules: later stages must check, on thousands of synthetic reports per second and without a
GPU, that an LLM rewrite changed the findings it was asked to change. The CheXpert labeler
(NegBio) needs a dependency parser and Java; this one is pure-Python regexes, compiled once.

How a report is labelled:

1. Scope. If the text has section headers and a findings/impression/conclusion section, only
   those sections are labelled (an INDICATION "eval for pneumonia" is not a finding); otherwise
   all of it. Sentences come from `sections.split_sentences`, so offsets and sentence indices
   refer to the text as given.
2. Mentions. Each observation has its own phrase patterns (see `_PLAIN` and `_SIZE_RULES`).
   Size/contour phrases ("heart size is normal", "enlarged cardiac silhouette", "cardiomediastinal
   silhouette within normal limits", "costophrenic angles are sharp") carry their own certainty;
   a subject with no size word ("heart size is stable") is no mention. Exclusions drop look-alikes
   (pericardial effusion, calcified nodule, vertebral collapse, pleural scar for Lung Opacity).
   Conventions follow CheXpert: "vascular congestion"/"pulmonary congestion"/"CHF" are Edema;
   a positive or uncertain "CHF"/"heart failure" also gives Cardiomegaly -1; "scarring" is Lung
   Opacity unless pleural; "cardiomediastinal silhouette" is Enlarged Cardiomediastinum only;
   granulomas and calcified nodules are not Lung Lesion; sternotomy wires and surgical clips are
   not Support Devices; "volume loss" is Atelectasis; "no new X" is uncertain.
3. Certainty, per mention, from cues in the same *clause* (a sentence cut at ";", ":", "but",
   "however", "although", "which", "except", "with the exception of", "other than",
   ", there|the|this ...", "and there|the ..."):
   a. a size phrase that says normal -> negative;
   b. "cannot exclude", "cannot be ruled out", "not excluded", "rule out", "no new" -> uncertain
      (these beat negation, as in CheXpert's pre-negation uncertainty rules);
   c. the nearest cue before the mention is a negation ("no", "without", "negative for", "free
      of", "no evidence of", "absence of", "rather than", "resolution of", "removal of", "not"
      within 3 words), or a negation follows within 6 words ("is not seen", "has resolved",
      "removed", "absent") -> negative;
   d. a size phrase that says borderline / top normal, the nearest cue before is an uncertainty
      ("may", "possible", "probable", "likely", "suggest", "concerning for", "suspicious for",
      "questionable", "borderline", ...), one follows ("is suspected", "is possible"), the
      clause has "versus"/"vs"/"?", or the mention is one side of "X or Y" -> uncertain;
   e. otherwise positive.
   "Nearest cue" means a negation's scope ends at the next uncertainty cue and vice versa
   ("no pneumonia, possible atelectasis"); "no change in"/"no significant change" are pseudo
   cues that stop a scope without negating anything.
4. Aggregation, as CheXpert's aggregator: per observation 1 if any mention is positive, else -1
   if any is uncertain, else 0 if any is negative, else None. No Finding is 1 when no
   observation other than Support Devices is positive or uncertain *and* no "other finding" is
   (emphysema, granuloma, calcification, degenerative change, scoliosis, hernia, ...: CheXpert's
   own No Finding blockers, kept here as mentions of the pseudo-observation `OTHER_FINDING`);
   otherwise None. It is never 0, and None for an empty report (CheXpert would say 1).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pairaug_ray.schema import (
    CHEXPERT_OBSERVATIONS,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
    label_column,
)
from pairaug_ray.text.sections import (
    FINDINGS_HEADERS,
    IMPRESSION_HEADERS,
    Sentence,
    section_spans,
    split_sentences,
)

Certainty = Literal["positive", "negative", "uncertain"]
POSITIVE: Certainty = "positive"
NEGATIVE: Certainty = "negative"
UNCERTAIN: Certainty = "uncertain"
NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
# Abnormalities outside the 14 that still make a study "not normal" (CheXpert's No Finding list).
OTHER_FINDING = "Other Finding"

_LABEL_OF = {POSITIVE: LABEL_POSITIVE, NEGATIVE: LABEL_NEGATIVE, UNCERTAIN: LABEL_UNCERTAIN}


@dataclass(frozen=True)
class Mention:
    """One phrase that speaks about an observation; `start`/`end` index the labelled text."""

    observation: str
    certainty: Certainty
    sentence_index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ReportLabels:
    labels: dict[str, int | None]
    mentions: tuple[Mention, ...]

    def as_row(self) -> dict[str, int | None]:
        """The labels keyed by manifest column (`label_pleural_effusion`, ...)."""
        return {label_column(o): self.labels[o] for o in CHEXPERT_OBSERVATIONS}


# --- mention phrases ---------------------------------------------------------------------------------
# Lower-case regex fragments. Each observation's list becomes one alternation, longest first.
_CP_ANGLE = r"(?:costophrenic|cp|costodiaphragmatic) (?:angles?|sulcus|sulci|recess(?:es)?)"
_PLAIN: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": [
        r"(?:superior )?mediastinal (?:widening|enlargement|prominence)",
        r"(?:prominence|widening|enlargement) of the (?:superior )?(?:mediastinum|mediastinal (?:silhouette|contours?))",
        r"(?:prominence|widening|enlargement) of (?:superior )?mediastinum",
        r"widening of the (?:superior )?mediastinum",
        r"enlarged cardiomediastinum",
    ],
    "Cardiomegaly": [
        r"cardiomegaly",
        r"cardiac (?:enlargement|megaly)",
        r"enlargement of the (?:cardiac silhouette|heart|cardiac shadow)",
    ],
    "Lung Opacity": [
        r"opaci(?:ty|ties|fication|fications|fied)",
        r"infiltrat(?:e|es|ed|ion|ions|ive)",
        r"air[- ]?space (?:disease|process|filling)",
        r"alveolar (?:disease|process|filling)",
        r"haziness",
        r"(?:increased|patchy|focal|hazy|ill[- ]defined|streaky|linear|airspace|parenchymal|pulmonary|"
        r"lung|basilar|bibasilar|basal|retrocardiac|perihilar|confluent|reticular|reticulonodular|"
        r"interstitial|alveolar|fluffy|nodular|rounded|round|irregular|vague|faint|subtle|"
        r"poorly defined) densit(?:y|ies)",
        r"densit(?:y|ies) (?:\w+ ){0,3}(?:in|at|within|of|involving|projecting over|overlying) "
        r"(?:the )?(?:\w+ ){0,3}(?:lungs?|lobes?|base|bases|apex|apices|lingula|hemithorax|zones?|"
        r"perihilar region|hilum|parenchyma)",
        r"decreased (?:lung )?(?:translucency|lucency)",
        r"interstitial (?:markings?|pattern|prominence|opacit(?:y|ies)|lung disease|thickening|"
        r"infiltrates?|process)",
        r"reticular (?:pattern|markings?|changes?)",
        r"reticulation",
        r"reticulonodular (?:pattern|markings?|changes?)",
        r"scar(?:s|ring|red)?",
        r"(?:peribronchial|bronchial wall|airway wall) (?:thickening|cuffing)",
    ],
    "Lung Lesion": [
        r"nodul(?:e|es|arity)",
        r"nodular (?:opacit(?:y|ies)|densit(?:y|ies)|lesions?|foc(?:us|i)|opacification)",
        r"mass(?:es)?",
        r"(?:lung|pulmonary|parenchymal|cavitary|cavitating|spiculated|nodular|focal) lesions?",
        r"tumou?rs?",
        r"neoplasms?",
        r"carcinomas?",
        r"malignancy",
        r"lump",
    ],
    "Edema": [
        r"o?edema(?:tous)?",
        r"congestive (?:heart )?failure",
        r"(?:heart|cardiac) failure",
        r"chf",
        r"(?:fluid|volume) overload",
    ],
    "Consolidation": [r"consolidat(?:ion|ions|ed|ive|ing)"],
    "Pneumonia": [
        r"(?:broncho)?pneumonias?",
        r"pneumonic",
        r"infections?",
        r"infectious(?: process| etiology| processes)?",
    ],
    "Atelectasis": [
        r"atelecta(?:sis|ses|tic)",
        r"collaps(?:e|ed|ing)",
        r"volume loss",
    ],
    "Pneumothorax": [
        r"(?:hydro|hemo|haemo)?pneumothora(?:x|ces|xes)",
        r"ptx",
        r"pleural air(?: collections?)?",
        r"air collections? (?:with)?in the pleural space",
    ],
    "Pleural Effusion": [
        r"(?:pleural )?effusions?",
        r"pleural fluid",
        r"fluid (?:with)?in the (?:\w+ )?(?:fissure|pleural space)",
        r"(?:hydro|hemo|haemo)thorax",
        r"hydropneumothorax",
        rf"blunt(?:ing|ed) (?:of )?(?:the )?(?:\w+ ){{0,3}}{_CP_ANGLE}",
        rf"{_CP_ANGLE} (?:\w+ ){{0,2}}blunt(?:ing|ed)",
        rf"{_CP_ANGLE} (?:is |are |was |were |remains? |appears? )?(?:\w+ )?blunt(?:ed|ing)",
    ],
    "Pleural Other": [
        r"pleural (?:thickening|plaques?|calcifications?|scar(?:s|ring)?|fibrosis|reaction)",
        r"pleural[- ](?:and[- ])?parenchymal (?:scar(?:s|ring)?|thickening|changes?)",
        r"pleuro[- ]?parenchymal (?:scar(?:s|ring)?|thickening|changes?)",
        r"thickening of the (?:\w+ )?pleura",
        r"fibrothorax",
        r"(?:bi)?apical (?:pleural |fibronodular |pleuroparenchymal |pleural-parenchymal )?(?:cap(?:s|ping)?|thickening)",
        r"(?:interlobar |)(?:fissural|fissure) thickening",
        r"thickening (?:of|in|along) the (?:\w+ ){0,2}fissures?",
        r"thickened (?:\w+ ){0,2}fissures?",
    ],
    "Fracture": [r"fractur(?:e|es|ed)", r"fx"],
    "Support Devices": [
        r"(?:endotracheal|tracheostomy|et|ett|nasogastric|ng|og|orogastric|enteric|feeding|dobhoff|"
        r"chest|gastric|nasoenteric|nasojejunal|jejunostomy|gastrostomy|thoracostomy|drainage|"
        r"pigtail|trach) tubes?",
        r"tubes?",
        r"(?:central(?: venous)?|venous|picc|arterial|swan[- ]ganz|pulmonary artery|dialysis|hickman|"
        r"internal jugular|ij|subclavian|femoral|port|midline) (?:lines?|catheters?)",
        r"picc",
        r"catheters?",
        r"cvc",
        r"pacemakers?",
        r"pacers?",
        r"a?icds?",
        r"defibrillators?",
        r"(?:pacing|pacer|pacemaker|icd|aicd|cardiac|epicardial|transvenous|defibrillator|right atrial|"
        r"right ventricular|atrial|ventricular|biventricular|coronary sinus) (?:leads?|wires?|generators?|devices?)",
        r"leads? (?:terminat\w*|project\w*|overl\w*|(?:is |are )?in (?:the )?right (?:atrium|ventricle))",
        r"(?:pulse |battery )?generators?",
        r"(?:vagal |vagus |phrenic |spinal cord |spinal |nerve |neuro)(?:nerve )?stimulators?",
        r"prosthetic",
        r"internal fixation",
        r"(?:spinal |harrington |fusion )rods?",
        r"(?:vp |tips |ventriculoperitoneal |pleurx |)shunt (?:tubing|catheters?)",
        r"(?:vp|tips|ventriculoperitoneal) shunt",
        r"tubing",
        r"(?:ivc|greenfield|vena cava) filters?",
        r"prosthetic (?:valves?|heart valves?)",
        r"(?:mitral|aortic|tricuspid|prosthetic|cardiac) valve (?:replacements?|prosthes[ie]s|repair)",
        r"valve replacements?",
        r"annuloplasty ring",
        r"hardware",
        r"(?:fixation )?(?:plates?|screws?)",
        r"arthroplast(?:y|ies)",
        r"prosthes[ie]s",
        r"stents?",
        r"coils?",
        r"cannulae?",
        r"drains?",
        r"mediport",
        r"port-?a-?cath",
        r"(?:chest wall|chest|power|infusion|subcutaneous|implanted|venous access|central venous) ports?",
        r"(?:monitoring|ecg|ekg) (?:leads?|wires?|electrodes?|devices?)",
        r"(?:support|monitoring|medical) (?:devices?|apparatus|equipment)",
        r"devices?",
        r"apparatus",
        r"intra-?aortic balloon pump",
        r"iabp",
        r"(?:left )?ventricular assist device",
        r"lvad",
        r"loop recorder",
    ],
    OTHER_FINDING: [
        r"emphysema(?:tous)?",
        r"bullae",
        r"bullous",
        r"blebs?",
        r"hyperinflat(?:ed|ion)",
        r"hyperexpan(?:ded|sion)",
        r"overinflat(?:ed|ion)",
        r"copd",
        r"chronic obstructive",
        r"(?:chronic )?airways? disease",
        r"bronchiectasis",
        r"bronchi(?:tis|olitis)",
        r"asthma",
        r"granulom(?:a|as|ata|atous)",
        r"calcifi(?:ed|cation|cations)",
        r"calcific",
        r"(?:dextro|levo|dextrorotary |levorotary |thoracolumbar |thoracic )?(?:kypho)?scoliosis",
        r"kyphos(?:is|coliosis)",
        r"kyphotic",
        r"degenerat(?:ive|ion)",
        r"spondylo(?:sis|tic|lysis|listhesis)",
        r"osteophyt(?:e|es|osis)",
        r"osteopenia",
        r"osteoporo(?:sis|tic)",
        r"arthritis",
        r"arthritic",
        r"arthropathy",
        r"hernias?",
        r"eventration",
        r"elevat(?:ed|ion) (?:of )?(?:the )?(?:\w+ )?(?:hemi)?diaphragms?",
        r"(?:hemi)?diaphragms? (?:is |are |remains? )?(?:\w+ )?elevated",
        r"flatten(?:ed|ing) (?:of )?(?:the )?(?:hemi)?diaphragms?",
        r"(?:spine|spinal|dextro|levo|dextro-convex|levo-convex|rightward|leftward|s-shaped|thoracolumbar) curvature",
        r"(?:dextro|levo)curvature",
        r"curvature of the (?:\w+ ){0,2}spine",
        r"scoliotic",
        r"syndesmophytes?",
        r"hyperostosis",
        r"spurring",
        r"endplate changes",
        r"(?:post-?operative|post-?surgical|postsurgical) changes",
        r"hyperaerat(?:ed|ion)",
        r"dextrocardia",
        r"tortu(?:ous|osity)",
        r"ectatic",
        r"ectasia",
        r"aneurysm(?:al)?",
        r"atheroscler(?:osis|otic)",
        r"aspiration",
        r"contusions?",
        r"ha?emorrhage",
        r"hematomas?",
        r"metasta(?:sis|ses|tic)",
        r"pneumomediastinum",
        r"pneumoperitoneum",
        r"free (?:intraperitoneal )?air",
        r"subcutaneous (?:air|gas)",
        r"deformit(?:y|ies)",
        r"fibros(?:is|ing)",
        r"fibrotic",
        r"cysts?",
        r"cystic",
        r"cavit(?:y|ies|ation|ary)",
        r"(?:pulmonary (?:arterial |artery )?|pulmonary venous )hypertension",
        r"(?:enlarged|prominent|bulky|full) (?:hila|hilar|hilum|pulmonary arter(?:y|ies))",
        r"hilar (?:enlargement|prominence|fullness|adenopathy|lymphadenopathy|mass)",
        r"(?:prominence|enlargement|fullness) of the (?:\w+ )?(?:hila|hilum|hilar (?:regions?|contours?))",
        r"unfold(?:ing|ed)",
        r"(?:lymph)?adenopathy",
        r"mastectomy",
        r"lobectomy",
        r"pneumonectomy",
        r"thoracotomy",
        r"foreign bod(?:y|ies)",
        r"lucenc(?:y|ies)",
        r"interstitial (?:lung )?(?:disease|fibrosis|changes?)",
        r"(?:pericardial|joint) effusions?",
    ],
}

# Phrases that only suggest the observation: a mention that is at most uncertain. CheXpert's
# post-negation uncertainty rules treat vascular congestion / prominence / indistinctness so.
_UNCERTAIN_PHRASES: dict[str, list[str]] = {
    "Edema": [
        r"(?:pulmonary |vascular |venous |pulmonary vascular |pulmonary venous |central vascular )?congestion",
        r"congestive changes?",
        r"(?:pulmonary |central )?vascular (?:prominence|engorgement|redistribution|indistinctness|plethora)",
        r"(?:prominen(?:t|ce)|engorge(?:d|ment)|indistinct(?:ness)?) (?:of )?(?:the )?(?:central )?(?:pulmonary )?"
        r"(?:vasculature|vascular markings|vessels)",
        r"indistinctness",
        r"cephalization",
        r"kerley b[- ]lines?",
        r"septal lines",
    ],
}

# Phrases that look like a mention of the observation but are not; a match overlapping one of
# these is dropped for that observation only.
_EXCLUDE: dict[str, list[str]] = {
    "Pleural Effusion": [r"(?:pericardial|joint|knee|shoulder) effusions?", r"pericardial or pleural"],
    "Lung Opacity": [
        r"(?:pleural|pleuro[- ]?parenchymal|pleural[- ](?:and[- ])?parenchymal|apical pleural) "
        r"(?:scar(?:s|ring)?|thickening)",
        r"(?:sternotomy|surgical|skin|incisional|operative|postoperative|post-operative) scar(?:s|ring)?",
        r"scar(?:s|ring)? (?:from|of|related to) (?:the |prior |previous )?(?:sternotomy|surgery|thoracotomy)",
        r"(?:bone|breast|soft tissue|soft-tissue|calcified|calcific|metallic|nipple|osseous) densit(?:y|ies)",
        r"(?:nipple|breast) (?:shadow|opacit(?:y|ies))",
    ],
    "Lung Lesion": [
        r"calcified (?:\w+ )?nodul(?:e|es|ar\w*)",
        r"nodul(?:e|es) (?:\w+ ){0,2}calcified",
        r"mass effect",
        r"soft tissue mass",
        r"breast mass",
    ],
    "Atelectasis": [
        r"(?:vertebral|vertebra|compression|spinal|spine|body|bodies) (?:\w+ ){0,2}collaps(?:e|ed)",
        r"collaps(?:e|ed) (?:of )?(?:the )?(?:\w+ ){0,3}vertebra(?:e|l)?",
    ],
    "Edema": [r"(?:soft tissue|subcutaneous|chest wall) (?:o?edema|congestion)"],
    # Old granulomatous disease and past infections are history, not pneumonia.
    "Pneumonia": [
        r"(?:granulomatous|tuberculous|tuberculosis|tb|fungal|mycobacterial|histoplasm\w*) (?:\w+ )?infections?",
        r"(?:prior|previous|old|remote|healed|past|history of) (?:\w+ ){0,2}(?:infection|pneumonia)s?",
    ],
    "Support Devices": [
        r"(?:eustachian|fallopian|bronchial|neural) tubes?",
        r"(?:sternotomy|sternal) (?:wires?|sutures?)",
        r"plate[- ]?like",
    ],
    # A broken catheter or screw is a device problem, not a bone fracture.
    "Fracture": [
        r"(?:catheter|leads?|wires?|screws?|hardware|device|line|stent|plate|rod)s? (?:\w+ ){0,2}fractur(?:e|es|ed)",
        r"fractur(?:e|es|ed) (?:of )?(?:the )?(?:\w+ ){0,3}(?:leads?|wires?|catheter|screws?|hardware|rods?)",
    ],
}

# --- size / contour phrases that carry their own certainty --------------------------------------------
# "Top normal" / "upper limits of normal" is normal (at its upper bound): negative. "Borderline"
# is the radiologist declining to decide: uncertain.
_Q_UNC = r"borderline(?: enlarged| in size| large)?"
_Q_NEG = (
    r"top[- ]normal|(?:at )?(?:the )?upper (?:limits?|range|end|bounds?) (?:of )?normal|upper[- ]normal|"
    r"high[- ]normal|"
    r"(?:within |at )?normal (?:limits|range)|normal(?:[- ]sized?| in size| size| appearing)?|"
    r"unremarkable|wnl|unenlarged|small|not (?:\w+ )?(?:enlarged|widened|increased|large|dilated)|"
    r"no longer (?:\w+ )?(?:enlarged|widened)"
)
_Q_POS = r"enlarged|enlargement|large|larger|increased|widened|widening|prominent|prominence|dilated|globular"
_FILLER = (
    r"is|are|was|were|be|been|appears?|seems?|remains?|looks?|again|and|the|both|still|now|currently|"
    r"overall|otherwise|grossly|also|size|sizes|in|contours?|silhouettes?|mediastinal|mediastinum|hilar|"
    r"hila|heart|cardiac|pulmonary|vascularity|vasculature|vessels|lungs?|volumes?|mildly|mild|"
    r"moderately|moderate|markedly|marked|severely|severe|slightly|minimally|significantly|"
    r"somewhat|very|may|might|could|each|all|at|\w+ly"
)
_PRE_FILLER = (
    r"sized?|appearing|in|size|heart|cardiac|and|the|hilar|mediastinal|mildly|moderately|markedly|"
    r"severely|slightly"
)
_SEP = r"[\s,-]+"


def _size_rule(subject: str) -> str:
    """`subject ... qualifier` or `qualifier ... subject`, the qualifier captured as neg/unc/pos."""
    q_after = rf"(?:(?P<unc>{_Q_UNC})|(?P<neg>{_Q_NEG})|(?P<pos>{_Q_POS}))"
    q_before = rf"(?:(?P<unc2>{_Q_UNC})|(?P<neg2>{_Q_NEG})|(?P<pos2>{_Q_POS}))"
    return (
        rf"\b(?:(?:{subject})(?:[\s-]+(?:{_FILLER})){{0,6}}?[\s-]+{q_after}"
        rf"|{q_before}(?:{_SEP}(?:{_PRE_FILLER})){{0,3}}?{_SEP}(?:{subject}))\b"
    )


_SIZE_SUBJECTS = {
    "Cardiomegaly": (
        r"heart(?: size)?|cardiac (?:silhouette|size|shadow|contours?|outline|diameter|dimensions?)|"
        r"size of the (?:heart|cardiac silhouette)|cardiopericardial silhouette|heart shadow|"
        r"cardiac and mediastinal (?:contours?|silhouettes?)"
    ),
    "Enlarged Cardiomediastinum": (
        r"cardiomediastinal (?:silhouettes?|contours?|size|shadow|structures)|cardiomediastinum|"
        r"(?:superior )?mediastinal (?:silhouette|contours?|width|configuration|shadow|structures)|"
        r"(?:superior )?mediastinum|mediastinal and hilar contours"
    ),
    "Pleural Effusion": _CP_ANGLE,
}
# Costophrenic angles are only ever "clear/sharp" (no effusion) in this form; blunting is in _PLAIN.
_CP_CLEAR = (
    rf"\b(?:{_CP_ANGLE})(?:{_SEP}(?:is|are|remain|remains|appear|appears|now|again|well|both))"
    r"{0,3}?" + rf"{_SEP}(?P<neg>clear|sharp(?:ly defined)?|preserved|well[- ]defined|normal|free)\b"
    rf"|\b(?P<neg2>clear|sharp|preserved|normal){_SEP}(?:{_CP_ANGLE})\b"
)


def _alternation(fragments: Iterable[str]) -> str:
    return "|".join(sorted(fragments, key=len, reverse=True))


Mode = Literal["plain", "size", "uncertain"]


@dataclass(frozen=True)
class _Rule:
    observation: str
    pattern: re.Pattern[str]
    mode: Mode  # "size": the pattern's named groups neg/unc/pos say the certainty


def _compile_rules() -> tuple[list[_Rule], dict[str, re.Pattern[str]]]:
    rules = [
        _Rule(obs, re.compile(rf"\b(?:{_alternation(frags)})\b"), "plain") for obs, frags in _PLAIN.items()
    ]
    rules += [
        _Rule(obs, re.compile(rf"\b(?:{_alternation(frags)})\b"), "uncertain")
        for obs, frags in _UNCERTAIN_PHRASES.items()
    ]
    for obs, subject in _SIZE_SUBJECTS.items():
        pattern = _CP_CLEAR if obs == "Pleural Effusion" else _size_rule(subject)
        rules.append(_Rule(obs, re.compile(pattern), "size"))
    excludes = {obs: re.compile(rf"\b(?:{_alternation(frags)})\b") for obs, frags in _EXCLUDE.items()}
    return rules, excludes


_RULES, _EXCLUDES = _compile_rules()
_CHF = re.compile(r"(?:congestive )?(?:heart|cardiac) failure|chf|congestive failure")

# --- cues ---------------------------------------------------------------------------------------------
# One regex, one named group per cue kind; group order decides ties at the same position, so the
# pseudo and override cues come first ("no change" is not "no", "cannot exclude" is not "not").
_DEGREE = r"(?:entirely |completely |definitely |definitively |totally |fully |confidently |)"
_CUES: dict[str, list[str]] = {
    "pseudo": [
        r"no (?:significant |substantial |interval |definite |appreciable |major |marked |gross |)"
        r"(?:change|changes|increase|decrease|worsening|improvement|progression|difference)",
        r"not (?:significantly |substantially |)changed",
        r"without (?:significant |interval |)(?:change|increase|worsening)",
        r"not only",
        r"no longer (?:enlarged|widened)",
        r"gram[- ]negative",
        r"age[- ]indeterminate",
    ],
    "ovr_pre": [
        rf"(?:cannot|can not|can't|could not|couldn't) {_DEGREE}(?:exclude|rule out)",
        rf"difficult to {_DEGREE}(?:exclude|rule out)",
        r"(?:not (?:possible|able) to|unable to) (?:exclude|rule out)",
        r"no evidence to (?:rule out|exclude)",
        r"(?:to )?(?:rule|ruling) out",
        r"r/o",
        r"no new",
    ],
    "ovr_post": [
        rf"(?:cannot|can not|can't|could not|couldn't) be {_DEGREE}(?:excluded|ruled out)",
        rf"(?:is |are |was |were |)not {_DEGREE}(?:excluded|ruled out)",
        r"(?:is |are |)(?:difficult|hard) to exclude",
    ],
    "unc_both": [r"versus", r"vs\.?", r"differential(?: diagnosis)?(?: includes?| of)?"],
    "neg_post": [
        r"(?:is |are |was |were |has been |have been |)(?:not|no longer) (?:definitely |)"
        r"(?:seen|identified|present|visualized|visualised|appreciated|evident|demonstrated|detected|"
        r"noted|visible|observed|apparent|shown)",
        r"(?:has|have) (?:since |now |)(?:resolved|cleared|been removed|been withdrawn|been discontinued)",
        r"(?:is|are|was|were|has been|have been) (?:now |)(?:absent|gone|resolved|removed|withdrawn|ruled out)",
    ],
    "neg_bare": [r"resolved", r"removed", r"absent", r"unlikely"],
    "unc_bare": [r"suspected", r"questioned", r"questionable", r"possible", r"probable", r"presumed"],
    "neg_post_near": [
        r"(?:(?:is|are|appears?|remains?) )?(?:within (?:the )?normal limits|within (?:the )?limits of normal)",
        r"(?:is|are|appears?|remains?) (?:normal|unremarkable)",
    ],
    "unc_post": [
        r"(?:is|are|was|were) (?:also |still |)(?:possible|suspected|questioned|probable|questionable)",
        r"(?:is|are) (?:also |still |)likely(?= *(?:[.,;:!?)]|$| present| to be present))",
        r"(?:may|might|could) be present",
        r"(?:may|might|can|could|would) not be (?:seen|demonstrated|visible|visualized|detected|apparent|evident)",
        r"(?:is |are |was |were |)not (?:clearly|well) (?:seen|visualized|visualised|evaluated|appreciated)",
        r"(?:is |are |was |were |)(?:poorly|incompletely) (?:seen|visualized|visualised|evaluated|assessed)",
        r"(?:is |are |was |were |)(?:partially |)obscured",
    ],
    "neg_pre": [
        r"no evidence of",
        r"no (?:radiographic |definite |convincing |)(?:evidence|signs?|findings?) (?:of|for|to suggest|"
        r"suggestive of)",
        r"negative for",
        r"free of",
        r"clear of",
        r"absence of",
        r"without",
        r"no",
        r"none",
        r"neither",
        r"nor",
        r"never",
        r"rather than",
        r"instead of",
        r"(?:interval |complete |)resolution of",
        r"(?:interval |)removal of",
        r"(?:interval |)clearing of",
        r"(?:fails?|failed|did not|does not|do not) (?:to )?(?:show|demonstrate|reveal|see|identify)",
        r"(?:i|we) (?:do not|don't|did not) see",
    ],
    "neg_pre_near": [r"not"],  # "not" negates only what directly follows ("this is not pneumonia")
    # "no opacity to suggest pneumonia" negates pneumonia, "opacity suggestive of pneumonia" does not.
    "inherit": [
        r"to suggest",
        r"suggest(?:ive of|ing)",
        r"to indicate",
        r"(?:concerning|suspicious|worrisome) (?:for|of)",
        r"characteristic of",
        r"typical of",
    ],
    "unc_pre": [
        r"may|might|could",
        r"possibly",
        r"probably",
        r"likely",
        r"potential(?:ly)?",
        r"perhaps",
        r"maybe",
        r"suggest(?:s|ed|ion of|ive)?",
        r"concern for",
        r"suspicion (?:for|of)",
        r"suspect",
        r"question(?: of)?",
        r"query",
        r"consider(?:ed)?",
        r"presum(?:ably|ptive)",
        r"equivocal",
        r"indeterminate",
        r"uncertain",
        r"unclear",
        r"borderline",
        r"(?:evaluate|evaluation|eval|assess|assessment|evaluating|assessing) (?:for|of)",
        r"to evaluate",
        r"correlat(?:e|ion) (?:clinically |)(?:for|with|as to)",
        r"clinical correlation (?:for|with)",
        r"symptoms of",
        r"cannot be characterized",
    ],
}
# How far (in words) each kind of cue reaches before / after itself. A kind missing from a table
# does not act in that direction; "unc_both" ("versus", "?") covers its whole clause.
_PRE_REACH = {
    "pseudo": 15,
    "ovr_pre": 12,
    "neg_pre": 15,
    "neg_pre_near": 2,
    "neg_bare": 2,
    "unc_pre": 12,
    "unc_bare": 12,
}
_POST_REACH = {"ovr_post": 6, "neg_post": 6, "neg_bare": 6, "unc_post": 6, "neg_post_near": 0, "unc_bare": 0}
# Post cues that must follow the mention directly, with no punctuation between ("effusion suspected",
# but not "small effusion, possible pneumonia").
_ADJACENT_POST = frozenset({"neg_post_near", "unc_bare"})
_INHERIT_REACH = 15  # from the cue an "inherit" cue defers to, to the mention
_EFFECT = {
    "ovr_pre": "ovr",
    "ovr_post": "ovr",
    "neg_pre": "neg",
    "neg_pre_near": "neg",
    "neg_post": "neg",
    "neg_post_near": "neg",
    "neg_bare": "neg",
    "unc_pre": "unc",
    "unc_post": "unc",
    "unc_bare": "unc",
    "unc_both": "unc",
    "inherit": "unc",
    "pseudo": None,
}
_INTRINSIC_PRE_REACH = 2  # a negation this close to a size phrase, with no comma between, applies
_CLAUSE_PUNCT = re.compile(r"[,;:]")


def _cue_regex() -> re.Pattern[str]:
    parts = [rf"(?P<{kind}>{_alternation(frags)})" for kind, frags in _CUES.items()]
    # Word boundaries by lookaround (not \b) so that "vs." works; "?" is a cue wherever it is.
    return re.compile(rf"(?<![a-z0-9])(?:{'|'.join(parts)})(?![a-z0-9])|(?P<qmark>\?)")


_CUE = _cue_regex()
_TERMINATOR = re.compile(
    r";|:|\b(?:but|however|although|though|whereas|while|which|except|otherwise|nevertheless|"
    r"nonetheless|yet|apart from|aside from|other than|with the exception of)\b"
    r"|,\s*(?:the|there|this|these|it|he|she)\b|\band (?:there|the|it|this)\b|\bthere (?:is|are)\b"
)
_WORD = re.compile(r"[a-z0-9]+")
_OR_BETWEEN = re.compile(r"^[\s,]*(?:[a-z-]+[\s,]+){0,3}?(?:and/)?or[\s,]+(?:[a-z-]+[\s,]+){0,3}$")


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    # A few characters lower-case to two ("İ"); keep offsets aligned by leaving those as they are.
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


@dataclass(frozen=True)
class _Raw:
    observation: str
    start: int  # offsets within the sentence
    end: int
    intrinsic: Certainty | None  # what the phrase itself says, before any cue
    size: bool  # a size/contour phrase, predicate included ("heart is enlarged")


def _find_mentions(low: str) -> list[_Raw]:
    by_obs: dict[str, list[_Raw]] = {}
    for rule in _RULES:
        for m in rule.pattern.finditer(low):
            intrinsic: Certainty | None = UNCERTAIN if rule.mode == "uncertain" else None
            if rule.mode == "size":
                groups = m.groupdict()
                if groups.get("neg") or groups.get("neg2"):
                    intrinsic = NEGATIVE
                elif groups.get("unc") or groups.get("unc2"):
                    intrinsic = UNCERTAIN
                else:
                    intrinsic = POSITIVE
            by_obs.setdefault(rule.observation, []).append(
                _Raw(rule.observation, m.start(), m.end(), intrinsic, rule.mode == "size")
            )
    found: list[_Raw] = []
    for obs, raws in by_obs.items():
        exclude = _EXCLUDES.get(obs)
        excluded = [(e.start(), e.end()) for e in exclude.finditer(low)] if exclude else []
        kept: list[_Raw] = []
        # Longest first, so a size phrase beats a plain word inside it.
        for r in sorted(raws, key=lambda r: (r.start - r.end, r.start)):
            if any(s < r.end and r.start < e for s, e in excluded):
                continue
            if any(k.start < r.end and r.start < k.end for k in kept):
                continue
            kept.append(r)
        found.extend(kept)
    found.sort(key=lambda r: (r.start, r.end))
    return found


@dataclass(frozen=True)
class _Cue:
    kind: str
    start: int
    end: int
    clause: int


def _certainties(low: str, raws: list[_Raw]) -> list[Certainty]:
    terminators = [(m.start(), m.end()) for m in _TERMINATOR.finditer(low)]
    term_ends = [e for _, e in terminators]

    def clause_of(pos: int) -> int:
        return bisect.bisect_right(term_ends, pos)

    cues = [
        _Cue(
            "unc_both" if m.lastgroup == "qmark" else m.lastgroup or "",
            m.start(),
            m.end(),
            clause_of(m.start()),
        )
        for m in _CUE.finditer(low)
        if not any(s <= m.start() < e for s, e in terminators)
    ]

    def words(a: int, b: int) -> int:
        return len(_WORD.findall(low, a, b))

    out: list[Certainty] = [_certainty(r, low, cues, clause_of(r.start), words) for r in raws]

    # "atelectasis or pneumonia": both sides uncertain, unless negated ("no effusion or pneumothorax")
    # or listed after a pseudo cue ("no change in the effusion or pneumothorax").
    for i in range(len(raws) - 1):
        a, b = raws[i], raws[i + 1]
        if a.end > b.start or clause_of(a.start) != clause_of(b.start) or a.size or b.size:
            continue
        before = [c for c in cues if c.clause == clause_of(a.start) and c.end <= a.start]
        if before and before[-1].kind == "pseudo":
            continue
        if (
            out[i] == POSITIVE
            and out[i + 1] in (POSITIVE, UNCERTAIN)
            and _OR_BETWEEN.match(low[a.end : b.start])
        ):
            out[i] = out[i + 1] = UNCERTAIN
    return out


def _certainty(
    r: _Raw, low: str, cues: list[_Cue], clause: int, words: Callable[[int, int], int]
) -> Certainty:
    if r.intrinsic == NEGATIVE:
        return NEGATIVE
    same = [c for c in cues if c.clause == clause]
    effects: set[str | None] = set()
    # The nearest cue before the mention decides; any other cue kind in between ends its scope.
    before = [c for c in same if c.end <= r.start]
    if before:
        pre = before[-1]
        if pre.kind == "inherit":
            # Takes the polarity of the cue before it ("no X to suggest Y"), else is uncertain.
            earlier = before[-2] if len(before) > 1 else None
            if (
                earlier
                and _EFFECT.get(earlier.kind) == "neg"
                and words(earlier.end, r.start) <= _INHERIT_REACH
            ):
                effects.add("neg")
            elif words(pre.end, r.start) <= _PRE_REACH["unc_pre"]:
                effects.add("unc")
        else:
            reach = _PRE_REACH.get(pre.kind)
            if r.size and reach is not None:
                # "no enlarged heart", but not "no effusion, heart is enlarged"
                reach = _INTRINSIC_PRE_REACH if not _CLAUSE_PUNCT.search(low, pre.end, r.start) else -1
            if reach is not None and words(pre.end, r.start) <= reach:
                effects.add(_EFFECT[pre.kind])
    if any(c.kind == "unc_both" for c in same):
        effects.add("unc")
    for c in same:
        if c.start < r.end and r.start < c.end:
            # A cue inside a size phrase ("heart may be enlarged") only ever makes it uncertain.
            if r.size and _EFFECT[c.kind] in ("unc", "ovr"):
                effects.add("unc")
        elif c.start >= r.end:
            reach = _POST_REACH.get(c.kind)
            if reach is None and c.kind != "unc_both":
                break  # a cue that only looks forward starts a new scope
            if c.kind in _ADJACENT_POST and low[r.end : c.start].strip():
                continue  # "edema, normal heart size" says nothing about edema
            if reach is not None and words(r.end, c.start) <= reach:
                effects.add(_EFFECT[c.kind])
    if "ovr" in effects:
        return UNCERTAIN
    if "neg" in effects:
        return NEGATIVE
    if "unc" in effects or r.intrinsic == UNCERTAIN:
        return UNCERTAIN
    return POSITIVE


def _label_spans(text: str) -> list[tuple[int, int]] | None:
    """Character ranges to label: findings + impression sections when the report has them."""
    wanted = set(FINDINGS_HEADERS) | set(IMPRESSION_HEADERS)
    spans = [(s.body_start, s.body_end) for s in section_spans(text) if s.name in wanted]
    return spans or None


def label_report(text: str, *, findings_impression_only: bool = True) -> ReportLabels:
    """Label one report (or any report-like text: a section, a rewrite, PairAug-style text).

    With `findings_impression_only` (the default) a report that has FINDINGS / IMPRESSION /
    CONCLUSION headers is labelled on those sections alone; text without such headers is
    labelled in full. Mention offsets and sentence indices always refer to `text` and to
    `split_sentences(text)`.
    """
    sentences = split_sentences(text)
    spans = _label_spans(text) if findings_impression_only else None
    mentions: list[Mention] = []
    labelled_any = False
    for index, sentence in enumerate(sentences):
        if spans is not None and not any(s <= sentence.start < e for s, e in spans):
            continue
        labelled_any = True
        mentions.extend(_sentence_mentions(sentence, index))
    return ReportLabels(labels=_aggregate(mentions, labelled_any), mentions=tuple(mentions))


def _sentence_mentions(sentence: Sentence, index: int) -> list[Mention]:
    low = _lower(sentence.text)
    raws = _find_mentions(low)
    if not raws:
        return []
    out = []
    for raw, certainty in zip(raws, _certainties(low, raws), strict=True):
        start, end = sentence.start + raw.start, sentence.start + raw.end
        phrase = sentence.text[raw.start : raw.end]
        out.append(Mention(raw.observation, certainty, index, start, end, phrase))
        # CheXpert: a heart failure that is there (or may be) makes cardiomegaly uncertain.
        if raw.observation == "Edema" and certainty != NEGATIVE and _CHF.fullmatch(low[raw.start : raw.end]):
            out.append(Mention("Cardiomegaly", UNCERTAIN, index, start, end, phrase))
    return out


def _aggregate(mentions: Iterable[Mention], labelled_any: bool) -> dict[str, int | None]:
    seen: dict[str, set[Certainty]] = {}
    for m in mentions:
        seen.setdefault(m.observation, set()).add(m.certainty)
    labels: dict[str, int | None] = {}
    for obs in CHEXPERT_OBSERVATIONS:
        certainties = seen.get(obs, set())
        labels[obs] = next((_LABEL_OF[c] for c in (POSITIVE, UNCERTAIN, NEGATIVE) if c in certainties), None)
    finding = any(
        seen.get(obs, set()) & {POSITIVE, UNCERTAIN}
        for obs in (*CHEXPERT_OBSERVATIONS, OTHER_FINDING)
        if obs not in (NO_FINDING, SUPPORT_DEVICES)
    )
    labels[NO_FINDING] = LABEL_POSITIVE if labelled_any and not finding else None
    return labels


def _as_label(value: object) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)  # type: ignore[call-overload]


def changed_observations(before: Mapping[str, int | None], after: Mapping[str, int | None]) -> list[str]:
    """Observations (not No Finding) whose label differs between two label mappings.

    Either mapping may be keyed by observation ("Pleural Effusion") or by manifest column
    ("label_pleural_effusion"); a missing key, None and NaN all mean "not mentioned", and 1.0
    equals 1, so labels read back from pandas compare as expected.
    """

    def get(labels: Mapping[str, int | None], obs: str) -> int | None:
        value = labels[obs] if obs in labels else labels.get(label_column(obs))
        return _as_label(value)

    return [o for o in CHEXPERT_OBSERVATIONS if o != NO_FINDING and get(before, o) != get(after, o)]
