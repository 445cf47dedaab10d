"""Ray Data stages: each maps batches of pair-manifest rows to new rows, recording per-row errors."""
