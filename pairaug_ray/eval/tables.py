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
from pairaug_ray.eval.metrics import MIN_BOOTSTRAP, evaluate, format_interval


class TableInputError(UserError, ValueError):
    """A labels/scores CSV or a metrics.json that cannot be used, with what is wrong."""


def _csv(uri: str, id_column: str | None = None) -> pd.DataFrame:
    """The CSV at `uri`, ids as text (so that "1" and "01" stay what the file says), or an error
    naming the file and what is wrong with it."""
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise TableInputError(f"{uri}: no such file") from None
    except UnicodeDecodeError as e:
        raise TableInputError(
            f"{uri}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    try:
        return pd.read_csv(io.StringIO(text), dtype={id_column: str} if id_column else None)
    except pd.errors.EmptyDataError:
        raise TableInputError(
            f"{uri}: the file is empty (expected a header row and one row per image)"
        ) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise TableInputError(f"{uri}: not a readable CSV ({' '.join(str(e).split())[:200]})") from None


def metrics_from_csvs(
    labels_csv: str,
    scores_csv: str,
    id_column: str = "image_id",
    labels: list[str] | None = None,
    n_bootstrap: int = 1000,
    thresholds: dict[str, float] | None = None,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Rows matched by `id_column`; labels: every column the two files share (or the given ones).
    Label values 1/0 (-1 and blanks are left out of that label's metrics); scores are probabilities or
    any monotone score. A finding the labels have and the scores lack is refused (a macro average
    over fewer findings is another number) unless `allow_missing`; either way `left_out` says which."""
    if n_bootstrap < MIN_BOOTSTRAP:
        raise TableInputError(
            f"--bootstrap {n_bootstrap}: CheXzero's interval needs at least {MIN_BOOTSTRAP} resamples"
        )
    truth, scores = _csv(labels_csv, id_column), _csv(scores_csv, id_column)
    for name, df, path in (("labels", truth, labels_csv), ("scores", scores, scores_csv)):
        if id_column not in df.columns:
            raise TableInputError(
                f"{path}: no id column {id_column!r} (columns: {', '.join(df.columns[:10])}); pass --id-column"
            )
        dup = df[id_column][df[id_column].duplicated()]
        if len(dup):
            raise TableInputError(
                f"{path}: id {str(dup.iloc[0])!r} appears more than once in the {name} file"
            )
    shared = [c for c in truth.columns if c in scores.columns and c != id_column]
    left_out = {
        "labels_without_scores": [c for c in truth.columns if c not in scores.columns and c != id_column],
        "scores_without_labels": [c for c in scores.columns if c not in truth.columns and c != id_column],
    }
    if not labels and left_out["labels_without_scores"] and not allow_missing and shared:
        raise TableInputError(
            f"{scores_csv}: no scores for the finding(s) {', '.join(map(repr, left_out['labels_without_scores']))} "
            f"of {labels_csv}; choose the findings with --label-names, or pass --allow-missing to evaluate the "
            f"{len(shared)} shared ones"
        )
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
    bad = np.argwhere(~np.isfinite(s))
    if len(bad):
        r, c = bad[0]
        what = "not a number" if np.isnan(s[r, c]) else "not a finite number"
        raise TableInputError(
            f"{scores_csv}: id {str(merged[id_column].iloc[r])!r}, label {labels[c]!r}: score is {what}"
        )
    out = evaluate(y, s, labels, n_bootstrap=n_bootstrap, thresholds=thresholds)
    out["sources"] = {"labels": labels_csv, "scores": scores_csv, "id_column": id_column}
    # Columns of either file that were not evaluated (not chosen, or absent from the other file).
    out["left_out"] = {
        "labels_without_scores": [c for c in truth.columns if c != id_column and c not in labels],
        "scores_without_labels": [c for c in scores.columns if c != id_column and c not in labels],
    }
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
    left = m.get("left_out") or {}
    if left.get("labels_without_scores"):
        lines.append(f"not evaluated (labels without scores): {', '.join(left['labels_without_scores'])}")
    if left.get("scores_without_labels"):
        lines.append(f"not evaluated (scores without labels): {', '.join(left['scores_without_labels'])}")
    return "\n".join(lines)


def _threshold(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.4f}"


def load_metrics(run: str) -> dict[str, Any]:
    """An evaluate output folder or its metrics.json."""
    uri = run if run.endswith(".json") else storage.join(run, "metrics.json")
    try:
        m = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise TableInputError(f"{uri}: no metrics.json (run `pairaug evaluate` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TableInputError(f"{uri}: not JSON ({e}); is it a metrics.json of `pairaug evaluate`?") from None
    if not isinstance(m, dict) or not isinstance(m.get("datasets"), dict):
        raise TableInputError(f"{uri}: no 'datasets' in it; is it a metrics.json of `pairaug evaluate`?")
    for name, ds in m["datasets"].items():
        if not isinstance(ds, dict) or not isinstance(ds.get("models"), dict):
            raise TableInputError(f"{uri}: datasets.{name} has no 'models' table")
    return m


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
