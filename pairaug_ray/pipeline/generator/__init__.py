"""The generator's jobs: `finetune-t2i` trains it (job.py, loop.py); `eval-generator` grades it
(card.py: the report card, its steps in that module's docstring).

The `finetune-t2i` job, the generator InterAug and IntraAug draw with, trained with Ray Train:

    pairs    the real pairs' train split (status ok)
    ingest   Ray Data: decode, resize to the training size in [-1, 1], tokenise   (PreprocessT2I)
    vae      from scratch only: the VAE (L1 reconstruction + KL), then its latent scale
    unet     the UNet (and the text encoder) under the DDPM noise-prediction loss, report text
             dropped 10% of the time, AdamW, gradient clipping, EMA of the UNet's weights
    save     checkpoints every N steps to storage (local or S3): the pipeline with the EMA UNet, the
             training state, and a grid of samples for fixed reports

A rerun with the same `finetune_t2i.name` resumes from the latest checkpoint; a failed worker
group restarts from it (FailureConfig). The maths is models/t2i.py; docs/generator.md the recipe.
"""

from __future__ import annotations

from pairaug_ray.pipeline.generator.card import eval_generator_job, format_eval_generator
from pairaug_ray.pipeline.generator.job import SAMPLE_REPORTS, finetune_t2i_job, format_finetune_t2i

__all__ = [
    "SAMPLE_REPORTS",
    "eval_generator_job",
    "finetune_t2i_job",
    "format_eval_generator",
    "format_finetune_t2i",
]
