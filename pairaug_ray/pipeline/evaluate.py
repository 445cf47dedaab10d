"""The `evaluate` job: CheXzero zero-shot evaluation of trained CLIPs, with the paper's table.

models    each configured model: a CLIP folder, or a train run (its last checkpoint, and the mean of
          its top-k checkpoints by validation AUC, CheXzero's ensemble)
embed     Ray Data: decode + CheXzero preprocessing + image embedding by every checkpoint at once
          (EmbedImages actors); unreadable images are recorded and left out
score     ("{}", "no {}") class embeddings, softmax over the two raw cosines, per-label AUC / F1 /
          ACC with CheXzero's 1,000-resample bootstrap intervals; predictions written as CSV
probe     optional linear probing on frozen features (1%, 10%, 100% of a seeded split)
report    metrics.json and a self-contained report.html: the comparison table, ROC curves, a t-SNE
          map of image and report embeddings by origin, image grids of pairs
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import ray

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, EvalDatasetConfig, JobConfig
from pairaug_ray.eval.datasets import EvalSet, load_eval_set
from pairaug_ray.eval.metrics import best_f1_threshold, evaluate, format_interval
from pairaug_ray.eval.subgroups import format_subgroups, subgroup_metrics
from pairaug_ray.eval.zeroshot import ZeroShotModel, ensemble, zero_shot_probabilities
from pairaug_ray.models.refs import resolve_model
from pairaug_ray.pipeline.common import real_pairs_root
from pairaug_ray.runtime import init_ray
from pairaug_ray.schema import EMBED_ERROR, IMAGE_ID, IMAGE_URI, embedding_column
from pairaug_ray.stages.embed import EmbedImages

log = logging.getLogger(__name__)
META_FILE, MODEL_DIR = "train_meta.json", "model"


@dataclass(frozen=True)
class ModelRow:
    """One row of the comparison table: a model, or an ensemble of checkpoints."""

    name: str
    checkpoints: list[str]  # local CLIP folders
    info: dict[str, Any]


def run_checkpoints(run_dir: str) -> list[dict[str, Any]]:
    """The checkpoints of a train run with their step and validation AUC, oldest first."""
    found = []
    for meta_uri in storage.list_files(run_dir, META_FILE):
        if "/checkpoint_" not in meta_uri:
            continue
        meta = json.loads(storage.read_text(meta_uri))
        folder = meta_uri.rsplit("/", 1)[0]
        auc = meta.get("val_auc")
        finite = auc is not None and math.isfinite(auc)
        found.append(
            {
                "path": f"{folder}/{MODEL_DIR}",
                "step": meta.get("step", meta.get("state", {}).get("step")),
                "val_auc": float(auc) if finite else None,
            }
        )
    if not found:
        raise ConfigError(f"no checkpoints under {run_dir} (expected */{META_FILE} from `pairaug train`)")
    return sorted(found, key=lambda c: c["step"] or 0)


def model_specs(cfg: JobConfig) -> list[dict[str, Any]]:
    """The models to evaluate: evaluate.models, else the train job's run (and the scorer the job
    trained, if it did)."""
    e = cfg.evaluate
    if e.models:
        return [m.model_dump() for m in e.models]
    specs = [
        {"name": "pairaug", "path": storage.join(cfg.train_dir(), cfg.train.name), "ensemble": e.ensemble_k}
    ]
    if cfg.models.train_scorer:
        # The scorer the job trained is the same CLIP on the real pairs only: the baseline, side by side.
        from pairaug_ray.pipeline.trained_models import SCORER_RUN

        specs.append({"name": "real only", "path": storage.join(cfg.train_dir(), SCORER_RUN)})
    return specs


def model_rows(cfg: JobConfig) -> list[ModelRow]:
    specs = model_specs(cfg)
    rows = []
    for spec in specs:
        path = spec["path"]
        if storage.exists(storage.join(path, "config.json")):
            rows.append(ModelRow(spec["name"], [resolve_model(path).path], {"path": path}))
            continue
        ckpts = run_checkpoints(path)
        last = ckpts[-1]
        rows.append(
            ModelRow(
                spec["name"], [resolve_model(last["path"]).path], {"path": last["path"], "step": last["step"]}
            )
        )
        if spec.get("ensemble", 0) > 1 and len(ckpts) > 1:
            ranked = sorted(
                ckpts, key=lambda c: (c["val_auc"] is not None, c["val_auc"] or 0, c["step"]), reverse=True
            )
            top = ranked[: spec["ensemble"]]
            if len(top) < spec["ensemble"]:
                log.warning(
                    "%s: an ensemble of %d checkpoints was asked for, the run kept %d (raise "
                    "train.keep_checkpoints)",
                    spec["name"],
                    spec["ensemble"],
                    len(top),
                )
            rows.append(
                ModelRow(
                    f"{spec['name']} ensemble",
                    [resolve_model(c["path"]).path for c in top],
                    {
                        "checkpoints": [c["path"] for c in top],
                        "val_auc": [c["val_auc"] for c in top],
                        "ranked_by": "val_auc" if top[0]["val_auc"] is not None else "step",
                    },
                )
            )
    return rows


def embed_images(
    cfg: JobConfig, data: EvalSet, checkpoints: list[str]
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Embeddings (n, D) per checkpoint for the readable images, and the frame of those images.

    Checkpoints go through in groups of evaluate.checkpoints_per_pass: each pass decodes the images
    once for its group, and an actor never holds more models than that."""
    ids = data.frame[IMAGE_ID]
    if ids.duplicated().any():
        raise ConfigError(
            f"evaluation dataset {data.name!r}: image id {ids[ids.duplicated()].iloc[0]!r} appears more than once"
        )
    group = cfg.evaluate.checkpoints_per_pass
    embs: list[np.ndarray] = []
    kept = data.frame
    for i in range(0, len(checkpoints), group):
        part, kept = _embed_pass(cfg, data, checkpoints[i : i + group])
        embs += part
    return embs, kept


def _embed_pass(
    cfg: JobConfig, data: EvalSet, checkpoints: list[str]
) -> tuple[list[np.ndarray], pd.DataFrame]:
    e = cfg.evaluate
    frame = data.frame[[IMAGE_ID, IMAGE_URI]]
    plan = EmbedImages.plan(e, model_paths=checkpoints)
    ds = plan.apply(ray.data.from_pandas(frame).repartition(max(1, len(frame) // e.batch_size)))
    with progress.bar("evaluate", total=len(frame), unit="images") as counter:
        out = progress.counted(ds, counter).to_pandas()
    failed = out[out[EMBED_ERROR].notna()]
    for _, r in failed.head(5).iterrows():
        log.warning("%s: image %s left out: %s", data.name, r[IMAGE_ID], r[EMBED_ERROR])
    data.info["unreadable_images"] = len(failed)
    ok = out[out[EMBED_ERROR].isna()].set_index(IMAGE_ID)
    kept = data.frame[data.frame[IMAGE_ID].isin(ok.index)].reset_index(drop=True)
    if kept.empty:
        raise ConfigError(
            f"evaluation dataset {data.name!r}: none of its {len(frame)} images could be read "
            f"(first error: {failed[EMBED_ERROR].iloc[0]})"
        )
    embs = [np.stack(ok.loc[kept[IMAGE_ID], embedding_column(i)].to_numpy()) for i in range(len(checkpoints))]
    return embs, kept


_CLASS_EMBEDDINGS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def class_embeddings(cfg: JobConfig, checkpoint: str, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) class embeddings of a checkpoint, computed once per label list."""
    e = cfg.evaluate
    key = (checkpoint, tuple(labels), tuple(e.positive_templates), tuple(e.negative_templates))
    if key not in _CLASS_EMBEDDINGS:
        model = ZeroShotModel(checkpoint, pad_size=e.pad_size)
        _CLASS_EMBEDDINGS[key] = (
            model.class_embeddings(labels, e.positive_templates),
            model.class_embeddings(labels, e.negative_templates),
        )
    return _CLASS_EMBEDDINGS[key]


def zero_shot(
    cfg: JobConfig, checkpoints: list[str], embs: list[np.ndarray], labels: list[str]
) -> np.ndarray:
    probs = []
    for path, emb in zip(checkpoints, embs, strict=True):
        pos, neg = class_embeddings(cfg, path, labels)
        probs.append(zero_shot_probabilities(emb, pos, neg))
    return ensemble(probs)


def dataset_spec(cfg: JobConfig, spec: EvalDatasetConfig) -> EvalDatasetConfig:
    if spec.kind == "manifest" and spec.path is None:
        root = real_pairs_root(cfg)
        spec = spec.model_copy(update={"path": root})
    if spec.labels is None and spec.kind != "padchest":
        spec = spec.model_copy(update={"labels": spec.label_list()})
    return spec


def load_dataset(spec: EvalDatasetConfig) -> EvalSet:
    data = load_eval_set(spec)
    if spec.limit:
        data.frame = data.frame.head(spec.limit).reset_index(drop=True)
    if data.frame.empty:
        raise ConfigError(f"evaluation dataset {spec.name!r} has no rows ({spec.kind} at {spec.path})")
    return data


def evaluate_job(cfg: JobConfig) -> dict[str, Any]:
    init_ray(cfg.ray)
    e, out_dir = cfg.evaluate, cfg.evaluate_dir()
    rows = model_rows(cfg)
    results: dict[str, Any] = {
        "models": {r.name: r.info for r in rows},
        "datasets": {},
        "config": e.model_dump(mode="json"),
    }
    curves: dict[str, Any] = {}
    all_ckpts = sorted({c for r in rows for c in r.checkpoints})
    for spec in e.datasets:
        spec = dataset_spec(cfg, spec)
        data = load_dataset(spec)
        what = f"{len(rows)} model row(s) on {spec.name} ({len(data.frame)} images, {', '.join(data.labels)})"
        with progress.stage("evaluate", what) as shown:
            ds_result = _evaluate_dataset(cfg, spec, data, rows, all_ckpts, out_dir, curves)
            shown["line"] = "macro AUC " + ", ".join(
                f"{name} {format_interval(m['macro']['auc'])}" for name, m in ds_result["models"].items()
            )
        results["datasets"][spec.name] = ds_result
    if e.linear_probe.enabled:
        with progress.stage("probe", f"linear probing of {rows[0].name}") as shown:
            results["linear_probe"] = _probe(cfg, rows[0])
            shown["line"] = ", ".join(
                f"{float(f):.0%} AUC {r['macro']['auc']['mean']}"
                for f, r in results["linear_probe"]["fractions"].items()
            )
    with progress.stage("report", f"{out_dir}/report.html") as shown:
        results["figures"] = write_report(cfg, rows, results, curves)
        storage.write_json(storage.join(out_dir, "metrics.json"), results)
        shown["line"] = f"{len(results['figures'])} figures"
    results["output"] = out_dir
    return results


def _evaluate_dataset(cfg, spec, data, rows, all_ckpts, out_dir, curves) -> dict[str, Any]:
    """One dataset: embed its images with every checkpoint, score each model row, write predictions."""
    e = cfg.evaluate
    embs, kept = embed_images(cfg, data, all_ckpts)
    by_ckpt = dict(zip(all_ckpts, embs, strict=True))
    y = kept[data.labels].to_numpy(float)
    thresholds_for = (
        _validation_thresholds(cfg, spec, rows, data.labels) if e.threshold == "validation" else {}
    )
    ds_result = {"info": {**data.info, "images": len(kept), "labels": data.labels}, "models": {}}
    for row in rows:
        probs = zero_shot(cfg, row.checkpoints, [by_ckpt[c] for c in row.checkpoints], data.labels)
        result = evaluate(y, probs, data.labels, e.n_bootstrap, thresholds_for.get(row.name))
        if any(c in kept for c in schema.DEMOGRAPHIC_COLUMNS):
            # At the thresholds the overall metrics used (eval/subgroups.py).
            thresholds = [result["per_label"][lb]["threshold"] for lb in data.labels]
            result["subgroups"] = subgroup_metrics(
                kept, y, probs, thresholds, e.n_bootstrap, e.subgroup_min_images
            )
        ds_result["models"][row.name] = result
        pred = pd.DataFrame(probs, columns=data.labels)
        pred.insert(0, IMAGE_ID, kept[IMAGE_ID].to_numpy())
        storage.write_text(
            storage.join(out_dir, "predictions", f"{spec.name}--{_slug(row.name)}.csv"),
            pred.to_csv(index=False),
        )
        curves[(spec.name, row.name)] = (y, probs)
    labels_frame = kept[[IMAGE_ID, *data.labels]]
    storage.write_text(
        storage.join(out_dir, "predictions", f"{spec.name}--labels.csv"), labels_frame.to_csv(index=False)
    )
    return ds_result


def _validation_thresholds(cfg: JobConfig, spec: EvalDatasetConfig, rows: list[ModelRow], labels: list[str]):
    if spec.kind != "manifest":
        raise ConfigError(
            f"evaluate.threshold validation needs a validation split; dataset {spec.name!r} ({spec.kind}) has none "
            "here: use threshold max-f1 or a manifest dataset"
        )
    val = load_dataset(spec.model_copy(update={"split": cfg.evaluate.validation_split, "limit": None}))
    ckpts = sorted({c for r in rows for c in r.checkpoints})
    embs, kept = embed_images(cfg, val, ckpts)
    by_ckpt, y = dict(zip(ckpts, embs, strict=True)), kept[labels].to_numpy(float)
    out = {}
    for row in rows:
        probs = zero_shot(cfg, row.checkpoints, [by_ckpt[c] for c in row.checkpoints], labels)
        for j, lb in enumerate(labels):
            if np.nansum(y[:, j]) == 0 or (y[:, j] == 0).sum() == 0:
                raise ConfigError(
                    f"evaluate.threshold validation: label {lb!r} has one class in the "
                    f"{cfg.evaluate.validation_split!r} split of {spec.name!r}; no threshold can be chosen "
                    "there (use threshold max-f1)"
                )
        out[row.name] = {lb: best_f1_threshold(y[:, j], probs[:, j]) for j, lb in enumerate(labels)}
    return out


def _probe(cfg: JobConfig, row: ModelRow) -> dict[str, Any]:
    from pairaug_ray.eval.probe import linear_probe

    lp = cfg.evaluate.linear_probe
    spec = dataset_spec(cfg, lp.dataset or EvalDatasetConfig(name="probe", split=None))
    data = load_dataset(spec)
    (emb,), kept = embed_images(cfg, data, row.checkpoints[:1])
    result = linear_probe(
        emb,
        kept[data.labels].to_numpy(float),
        data.labels,
        lp.fractions,
        lp.split,
        lp.seed,
        lp.c_grid,
        cfg.evaluate.n_bootstrap,
        # Split by patient where the dataset names them (the phantom, MIMIC, CheXpert, PadChest, RSNA).
        groups=kept[schema.PATIENT_ID].to_numpy() if schema.PATIENT_ID in kept else None,
    )
    return {"model": row.name, "dataset": spec.name, **result}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


# --- report --------------------------------------------------------------------------------------------------


def training_sample(cfg: JobConfig, per_origin: int) -> pd.DataFrame:
    """Up to `per_origin` training pairs of each origin: real (train split) and kept synthetic ones
    (column reads, no Ray execution)."""
    import pyarrow.compute as pc

    from pairaug_ray.pairs import manifest_columns, read_columns
    from pairaug_ray.pipeline.train import PAIR_COLUMNS

    wanted = [*PAIR_COLUMNS, *schema.LABEL_COLUMNS, schema.STUDY_ID, schema.ERROR]
    ok = pc.field(schema.STATUS) == schema.STATUS_OK
    real_root = cfg.train.real or real_pairs_root(cfg)
    columns = [c for c in wanted if c in manifest_columns(real_root)]
    frames = [
        read_columns(real_root, columns, where=ok & (pc.field(schema.SPLIT) == "train")).slice(0, per_origin)
    ]
    syn_root = cfg.train.synthetic or cfg.synthetic_dir()
    if storage.exists(storage.join(syn_root, "manifest")):
        kept = read_columns(syn_root, columns, where=ok & (pc.field(schema.KEPT) == True))  # noqa: E712
        for origin in (*schema.TEXT_TO_IMAGE_ORIGINS, schema.ORIGIN_INTRA):
            frames.append(kept.filter(pc.equal(kept[schema.ORIGIN], origin)).slice(0, per_origin))
    return pd.concat([f.to_pandas() for f in frames], ignore_index=True)


def write_report(
    cfg: JobConfig, rows: list[ModelRow], results: dict[str, Any], curves: dict
) -> dict[str, str]:
    from pairaug_ray import images
    from pairaug_ray.eval import report
    from pairaug_ray.text.train_text import training_text

    e = cfg.evaluate
    figures: dict[str, bytes] = {}
    for d, ds in results["datasets"].items():
        per_model = {m: curves[(d, m)] for m in ds["models"]}
        figures[f"roc-{d}"] = report.roc_figure(d, ds["info"]["labels"], per_model)
    if e.tsne_per_origin or e.grid_pairs:
        sample = training_sample(cfg, max(e.tsne_per_origin, e.grid_pairs))
        if e.tsne_per_origin and len(sample) >= 5:
            model = ZeroShotModel(rows[0].checkpoints[0], pad_size=e.pad_size)
            picked = sample.groupby(schema.ORIGIN, sort=False).head(e.tsne_per_origin).reset_index(drop=True)
            pictures = [_read_or_none(images, u) for u in picked[schema.IMAGE_URI]]
            readable = [i for i, pic in enumerate(pictures) if pic is not None]
            picked, pictures = picked.iloc[readable].reset_index(drop=True), [pictures[i] for i in readable]
            img = np.concatenate(
                [model.embed_images(pictures[i : i + 32]) for i in range(0, len(pictures), 32)]
            )
            txt = model.embed_texts(
                [training_text(r, cfg.train.text, cfg.train.text_form) for r in picked.to_dict("records")]
            )
            figures["tsne"] = report.tsne_figure(img, txt, picked[schema.ORIGIN].tolist(), seed=cfg.run.seed)
            results["tsne"] = {
                "pairs": len(picked),
                "origins": picked[schema.ORIGIN].value_counts().to_dict(),
            }
        if e.grid_pairs:
            for origin, group in sample.groupby(schema.ORIGIN, sort=False):
                figures[f"pairs-{origin}"] = report.pair_grid_png(group.head(e.grid_pairs))
    return report.write(cfg.evaluate_dir(), results, figures)


def _read_or_none(images, uri: str):
    try:
        return images.read_image(uri)
    except (images.ImageReadError, OSError):
        return None


# --- tables ----------------------------------------------------------------------------------------------------


def comparison_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, dataset): macro AUC / ACC / F1 with their intervals, and the underdiagnosis
    gap of each demographic attribute the dataset has (eval/subgroups.py)."""
    table = []
    for ds_name, ds in results["datasets"].items():
        for model, m in ds["models"].items():
            gaps = {
                attribute: r["underdiagnosis_gap"]
                for attribute, r in (m.get("subgroups") or {}).items()
                if "underdiagnosis_gap" in r
            }
            table.append(
                {
                    "model": model,
                    "dataset": ds_name,
                    **{k: m["macro"][k] for k in ("auc", "acc", "f1")},
                    "gaps": gaps,
                }
            )
    return table


def _cell(ci: dict[str, Any]) -> str:
    return format_interval(ci)


def format_table(results: dict[str, Any]) -> str:
    rows = comparison_rows(results)
    width = max([len(r["model"]) for r in rows] + [5])
    attributes = sorted({a for r in rows for a in r["gaps"]})
    header = (
        f"{'model':<{width}}  {'dataset':<14} {'AUC (95% CI)':<24} {'ACC (95% CI)':<24} {'F1 (95% CI)':<24}"
    )
    header += "".join(f" {('gap: ' + a):<24}" for a in attributes)
    lines = [header.rstrip()]
    for r in rows:
        line = f"{r['model']:<{width}}  {r['dataset']:<14} {_cell(r['auc']):<24} {_cell(r['acc']):<24} {_cell(r['f1']):<24}"
        line += "".join(f" {(_cell(r['gaps'][a]) if a in r['gaps'] else '-'):<24}" for a in attributes)
        lines.append(line.rstrip())
    if attributes:
        lines.append(
            "gap: the underdiagnosis gap, largest minus smallest share of sick patients called healthy"
        )
    return "\n".join(lines)


def format_evaluate(results: dict[str, Any]) -> str:
    out = [format_table(results)]
    for ds_name, ds in results["datasets"].items():
        for model, m in ds["models"].items():
            if m.get("subgroups"):
                out.append(f"subgroups ({model} on {ds_name}):")
                out += format_subgroups(m["subgroups"])
    if "linear_probe" in results:
        lp = results["linear_probe"]
        out.append(f"linear probe ({lp['model']} on {lp['dataset']}):")
        for frac, r in lp["fractions"].items():
            out.append(
                f"  {float(frac):>6.0%} of train ({r['train_rows']} rows): AUC {_cell(r['macro']['auc'])}"
            )
    out += [f"  metrics  {results['output']}/metrics.json", f"  report   {results['output']}/report.html"]
    return "\n".join(out)
