"""The `train` job: a CheXzero-style CLIP on real plus synthetic pairs with Ray Train.

    pairs    real training pairs (+ kept synthetic pairs of the chosen origins, at a chosen ratio)
    ingest   Ray Data: decode, CheXzero preprocessing, AugImg, tokenise   (PreprocessPairs actors)
    train    TorchTrainer: DDP over workers (NCCL on GPU, gloo on CPU); each worker streams its
             shard with iter_torch_batches; symmetric InfoNCE over the global batch (negatives
             all-gathered with gradient)
    save     checkpoints every N steps and at each epoch end to storage_path (local or S3), each a
             transformers CLIP folder (usable as a pair scorer) plus the optimiser state

A rerun with the same `train.name` and storage resumes from the latest checkpoint with the same
step count; `FailureConfig(max_failures)` restarts a failed worker group the same way.
"""

from __future__ import annotations

from pairaug_ray.pipeline.train.data import PAIR_COLUMNS, training_pairs, validation_rows
from pairaug_ray.pipeline.train.job import format_train, train_job

__all__ = ["PAIR_COLUMNS", "format_train", "train_job", "training_pairs", "validation_rows"]
