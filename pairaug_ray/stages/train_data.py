"""Training batches: image decoding in the Ray Data pipeline, and MedCutMix when batches are made.

Decoding, CheXzero preprocessing, AugImg and tokenisation run in Ray Data (`PreprocessPairs`, an
actor per CPU share), so the training workers only receive ready tensors through
`iter_torch_batches`; `MedCutMixCollate` mixes a batch as the worker takes it. What text a pair
trains on is text/train_text.py; the AugImg transforms are models/augimg.py.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from pairaug_ray import images, schema
from pairaug_ray.config import MedCutMixConfig, TrainConfig
from pairaug_ray.models.augimg import augment_image
from pairaug_ray.models.tokenizer import load_tokenizer
from pairaug_ray.text.train_text import training_text

log = logging.getLogger(__name__)

NUMERIC_COLUMNS = ("pixel_values", "input_ids", "attention_mask", schema.ORIGIN)
ORIGIN_CODES = {
    schema.ORIGIN_REAL: 0,
    schema.ORIGIN_INTER: 1,
    schema.ORIGIN_INTRA: 2,
    schema.ORIGIN_AUGTEXT: 3,
    schema.ORIGIN_AS_WRITTEN: 4,
}


class PreprocessPairs:
    """Ray Data actor: pair rows -> pixel_values, input_ids, attention_mask (and origin, for metrics)."""

    def __init__(
        self,
        cfg: TrainConfig,
        size: int,
        tokenizer_source: str | None,
        seed: int,
        cache_dir: str | None = None,
    ):
        self.cfg, self.size = cfg, size
        self.tokenizer = load_tokenizer(tokenizer_source, cache_dir)
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        from pairaug_ray.models.clip import chexzero_pixels, tokenize

        pixels, texts, origins = [], [], []
        for row in batch.to_pylist():
            try:
                x = chexzero_pixels(images.read_image(row[schema.IMAGE_URI]), self.size, self.cfg.pad_size)
            except images.ImageReadError as e:  # validated corpora have none; never stop training for one
                log.warning("training skips pair %s: %s", row.get(schema.PAIR_ID), e)
                continue
            if self.cfg.augment_image.enabled:
                x = augment_image(torch.from_numpy(x), self.cfg.augment_image, self.gen).numpy()
            pixels.append(x)
            texts.append(training_text(row, self.cfg.text, self.cfg.text_form))
            origins.append(ORIGIN_CODES.get(row.get(schema.ORIGIN) or schema.ORIGIN_REAL, 0))
        ids, mask = tokenize(self.tokenizer, texts) if texts else (np.zeros((0, 77), np.int64),) * 2
        out = {
            "pixel_values": np.stack(pixels)
            if pixels
            else np.zeros((0, 3, self.size, self.size), np.float32),
            "input_ids": ids,
            "attention_mask": mask,
            schema.ORIGIN: np.asarray(origins, np.int64),
        }
        if self.cfg.medcutmix.enabled:
            # The labeler runs here, once per report, so that mixing a batch in the loop is string work.
            from pairaug_ray.text.cutmix import analyse

            out["text"] = np.asarray(texts, dtype=object)
            out["text_analysis"] = np.asarray([analyse(t).to_json() for t in texts], dtype=object)
        return out


# --- MedCutMix batches --------------------------------------------------------------------------------------


class MedCutMixCollate(NumpyBatchCollateFn):
    """Batches for `iter_torch_batches` with MedCutMix: with probability p a batch is mixed: every
    row takes a diagnostic sentence from a partner row (sentence CutMix on the cached analyses), and
    the batch carries what the model needs to mix the partner's patches in (`mix`).

    The per-batch coin uses the same seed on every worker, so a global batch is mixed or not as a
    whole; partners and lambda use a per-worker seed.
    """

    def __init__(self, cfg: MedCutMixConfig, tokenizer, seed: int, rank: int):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.coin = random.Random(seed)
        self.rng = random.Random(seed * 1_000_003 + rank)
        self.gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from pairaug_ray.models.clip import tokenize
        from pairaug_ray.models.medcutmix import sample_lam
        from pairaug_ray.text.cutmix import ReportAnalysis, plan_batch_mix

        out: dict[str, Any] = {k: torch.as_tensor(batch[k]) for k in NUMERIC_COLUMNS}
        out["mix"] = None
        if self.coin.random() >= self.cfg.p:
            return out
        texts = [str(t) for t in batch["text"]]
        plan = plan_batch_mix(
            texts,
            [ReportAnalysis.from_json(a) for a in batch["text_analysis"]],
            self.rng,
            self.cfg.replace_contradiction,
        )
        mixes = list(plan.mixes)
        mixed = [m.text if m else t for m, t in zip(mixes, texts, strict=True)]
        ids, mask = tokenize(self.tokenizer, mixed)
        # An appended sentence that the 77-token context cuts off would leave the image mixed and the
        # text not: such rows stay unmixed.
        cut = [i for i, m in enumerate(mixes) if m and m.replaced is None and mask[i].sum() == mask.shape[1]]
        if cut:
            for i in cut:
                mixes[i], mixed[i] = None, texts[i]
            ids, mask = tokenize(self.tokenizer, mixed)
        sids, smask = tokenize(self.tokenizer, [m.sentence if m else " " for m in mixes])
        out["input_ids"], out["attention_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
        n = len(texts)
        out["mix"] = {
            "partner": torch.tensor(plan.partner),
            "active": torch.tensor([m is not None for m in mixes]),
            "lam": sample_lam(n, self.cfg.lam, self.cfg.lam_distribution, self.cfg.alpha, self.gen),
            "sentence_ids": torch.from_numpy(sids),
            "sentence_mask": torch.from_numpy(smask),
            "layer": self.cfg.layer,
            # Kept for inspection and tests (not moved to the device):
            "texts": mixed,
            "sentences": [m.sentence if m else None for m in mixes],
            "findings": [m.finding if m else None for m in mixes],
        }
        return out
