"""What the stage jobs share: output identity checks and outcome counts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, JobConfig
from pairaug_ray.manifest import read_info, read_manifest


def real_pairs_root(cfg: JobConfig) -> str:
    """The real pairs later jobs read: the augment job's validated corpus when it exists (bad rows
    marked), else the corpus as configured."""
    validated = cfg.validated_dir()
    return validated if storage.exists(storage.join(validated, "manifest")) else cfg.corpus_dir()


def check_output_identity(out: str, stage: str, identity: dict[str, Any]) -> None:
    """Refuse to add rows made with other settings to an existing stage output."""
    recorded = read_info(out).get(stage)
    if recorded is not None and recorded != identity:
        diff = sorted(k for k in identity if recorded.get(k) != identity[k])
        raise ConfigError(
            f"{out} holds {stage} output made with other settings ({', '.join(diff)} differ); "
            f"set {stage}.output to a new location, or delete the old output to redo it"
        )


def outcome_summary(out: str) -> dict[str, Any]:
    """Counts per origin and status, error reasons, model calls, tokens and latency of a stage output."""
    ds = read_manifest(
        out, columns=[schema.ORIGIN, schema.STATUS, schema.ERROR, schema.PROVENANCE], resolve_images=False
    )
    refs = ds.to_arrow_refs()
    table = pa.concat_tables(ray.get(refs)) if refs else None
    if table is None or table.num_rows == 0:
        return {"rows": 0}
    origins = table.column(schema.ORIGIN).to_pylist()
    statuses = table.column(schema.STATUS).to_pylist()
    counts: dict[str, Counter] = {}
    for o, s in zip(origins, statuses, strict=True):
        counts.setdefault(o, Counter())[s] += 1
    reasons = Counter(
        _category(e)
        for e, s in zip(table.column(schema.ERROR).to_pylist(), statuses, strict=True)
        if s != schema.STATUS_OK and e
    )
    prov = table.column(schema.PROVENANCE)
    attempts = [a for a in pc.struct_field(prov, "attempts").to_pylist() if a is not None]
    latency = [x for x in pc.struct_field(prov, "latency_s").to_pylist() if x is not None]
    return {
        "rows": table.num_rows,
        "by_origin": {o: dict(c) for o, c in sorted(counts.items())},
        "reasons": dict(reasons.most_common()),
        "model_calls": int(sum(attempts)),
        "attempts_histogram": dict(sorted(Counter(attempts).items())),
        "tokens_in": int(pc.sum(pc.struct_field(prov, "tokens_in")).as_py() or 0),
        "tokens_out": int(pc.sum(pc.struct_field(prov, "tokens_out")).as_py() or 0),
        "mean_latency_s": round(sum(latency) / len(latency), 4) if latency else None,
    }


def _category(error: str) -> str:
    """'HTTP 500: internal error (after 7 attempts)' -> 'HTTP 500'; 'chatter: ...' -> 'chatter'."""
    head = error.split(":", 1)[0].split("(", 1)[0].strip()
    return head[:60]


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
