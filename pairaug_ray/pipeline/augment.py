"""The `augment` job: a real corpus in, a pruned synthetic pair set out, resumably.

    prepare   corpus (phantom / MIMIC / a manifest / reports) and models pipeline/prepare.py
    validate  every real row checked on its own  -> <out>/validated      pipeline/validate.py
              (reports without images            -> <out>/validated_reports)
    rewrite   inter + intra (+ paraphrase) reports -> <out>/rewrites      pipeline/rewrite.py
    generate  InterAug images, IntraAug edits     -> <out>/generated      pipeline/generate.py
    score     S_a for InterAug, S1-S3 for IntraAug -> <out>/scored        pipeline/score.py
    prune     tau and the global-mean rule        -> <out>/synthetic      pipeline/prune.py
    figures   score histograms, example grid                              pipeline/figures.py

Each stage streams over its input and appends finished rows to its own output; a rerun after a
crash or kill skips what is done, and each output ends with every pair exactly once. After each
stage an error budget is checked: the job stops with a clear message if more than
`augment.max_error_fraction` of the rows a stage worked on ended in an error.
"""

from __future__ import annotations

import time
from typing import Any

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.errors import UserError
from pairaug_ray.pipeline.common import status_counts
from pairaug_ray.pipeline.prune import format_prune


class ErrorBudgetExceeded(UserError, RuntimeError):
    """A stage ended in an error on more rows than augment.max_error_fraction allows."""


def check_budget(stage: str, summary: dict[str, Any], budget: float, where: str) -> dict[str, Any]:
    """Counts of a stage's outcome; raises when the errors exceed the budget."""
    counts = status_counts(summary)
    worked = counts.get(schema.STATUS_OK, 0) + counts.get(schema.STATUS_ERROR, 0)
    errors = counts.get(schema.STATUS_ERROR, 0)
    fraction = errors / worked if worked else 0.0
    if fraction > budget:
        reasons = ", ".join(f"{k} x{v}" for k, v in list(summary.get("reasons", {}).items())[:5])
        raise ErrorBudgetExceeded(
            f"{stage}: {errors} of {worked} rows ended in an error ({fraction:.0%} > augment.max_error_fraction "
            f"{budget:.0%}); most common: {reasons}. Finished work is kept in {where}: fix the cause and rerun to resume."
        )
    return {"rows": summary.get("rows", 0), **counts, "error_fraction": round(fraction, 4)}


def augment_job(cfg: JobConfig) -> dict[str, Any]:
    from pairaug_ray.pipeline.figures import write_figures
    from pairaug_ray.pipeline.generate import generate_job
    from pairaug_ray.pipeline.prepare import prepare
    from pairaug_ray.pipeline.prune import prune_job
    from pairaug_ray.pipeline.rewrite import check_endpoint, rewrite_job
    from pairaug_ray.pipeline.score import score_job
    from pairaug_ray.pipeline.trained_models import with_trained_models
    from pairaug_ray.pipeline.validate import validate_job, validate_reports_job

    check_endpoint(cfg)  # before any work: reports go only where the config allows
    started = time.time()
    budget = cfg.augment.max_error_fraction
    stages: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kw):
        t0 = time.time()
        result = fn(*args, **kw)
        timings[name] = round(time.time() - t0, 2)
        return result

    # The generator and the scorer, when the config asks the job to train them (reused on reruns).
    cfg, trained = timed("models", with_trained_models, cfg)
    prepared = timed("prepare", prepare, cfg)
    corpus = (prepared["corpus"] or {}).get("root")
    reports = (prepared.get("reports") or {}).get("root")
    # What the rewrite stage reads: the validated pairs and the validated reports without images.
    rewrite_inputs = [
        d for d, present in ((cfg.validated_dir(), corpus), (cfg.validated_reports_dir(), reports)) if present
    ]
    steps = []
    if corpus:
        steps.append(("validate", lambda: validate_job(cfg, corpus), cfg.validated_dir()))
    if reports:
        steps.append(
            (
                "validate_reports",
                lambda: validate_reports_job(cfg, reports, corpus),
                cfg.validated_reports_dir(),
            )
        )
    steps += [
        ("rewrite", lambda: rewrite_job(cfg, input_root=rewrite_inputs), cfg.rewrite_dir()),
        ("generate", lambda: generate_job(cfg), cfg.generate_dir()),
        ("score", lambda: score_job(cfg), cfg.score_dir()),
    ]
    for name, job, where in steps:
        stages[name] = check_budget(name, timed(name, job), budget, where)
    stages["prune"] = timed("prune", prune_job, cfg)
    figures = timed("report", write_figures, cfg)
    summary = {
        "run": cfg.run.name,
        "corpus": prepared["corpus"],
        **({"reports": prepared["reports"]} if reports else {}),
        "models": prepared["models"],
        "trained_models": {
            role: {"path": t.get("pipeline") or t.get("model"), "step": (t.get("metrics") or {}).get("step")}
            for role, t in trained.items()
        },
        "stages": stages,
        "seconds": {**timings, "total": round(time.time() - started, 2)},
        "outputs": {
            **({"validated": cfg.validated_dir()} if corpus else {}),
            **({"validated_reports": cfg.validated_reports_dir()} if reports else {}),
            "rewrites": cfg.rewrite_dir(),
            "generated": cfg.generate_dir(),
            "scored": cfg.score_dir(),
            "synthetic": cfg.synthetic_dir(),
            **figures,
        },
    }
    storage.write_json(storage.join(cfg.run.output_dir, "summary.json"), summary)
    summary["outputs"]["summary"] = storage.join(cfg.run.output_dir, "summary.json")
    return summary


def format_augment(summary: dict[str, Any]) -> str:
    lines = [f"augment job '{summary['run']}' finished in {summary['seconds']['total']:.0f} s"]
    for role, t in summary.get("trained_models", {}).items():
        lines.append(f"  {role:<9} trained here, step {t['step']}: {t['path']}")
    for stage in ("validate", "validate_reports", "rewrite", "generate", "score"):
        if stage not in summary["stages"]:
            continue
        c = summary["stages"][stage]
        detail = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("rows", "error_fraction"))
        label, noun = ("validate", "reports") if stage == "validate_reports" else (stage, "rows")
        lines.append(
            f"  {label:<9} {c['rows']:>6} {noun}: {detail}  ({summary['seconds'].get(stage, 0):.0f} s)"
        )
    lines.append(format_prune(summary["stages"]["prune"]).replace("\n", "\n  ").join(["  prune     ", ""]))
    lines.append("outputs:")
    for name, path in summary["outputs"].items():
        lines.append(f"  {name:<17} {path}")
    return "\n".join(lines)
