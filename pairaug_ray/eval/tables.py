"""`pairaug metrics` and `pairaug compare`: the evaluation protocol on any model's predictions, and the
comparison table over several evaluation runs."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

from pairaug_ray import storage
from pairaug_ray.errors import UserError
from pairaug_ray.eval.metrics import evaluate, format_interval


class TableInputError(UserError, ValueError):
    """A labels/scores CSV or a metrics.json that cannot be used, with what is wrong."""


def _csv(uri: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(storage.read_text(uri)))
    except FileNotFoundError:
        raise TableInputError(f"{uri}: no such file") from None


def metrics_from_csvs(
    labels_csv: str,
    scores_csv: str,
    id_column: str = "image_id",
    labels: list[str] | None = None,
    n_bootstrap: int = 1000,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Rows matched by `id_column`; labels: every column the two files share (or the given ones).
    Label values 1/0 (-1 and blanks are left out of that label's metrics); scores are probabilities or
    any monotone score."""
    truth, scores = _csv(labels_csv), _csv(scores_csv)
    for name, df, path in (("labels", truth, labels_csv), ("scores", scores, scores_csv)):
        if id_column not in df.columns:
            raise TableInputError(
                f"{path}: no id column {id_column!r} (columns: {', '.join(df.columns[:10])}); pass --id-column"
            )
        dup = df[id_column][df[id_column].duplicated()]
        if len(dup):
            raise TableInputError(f"{path}: id {dup.iloc[0]!r} appears more than once in the {name} file")
    shared = [c for c in truth.columns if c in scores.columns and c != id_column]
    labels = labels or shared
    for lb in labels:
        for df, path in ((truth, labels_csv), (scores, scores_csv)):
            if lb not in df.columns:
                raise TableInputError(f"{path}: no column for label {lb!r}")
    if not labels:
        raise TableInputError(f"{labels_csv} and {scores_csv} share no label columns besides {id_column!r}")
    missing = set(truth[id_column]) - set(scores[id_column])
    if missing:
        raise TableInputError(
            f"{scores_csv}: no scores for {len(missing)} id(s), e.g. {sorted(map(str, missing))[:3]}"
        )
    merged = truth[[id_column, *labels]].merge(
        scores[[id_column, *labels]], on=id_column, suffixes=("", "__score")
    )
    y = merged[labels].apply(pd.to_numeric, errors="coerce").to_numpy(float).copy()
    y[(y != 0) & (y != 1)] = np.nan
    s = merged[[f"{lb}__score" for lb in labels]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = np.argwhere(np.isnan(s))
    if len(bad):
        r, c = bad[0]
        raise TableInputError(
            f"{scores_csv}: id {merged[id_column].iloc[r]!r}, label {labels[c]!r}: score is not a number"
        )
    out = evaluate(y, s, labels, n_bootstrap=n_bootstrap, thresholds=thresholds)
    out["sources"] = {"labels": labels_csv, "scores": scores_csv, "id_column": id_column}
    return out


def format_metrics(m: dict[str, Any]) -> str:
    cell = format_interval

    width = max(len(lb) for lb in [*m["labels"], "macro"])
    lines = [f"{'label':<{width}}  {'AUC (95% CI)':<24} {'ACC (95% CI)':<24} {'F1 (95% CI)':<24} threshold"]
    for lb in m["labels"]:
        v = m["per_label"][lb]
        lines.append(
            f"{lb:<{width}}  {cell(v['auc']):<24} {cell(v['acc']):<24} {cell(v['f1']):<24} {_threshold(v['threshold'])}"
        )
    lines.append(
        f"{'macro':<{width}}  {cell(m['macro']['auc']):<24} {cell(m['macro']['acc']):<24} {cell(m['macro']['f1'])}"
    )
    lines.append(f"{m['n']} images, {m['n_bootstrap']} bootstrap resamples, {m['threshold_rule']} threshold")
    return "\n".join(lines)


def _threshold(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.4f}"


def load_metrics(run: str) -> dict[str, Any]:
    """An evaluate output folder or its metrics.json."""
    uri = run if run.endswith(".json") else storage.join(run, "metrics.json")
    try:
        return json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise TableInputError(f"{uri}: no metrics.json (run `pairaug evaluate` first)") from None


def _run_name(run: str) -> str:
    """runs/pairaug/evaluate/metrics.json -> pairaug; runs/pairaug/evaluate -> pairaug; other/x -> x."""
    parts = [p for p in run.rstrip("/").split("/") if p]
    if parts and parts[-1].endswith(".json"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[-1] == "evaluate":
        parts = parts[:-1]
    return parts[-1] if parts else run


def compare(runs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    """One results dict whose model rows are the runs' rows, named `<name>` (or `<name> / <model>` when a
    run has several), over every dataset any run evaluated (a run without one shows a dash)."""
    if names and len(names) != len(runs):
        raise TableInputError(f"{len(names)} names for {len(runs)} runs")
    merged: dict[str, Any] = {"datasets": {}, "runs": {}}
    for i, run in enumerate(runs):
        m = load_metrics(run)
        name = names[i] if names else _run_name(run)
        if name in merged["runs"]:
            raise TableInputError(
                f"two runs are named {name!r} ({merged['runs'][name]} and {run}); pass --names"
            )
        merged["runs"][name] = run
        for d, ds in m["datasets"].items():
            target = merged["datasets"].setdefault(d, {"info": ds["info"], "models": {}})
            several = len(ds["models"]) > 1
            for model, res in ds["models"].items():
                target["models"][f"{name} / {model}" if several else name] = res
    return merged
