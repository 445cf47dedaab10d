"""The labeler's vocabulary: mention phrases, look-alike exclusions and certainty cues.

Data only (lower-case regex fragments and small tables), kept apart from the engine in
`labeler.py` so that the rules can be read, reviewed and extended in one place. Phrases were
written for this project in the spirit of the CheXpert/NegBio lists and follow their conventions
(see the labeler's module docstring); each observation's list is compiled into one alternation,
longest alternative first.
"""

from __future__ import annotations

# Abnormalities outside the 14 that still make a study "not normal" (CheXpert's No Finding list).
OTHER_FINDING = "Other Finding"

# --- mention phrases ---------------------------------------------------------------------------------
# Lower-case regex fragments. Each observation's list becomes one alternation, longest first.
CP_ANGLE = r"(?:costophrenic|cp|costodiaphragmatic) (?:angles?|sulcus|sulci|recess(?:es)?)"
PLAIN: dict[str, list[str]] = {
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
        rf"blunt(?:ing|ed) (?:of )?(?:the )?(?:\w+ ){{0,3}}{CP_ANGLE}",
        rf"{CP_ANGLE} (?:\w+ ){{0,2}}blunt(?:ing|ed)",
        rf"{CP_ANGLE} (?:is |are |was |were |remains? |appears? )?(?:\w+ )?blunt(?:ed|ing)",
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
UNCERTAIN_PHRASES: dict[str, list[str]] = {
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
EXCLUDE: dict[str, list[str]] = {
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


def size_rule(subject: str) -> str:
    """`subject ... qualifier` or `qualifier ... subject`, the qualifier captured as neg/unc/pos."""
    q_after = rf"(?:(?P<unc>{_Q_UNC})|(?P<neg>{_Q_NEG})|(?P<pos>{_Q_POS}))"
    q_before = rf"(?:(?P<unc2>{_Q_UNC})|(?P<neg2>{_Q_NEG})|(?P<pos2>{_Q_POS}))"
    return (
        rf"\b(?:(?:{subject})(?:[\s-]+(?:{_FILLER})){{0,6}}?[\s-]+{q_after}"
        rf"|{q_before}(?:{_SEP}(?:{_PRE_FILLER})){{0,3}}?{_SEP}(?:{subject}))\b"
    )


SIZE_SUBJECTS = {
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
}
# Costophrenic angles as a size/contour phrase of Pleural Effusion: only ever "clear/sharp" (no
# effusion) in this form; blunting is in PLAIN.
CP_CLEAR = (
    rf"\b(?:{CP_ANGLE})(?:{_SEP}(?:is|are|remain|remains|appear|appears|now|again|well|both))"
    r"{0,3}?" + rf"{_SEP}(?P<neg>clear|sharp(?:ly defined)?|preserved|well[- ]defined|normal|free)\b"
    rf"|\b(?P<neg2>clear|sharp|preserved|normal){_SEP}(?:{CP_ANGLE})\b"
)


# --- cues ---------------------------------------------------------------------------------------------
# One regex, one named group per cue kind; group order decides ties at the same position, so the
# pseudo and override cues come first ("no change" is not "no", "cannot exclude" is not "not").
_DEGREE = r"(?:entirely |completely |definitely |definitively |totally |fully |confidently |)"
CUES: dict[str, list[str]] = {
    # Look like cues, are none; matched only so that their words are not read as cues.
    "ignore": [r"not only", r"gram[- ]negative", r"age[- ]indeterminate"],
    # End the scope of an earlier cue without negating anything ("no change in the effusion").
    "pseudo": [
        r"no (?:significant |substantial |interval |definite |appreciable |major |marked |gross |)"
        r"(?:change|changes|increase|decrease|worsening|improvement|progression|difference)",
        r"not (?:significantly |substantially |)changed",
        r"without (?:significant |interval |)(?:change|increase|worsening)",
        r"no longer (?:enlarged|widened)",
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
        r"possibility (?:of|for)",
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
PRE_REACH = {
    "pseudo": 15,
    "ovr_pre": 12,
    "neg_pre": 15,
    "neg_pre_near": 2,
    "neg_bare": 2,
    "unc_pre": 12,
    "unc_bare": 12,
}
POST_REACH = {"ovr_post": 6, "neg_post": 6, "neg_bare": 6, "unc_post": 6, "neg_post_near": 0, "unc_bare": 0}
# Post cues that must follow the mention directly, with no punctuation between ("effusion suspected",
# but not "small effusion, possible pneumonia").
ADJACENT_POST = frozenset({"neg_post_near", "unc_bare"})
INHERIT_REACH = 15  # from the cue an "inherit" cue defers to, to the mention
EFFECT = {
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
INTRINSIC_PRE_REACH = 2  # a negation this close to a size phrase, with no comma between, applies
