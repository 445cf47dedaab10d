"""The observations the rewriter changes: the 13 CheXpert findings (No Finding follows from
them), the short names the rules use for each, and the groups they refer to.
"""

from __future__ import annotations

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.labeler import NO_FINDING

OBSERVATIONS = tuple(o for o in CHEXPERT_OBSERVATIONS if o != NO_FINDING)
PE, PTX, CM, EC = "Pleural Effusion", "Pneumothorax", "Cardiomegaly", "Enlarged Cardiomediastinum"
LO, LL, ED, CO = "Lung Opacity", "Lung Lesion", "Edema", "Consolidation"
PN, AT, PO, FX, SD = "Pneumonia", "Atelectasis", "Pleural Other", "Fracture", "Support Devices"
# New findings when nothing the report mentions can flip: the CheXpert competition five + PTX.
FALLBACK_NEW = (PE, CM, CO, ED, AT, PTX)
PARENCHYMAL = frozenset((LO, LL, ED, CO, PN, AT))  # contradict "the lungs are clear"
