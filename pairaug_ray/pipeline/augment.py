"""The `augment` job: a real corpus in, a pruned synthetic pair set out, resumably.

    prepare   corpus (phantom / MIMIC / a manifest) and models
    validate  every real row checked on its own          -> <out>/validated
    rewrite   inter + intra (+ paraphrase) reports        -> <out>/rewrites
    generate  InterAug images, IntraAug edits             -> <out>/generated
    score     S_a for InterAug, S1-S3 for IntraAug        -> <out>/scored
    prune     tau and the global-mean rule                -> <out>/synthetic (every pair, `kept` flag)
    report    summary.json, score histograms, example grid

Each stage streams over its input and appends finished rows to its own output; a rerun after a
crash or kill skips what is done, and each output ends with every pair exactly once. After each
stage an error budget is checked: the job stops with a clear message if more than
`augment.max_error_fraction` of the rows a stage worked on ended in an error.

`prune_job` alone re-applies other thresholds to the stored scores (`pairaug prune`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.manifest import read_manifest, write_info, write_manifest
from pairaug_ray.pipeline.common import check_output_identity, outcome_summary
from pairaug_ray.resume import finalize, scan_output
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.score import INTRA_SCORES, ScorePairs, prune_batch
from pairaug_ray.stages.validate import duplicates_to_drop, id_fingerprints, validate_pairs

log = logging.getLogger(__name__)


class ErrorBudgetExceeded(RuntimeError):
    pass


def _table(ds: ray.data.Dataset, columns: list[str]) -> pa.Table:
    present = [c for c in columns if c in ds.columns()]
    refs = ds.select_columns(present).to_arrow_refs()
    return (
        pa.concat_tables(ray.get(refs), promote_options="default")
        if refs
        else pa.table({c: [] for c in present})
    )


# --- validate ---------------------------------------------------------------------------------------------


def validate_job(cfg: JobConfig, corpus_root: str) -> dict[str, Any]:
    """Check every real row; write the conformed, validated corpus (bad rows as errors)."""
    out = storage.absolute(cfg.validated_dir())
    a = cfg.augment
    params = {
        "input": storage.absolute(corpus_root),
        "max_report_chars": a.max_report_chars,
        "check_images": a.check_images,
    }
    from pairaug_ray.manifest import read_info

    if read_info(out).get("validate") == params:
        log.info("validated corpus at %s is complete; reusing it", out)
        return outcome_summary(out)
    raw = read_manifest(corpus_root)
    keep_ids = duplicates_to_drop(
        _table(raw.map_batches(id_fingerprints, batch_format="pyarrow"), ["pair_id", "fingerprint"])
    )
    if keep_ids:
        log.warning(
            "%d pair_id(s) are used by more than one row; the extra rows become errors", len(keep_ids)
        )
    validated = raw.map_batches(
        validate_pairs,
        fn_kwargs={
            "max_report_chars": a.max_report_chars,
            "check_images": a.check_images,
            "keep_ids": keep_ids,
        },
        batch_format="pyarrow",
        batch_size=256,
    )
    write_manifest(validated, out, mode="overwrite", info={"validate": params})
    finalize(out)  # identical duplicate rows collapse to one
    return outcome_summary(out)


# --- score ------------------------------------------------------------------------------------------------


def scorer_ref(cfg: JobConfig) -> str:
    from pairaug_ray.pipeline.prepare import stage_model_ref

    return stage_model_ref(cfg, "scorer", cfg.score.model, "score.model")


def score_job(
    cfg: JobConfig, *, input_root: str | None = None, output_root: str | None = None
) -> dict[str, Any]:
    """Scores for every generated pair, resumably (rows already scored are skipped)."""
    init_ray(cfg.ray)
    s = cfg.score
    src = storage.absolute(input_root or cfg.generate_dir())
    out = storage.absolute(output_root or cfg.score_dir())
    model = scorer_ref(cfg)
    identity = {"model": model, "kind": s.kind, "mode": s.mode, "original": s.original, "input": src}
    check_output_identity(out, "score", identity)
    write_info(out, {"score": identity, "complete": False})
    done = scan_output(out, retry_errors=True).done
    todo = read_manifest(src)
    if done:
        todo = todo.filter(expr=~col(schema.PAIR_ID).is_in(sorted(done)))
    scored = todo.repartition(target_num_rows_per_block=s.rows_per_file).map_batches(
        ScorePairs,
        fn_constructor_kwargs={"cfg": s, "model_ref": model, "cache_dir": cfg.models.cache_dir},
        compute=ActorPoolStrategy(min_size=s.min_actors, max_size=s.max_actors),
        num_gpus=s.num_gpus or None,
        num_cpus=s.num_cpus,
        batch_size=s.batch_size,
        batch_format="pyarrow",
    )
    write_manifest(scored, out, mode="append", info={"score": identity})
    finalize(out)
    summary = outcome_summary(out)
    write_info(out, {"score": identity, "complete": True, "outcomes": summary})
    return summary


# --- prune ------------------------------------------------------------------------------------------------


def intra_means(scored: ray.data.Dataset) -> dict[str, float | None]:
    """The means of S1, S2, S3 over all IntraAug pairs of the run that were scored (global, not per batch)."""
    # Files written from batches without IntraAug rows lack the score columns: conform them first.
    scored = scored.map_batches(schema.conform, fn_kwargs={"all_optional": True}, batch_format="pyarrow")
    intra = scored.filter(
        expr=(col(schema.ORIGIN) == schema.ORIGIN_INTRA)
        & (col(schema.STATUS) == schema.STATUS_OK)
        & col(schema.SCORE_S1).is_not_null()
    )
    stats = intra.mean(list(INTRA_SCORES))  # one pass; None when there are no IntraAug rows
    if not stats:
        return dict.fromkeys(INTRA_SCORES)
    return {k: None if stats[f"mean({k})"] is None else float(stats[f"mean({k})"]) for k in INTRA_SCORES}


def prune_job(
    cfg: JobConfig,
    *,
    tau: float | None = None,
    epsilon: float | None = None,
    input_root: str | None = None,
    output_root: str | None = None,
) -> dict[str, Any]:
    """Apply PairAug's rules to the stored scores: two passes (global means, then the filter).
    Writes every pair with `kept` and the thresholds used; cheap to redo with other thresholds."""
    init_ray(cfg.ray)
    tau = cfg.prune.tau if tau is None else tau
    epsilon = cfg.prune.epsilon if epsilon is None else epsilon
    src = storage.absolute(input_root or cfg.score_dir())
    out = storage.absolute(output_root or cfg.synthetic_dir())
    scored = read_manifest(src)
    means = intra_means(scored)
    pairs = scored.map_batches(schema.conform, fn_kwargs={"all_optional": True}, batch_format="pyarrow")
    rewrites = cfg.rewrite_dir()
    if "paraphrase" in cfg.rewrite.modes and storage.list_files(
        storage.join(rewrites, "manifest"), ".parquet"
    ):
        # AugText pairs (real image, paraphrased report) join the synthetic set unpruned, as in PairAug.
        augtext = read_manifest(rewrites).filter(expr=col(schema.ORIGIN) == schema.ORIGIN_AUGTEXT)
        pairs = pairs.union(
            augtext.map_batches(schema.conform, fn_kwargs={"all_optional": True}, batch_format="pyarrow")
        )
    pruned = pairs.map_batches(
        prune_batch, fn_kwargs={"tau": tau, "epsilon": epsilon, "means": means}, batch_format="pyarrow"
    )
    write_manifest(
        pruned,
        out,
        mode="overwrite",
        info={"prune": {"tau": tau, "epsilon": epsilon, "means": means, "input": src}},
    )
    return prune_summary(out)


def prune_summary(root: str) -> dict[str, Any]:
    table = _table(
        read_manifest(root, resolve_images=False), [schema.ORIGIN, schema.STATUS, schema.KEPT, schema.PRUNING]
    )
    counts: dict[str, dict[str, int]] = {}
    for o, st, k in zip(table.column(schema.ORIGIN).to_pylist(), table.column(schema.STATUS).to_pylist(),
                        table.column(schema.KEPT).to_pylist(), strict=True):  # fmt: skip
        c = counts.setdefault(o, {"kept": 0, "pruned": 0, "skipped or errored": 0})
        c["kept" if k else ("pruned" if st == schema.STATUS_OK else "skipped or errored")] += 1
    pruning = json.loads(table.column(schema.PRUNING)[0].as_py()) if table.num_rows else {}
    return {"rows": table.num_rows, "by_origin": counts, "pruning": pruning}


# --- the whole job ----------------------------------------------------------------------------------------


def check_budget(stage: str, summary: dict[str, Any], budget: float, where: str) -> dict[str, Any]:
    """Counts of a stage's outcome; raises when the errors exceed the budget."""
    counts: dict[str, int] = {}
    for c in summary.get("by_origin", {}).values():
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
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
    from pairaug_ray.pipeline.generate import generate_job
    from pairaug_ray.pipeline.prepare import prepare
    from pairaug_ray.pipeline.rewrite import rewrite_job

    started = time.time()
    budget = cfg.augment.max_error_fraction
    stages: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kw):
        t0 = time.time()
        result = fn(*args, **kw)
        timings[name] = round(time.time() - t0, 2)
        return result

    prepared = timed("prepare", prepare, cfg)
    corpus = prepared["corpus"]["root"]
    stages["validate"] = check_budget(
        "validate", timed("validate", validate_job, cfg, corpus), budget, cfg.validated_dir()
    )
    stages["rewrite"] = check_budget(
        "rewrite",
        timed("rewrite", rewrite_job, cfg, input_root=cfg.validated_dir()),
        budget,
        cfg.rewrite_dir(),
    )
    stages["generate"] = check_budget(
        "generate", timed("generate", generate_job, cfg), budget, cfg.generate_dir()
    )
    stages["score"] = check_budget("score", timed("score", score_job, cfg), budget, cfg.score_dir())
    pruned = timed("prune", prune_job, cfg)
    stages["prune"] = pruned
    report = timed("report", write_report, cfg)
    summary = {
        "run": cfg.run.name,
        "corpus": prepared["corpus"],
        "models": prepared["models"],
        "stages": stages,
        "seconds": {**timings, "total": round(time.time() - started, 2)},
        "outputs": {
            "validated": cfg.validated_dir(),
            "rewrites": cfg.rewrite_dir(),
            "generated": cfg.generate_dir(),
            "scored": cfg.score_dir(),
            "synthetic": cfg.synthetic_dir(),
            **report,
        },
    }
    storage.write_text(
        storage.join(cfg.run.output_dir, "summary.json"), json.dumps(summary, indent=2, default=str)
    )
    summary["outputs"]["summary"] = storage.join(cfg.run.output_dir, "summary.json")
    return summary


def write_report(cfg: JobConfig) -> dict[str, str]:
    """Score histograms with the thresholds marked, and a grid of example pairs."""
    from pairaug_ray.viz import example_grid, score_histograms

    out = {}
    synthetic = read_manifest(cfg.synthetic_dir())
    table = _table(synthetic, [*schema.SCORE_COLUMNS, schema.PRUNING])
    pruning = json.loads(table.column(schema.PRUNING)[0].as_py()) if table.num_rows else {}
    thresholds = {schema.SCORE_A: pruning.get("tau"), **(pruning.get("thresholds") or {})}
    scores = {c: table.column(c).to_pylist() for c in schema.SCORE_COLUMNS if c in table.column_names}
    out["score_histograms"] = score_histograms(
        scores, thresholds, storage.join(cfg.run.output_dir, "scores.png")
    )
    if cfg.augment.examples:
        examples = pick_examples(cfg, synthetic, cfg.augment.examples)
        if examples:
            out["examples"] = example_grid(examples, storage.join(cfg.run.output_dir, "examples.png"))
    return out


def pick_examples(cfg: JobConfig, synthetic: ray.data.Dataset, n: int) -> list[dict[str, Any]]:
    """Real pairs with both an InterAug and an IntraAug pair, kept ones first."""
    rows = synthetic.filter(expr=col(schema.ORIGIN).is_in([schema.ORIGIN_INTER, schema.ORIGIN_INTRA])).take(
        2000
    )
    by_parent: dict[str, dict[str, dict]] = {}
    for r in rows:
        slot = by_parent.setdefault(r[schema.PARENT_ID], {})
        if r[schema.ORIGIN] not in slot or (
            r.get(schema.KEPT) and not slot[r[schema.ORIGIN]].get(schema.KEPT)
        ):
            slot[r[schema.ORIGIN]] = r
    ranked = sorted(
        by_parent.items(),
        key=lambda kv: (-len(kv[1]), -sum(bool(v.get(schema.KEPT)) for v in kv[1].values()), kv[0]),
    )
    chosen = ranked[:n]
    if not chosen:
        return []
    parents = {pid for pid, _ in chosen}
    real = {
        r[schema.PAIR_ID]: r
        for r in read_manifest(cfg.validated_dir())
        .filter(expr=col(schema.PAIR_ID).is_in(sorted(parents)))
        .take_all()
    }
    return [
        {"original": real.get(pid), "inter": slot.get("inter"), "intra": slot.get("intra")}
        for pid, slot in chosen
    ]


# --- what the user reads ----------------------------------------------------------------------------------


def format_prune(summary: dict[str, Any]) -> str:
    p = summary.get("pruning", {})
    lines = [f"{summary.get('rows', 0)} synthetic pairs (tau {p.get('tau')}, epsilon {p.get('epsilon')})"]
    means = p.get("means") or {}
    if any(v is not None for v in means.values()):
        lines.append(
            "  IntraAug means: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items() if v is not None)
        )
    for origin, c in sorted(summary.get("by_origin", {}).items()):
        lines.append(f"  {origin:<9} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return "\n".join(lines)


def format_augment(summary: dict[str, Any]) -> str:
    lines = [f"augment job '{summary['run']}' finished in {summary['seconds']['total']:.0f} s"]
    for stage in ("validate", "rewrite", "generate", "score"):
        c = summary["stages"][stage]
        detail = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("rows", "error_fraction"))
        lines.append(
            f"  {stage:<9} {c['rows']:>6} rows: {detail}  ({summary['seconds'].get(stage, 0):.0f} s)"
        )
    lines.append(format_prune(summary["stages"]["prune"]).replace("\n", "\n  ").join(["  prune     ", ""]))
    lines.append("outputs:")
    for name, path in summary["outputs"].items():
        lines.append(f"  {name:<17} {path}")
    return "\n".join(lines)
