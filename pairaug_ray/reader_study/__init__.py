"""The radiologists' study: PairAug's Visual Turing Test, drawn from a run, served, scored (docs/reader-study.md)."""
