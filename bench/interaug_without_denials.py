"""Is the InterAug loss the denied findings? Retrain the InterAug arm without them.

Takes a finished study (`--run`, its `run.output_dir`), copies its pruned synthetic set with
`kept` turned off for every InterAug pair whose rewrite denies a CheXpert-5 finding its source
report stated (the pairs whose images still show it: bench/interaug_negation.py), trains the
InterAug arm on that set over the study's seeds with the study's settings, and compares it with
the study's own real-only and InterAug runs on the same test images (paired bootstrap, pooled over
seeds, as the study does).

    python bench/interaug_without_denials.py --config configs/phantom-study.yaml --run runs/study
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pairaug_ray import schema, storage
from pairaug_ray.config import load_config
from pairaug_ray.eval.metrics import pooled_auc, pooled_auc_difference
from pairaug_ray.text.labeler import label_report

ARM = "inter-nodenials"


def denies_a_stated_finding(report: str, source: str) -> bool:
    said, was = label_report(report or "").labels, label_report(source or "").labels
    return any(was.get(f) == 1 and said.get(f) == 0 for f in schema.CHEXPERT5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--run", required=True, help="the finished study's run.output_dir")
    args = ap.parse_args()
    run = os.path.abspath(args.run)
    cfg = load_config(args.config, [f"run.output_dir={run}"])
    from pairaug_ray.pipeline.study import Study
    from pairaug_ray.runtime import init_ray

    init_ray(cfg.ray)
    src, out = os.path.join(run, "synthetic"), os.path.join(run, "synthetic-no-denials")
    table = pads.dataset(os.path.join(src, "manifest"), format="parquet").to_table()
    rows = table.to_pylist()
    dropped = 0
    for r in rows:
        if (
            r[schema.ORIGIN] == "inter"
            and r[schema.KEPT]
            and denies_a_stated_finding(r[schema.REPORT], r[schema.SOURCE_REPORT])
        ):
            r[schema.KEPT], r[schema.PRUNE_REASON] = False, "denies a finding its source report stated"
            dropped += 1
    os.makedirs(os.path.join(out, "manifest"), exist_ok=True)
    pq.write_table(pa_table(rows, table.schema), os.path.join(out, "manifest", "part-0.parquet"))
    kept = sum(1 for r in rows if r[schema.ORIGIN] == "inter" and r[schema.KEPT])
    print(f"InterAug pairs kept: {kept} ({dropped} that deny a stated finding left out)")

    study = Study(cfg)
    names = []
    for seed in cfg.study.seeds:
        name = f"{ARM}-seed{seed}"
        study.train(
            name,
            {
                "run.seed": seed,
                "train.synthetic_origins": ["inter"],
                "train.synthetic": out,
                "train.medcutmix.enabled": False,
            },
        )
        names.append(name)
    models = {}
    for n in names:
        root = os.path.join(study.runs_dir, n)
        ck = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "model")))[-1]
        models[n] = os.path.join(root, ck, "model")
    kept_frame, labels, scores, _ = study.evaluate(models)
    preds = os.path.join(study.out, "predictions")
    truth = pd.read_csv(os.path.join(preds, "labels.csv"), dtype={schema.IMAGE_ID: str})
    order = kept_frame[schema.IMAGE_ID].astype(str).tolist()
    assert truth[schema.IMAGE_ID].tolist() == order
    y = truth[labels].to_numpy(float)

    def runs(arm: str) -> list[np.ndarray]:
        return [
            pd.read_csv(os.path.join(preds, f"{arm}-seed{s}.csv"))[labels].to_numpy(float)
            for s in cfg.study.seeds
        ]

    new = [scores[n] for n in names]
    for arm, other in (("inter (with the denials)", runs("inter")), ("inter without the denials", new)):
        auc = pooled_auc(y, other, labels)["macro"]
        diff = pooled_auc_difference(y, runs("real"), other, labels)["macro"]
        print(
            f"  {arm:<28} AUC {auc['mean']:.3f} [{auc['lower']:.3f}, {auc['upper']:.3f}]  vs real only "
            f"{100 * diff['mean']:+.2f} [{100 * diff['lower']:+.2f}, {100 * diff['upper']:+.2f}]"
        )
    per = pooled_auc(y, new, labels)["per_label"]
    print("  per finding without the denials: " + ", ".join(f"{k} {v['mean']:.2f}" for k, v in per.items()))
    storage.write_json(os.path.join(study.out, f"{ARM}.json"), {"dropped": dropped, "kept": kept})


def pa_table(rows, schema_):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema_)


if __name__ == "__main__":
    main()
