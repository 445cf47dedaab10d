"""pairaug-ray: PairAug and MedCutMix for radiology vision-language pretraining on Ray."""

__version__ = "0.1.0"
