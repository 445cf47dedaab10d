"""Evaluation: CheXzero zero-shot classification, bootstrap confidence intervals, linear probing and
the HTML report. The metric code is numpy only; embedding models come from `pairaug_ray.models`."""
