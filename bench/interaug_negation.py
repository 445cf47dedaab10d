"""Does the generator draw what an InterAug report *denies*? Measured on a study run's kept pairs.

A logistic-regression probe for one finding (pleural effusion by default) is fitted on the real
training images' features from a CLIP (the study's real-only scorer). It then reads each kept
InterAug image, and the images are grouped by what the labeler reads in the rewritten report and
in the source report it was rewritten from. A generator that follows the text draws the finding for
"rewrite yes" and not for "rewrite no"; one that draws it whenever the words appear draws it for
"source yes, rewrite no" too, because the rules rewriter flips a finding by denying it
("No pleural effusion."). Such pairs teach a CLIP the finding backwards.

    python bench/interaug_negation.py --run runs/study --scorer runs/study/study/runs/real-seed0
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import pyarrow.dataset as pads
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pairaug_ray import images, schema
from pairaug_ray.models.scorers import load_scorer
from pairaug_ray.text.labeler import label_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a study's run.output_dir (validated/, synthetic/, corpus/)")
    ap.add_argument("--scorer", required=True, help="a CLIP run folder (its last checkpoint) or model folder")
    ap.add_argument("--finding", default="Pleural Effusion")
    ap.add_argument("--pairs", type=int, default=300, help="kept InterAug pairs read")
    args = ap.parse_args()
    model = sorted(glob.glob(os.path.join(args.scorer, "checkpoint_*", "model"))) or [args.scorer]
    scorer = load_scorer(model[-1])
    column = schema.label_column(args.finding)

    def path(uri: str) -> str:
        return uri if os.path.isabs(uri) else os.path.join(args.run, "corpus", uri)

    def embed(uris: list[str]) -> np.ndarray:
        return np.concatenate(
            [
                scorer.embed_images([images.read_image(path(u)) for u in uris[i : i + 64]])
                for i in range(0, len(uris), 64)
            ]
        )

    real = (
        pads.dataset(os.path.join(args.run, "validated", "manifest"), format="parquet")
        .to_table(columns=[schema.IMAGE_URI, schema.SPLIT, schema.STATUS, column])
        .to_pylist()
    )
    train = [r for r in real if r[schema.SPLIT] == "train" and r[schema.STATUS] == "ok"]
    probe = LogisticRegression(max_iter=2000).fit(
        embed([r[schema.IMAGE_URI] for r in train]), [int(r[column] == 1) for r in train]
    )
    syn = (
        pads.dataset(os.path.join(args.run, "synthetic", "manifest"), format="parquet")
        .to_table(columns=[schema.IMAGE_URI, schema.ORIGIN, schema.KEPT, schema.REPORT, schema.SOURCE_REPORT])
        .to_pylist()
    )
    inter = [r for r in syn if r[schema.ORIGIN] == "inter" and r[schema.KEPT]][: args.pairs]
    shown = probe.predict_proba(embed([r[schema.IMAGE_URI] for r in inter]))[:, 1]
    said = np.array([label_report(r[schema.REPORT]).labels.get(args.finding) == 1 for r in inter])
    source = np.array([label_report(r[schema.SOURCE_REPORT]).labels.get(args.finding) == 1 for r in inter])
    print(f"{len(inter)} kept InterAug pairs, {args.finding}")
    print(f"  probe AUC against the rewritten report: {roc_auc_score(said, shown):.3f}")
    print(f"  probe AUC against the source report:    {roc_auc_score(source, shown):.3f}")
    for name, rows in (
        ("source yes, rewrite no (denied)", source & ~said),
        ("source no, rewrite no", ~source & ~said),
        ("source yes, rewrite yes", source & said),
        ("source no, rewrite yes (new)", ~source & said),
    ):
        mean = float(shown[rows].mean()) if rows.any() else float("nan")
        print(f"  {name:<32} {int(rows.sum()):>4} pairs, finding drawn: mean probability {mean:.2f}")


if __name__ == "__main__":
    main()
