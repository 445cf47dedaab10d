"""What the jobs share: where the real pairs are, Ray Train's storage, and how a stage's outcome reads."""

from __future__ import annotations

import json
from typing import Any

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig


def real_pairs_root(cfg: JobConfig) -> str:
    """The real pairs later jobs read: the augment job's validated corpus when it exists (bad rows
    marked), else the corpus as configured."""
    validated = cfg.validated_dir()
    return validated if storage.exists(storage.join(validated, "manifest")) else cfg.corpus_dir()


def status_counts(summary: dict[str, Any]) -> dict[str, int]:
    """Rows per status over every origin of an outcome summary."""
    counts: dict[str, int] = {}
    for c in summary.get("by_origin", {}).values():
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    return counts


def outcome_line(summary: dict[str, Any], noun: str = "rows") -> str:
    """'420 rows: ok 384, skipped 36' for a stage's end line."""
    counts = status_counts(summary)
    order = [schema.STATUS_OK, schema.STATUS_SKIPPED, schema.STATUS_ERROR]
    detail = ", ".join(
        f"{k} {counts[k]}"
        for k in sorted(counts, key=lambda k: (k not in order, order.index(k) if k in order else 0, k))
    )
    return f"{summary.get('rows', 0)} {noun}" + (f": {detail}" if detail else "")


def format_outcomes(summary: dict[str, Any], noun: str = "rewrite") -> str:
    if not summary.get("rows"):
        return "no rows written"
    lines = [f"{summary['rows']} {noun} rows"]
    for origin, c in summary["by_origin"].items():
        lines.append(f"  {origin:<8} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if summary["reasons"]:
        lines.append(
            "  skipped/failed because: " + ", ".join(f"{k} x{v}" for k, v in summary["reasons"].items())
        )
    lines.append(
        f"  model calls {summary['model_calls']} (per row: {json.dumps(summary['attempts_histogram'])}), "
        f"tokens in/out {summary['tokens_in']}/{summary['tokens_out']}, mean latency {summary['mean_latency_s']} s"
    )
    return "\n".join(lines)


def train_storage(uri: str) -> tuple[str, Any]:
    """Ray Train's storage_path and filesystem for `uri`: S3 through s3fs (which honours
    AWS_ENDPOINT_URL, as the rest of the pipeline), or a local folder and None."""
    if storage.is_s3(uri):
        import pyarrow.fs
        import s3fs

        return uri.removeprefix("s3://"), pyarrow.fs.PyFileSystem(
            pyarrow.fs.FSSpecHandler(s3fs.S3FileSystem())
        )
    return storage.absolute(uri), None
