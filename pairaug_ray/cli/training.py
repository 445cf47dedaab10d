"""`pairaug train`, `evaluate`, `metrics`, `compare`, `finetune-t2i` and `eval-generator`: pretraining,
its evaluation, and training and grading the generator."""

from __future__ import annotations

import argparse

from pairaug_ray.cli.common import Commands, add_config_args, job


@job
def cmd_train(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.train import format_train, train_job

    print(format_train(train_job(cfg)))
    return 0


@job
def cmd_finetune_t2i(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.generator import finetune_t2i_job, format_finetune_t2i

    print(format_finetune_t2i(finetune_t2i_job(cfg)))
    return 0


@job
def cmd_eval_generator(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.generator import eval_generator_job, format_eval_generator

    print(format_eval_generator(eval_generator_job(cfg)))
    return 0


@job
def cmd_evaluate(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.evaluate import evaluate_job, format_evaluate

    print(format_evaluate(evaluate_job(cfg)))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from pairaug_ray import storage
    from pairaug_ray.eval.tables import format_metrics, metrics_from_csvs

    labels = [x.strip() for x in args.label_names.split(",")] if args.label_names else None
    m = metrics_from_csvs(
        args.labels, args.scores, args.id_column, labels, args.bootstrap, allow_missing=args.allow_missing
    )
    print(format_metrics(m))
    if args.out:
        storage.write_json(args.out, m)
        print(f"written: {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pairaug_ray import storage
    from pairaug_ray.eval import report
    from pairaug_ray.eval.tables import compare
    from pairaug_ray.pipeline.evaluate import format_table

    names = [x.strip() for x in args.names.split(",")] if args.names else None
    merged = compare(args.runs, names)
    print(format_table(merged))
    if args.out:
        storage.write_json(storage.join(args.out, "compare.json"), merged)
        storage.write_text(storage.join(args.out, "compare.html"), report.render_html(merged, {}))
        print(f"written: {args.out}/compare.json, {args.out}/compare.html")
    return 0


def register(commands: Commands) -> None:
    p = commands.add(
        "train",
        cmd_train,
        "pretrain a CheXzero-style CLIP on real plus synthetic pairs with Ray Train",
        "Train a CLIP (train.preset: vit-b-32 as CheXzero, or tiny) on the real training pairs plus the kept "
        "synthetic pairs of train.synthetic_origins, with DDP over train.num_workers Ray Train workers and "
        "negatives gathered from all of them. Checkpoints (transformers CLIP folders, usable as score.model) "
        "go to train.storage_path every train.checkpoint_every_steps steps and at each epoch end; rerunning "
        "the same train.name resumes from the latest one.",
    )
    add_config_args(p)

    p = commands.add(
        "finetune-t2i",
        cmd_finetune_t2i,
        "train the text-to-image generator (RoentGen's recipe) with Ray Train",
        "Fine-tune a Stable Diffusion pipeline (finetune_t2i.base, e.g. SD 1.5 as RoentGen) on the real pairs' "
        "train split: the UNet and, with finetune_t2i.train_text_encoder, the CLIP text encoder, under the DDPM "
        "noise-prediction loss with 10% of the reports dropped for classifier-free guidance, AdamW, gradient "
        "clipping and an EMA of the UNet. With no base (offline, the phantom corpus) it trains a small pipeline "
        "from scratch, its VAE first. Checkpoints go to finetune_t2i.storage_path every "
        "finetune_t2i.checkpoint_every_steps steps, each with the pipeline (EMA weights) and a grid of samples "
        "for fixed reports; rerunning the same finetune_t2i.name resumes. Prints the pipeline folder to use as "
        "models.diffusion or generate.model. See docs/generator.md.",
    )
    add_config_args(p)

    p = commands.add(
        "eval-generator",
        cmd_eval_generator,
        "the generator's report card: fidelity, findings shown, IntraAug edits, identity, memorisation",
        "Grade a text-to-image pipeline (eval_generator.model; default: the finetune-t2i run's latest) against "
        "the real pairs: it draws held-out and training reports and edits held-out studies (the generate job's "
        "actor pools; reruns resume), encodes every image with eval_generator.encoder (a CLIP trained on real "
        "pairs, or RAD-DINO), and measures the Fréchet distance against the real-vs-real floor, per-finding "
        "AUC of a classifier trained on real training images (generated vs real held-out), whether edits move "
        "the changed findings and stay the same patient, and near-duplicates and re-identification of "
        "training patients. Writes generator_report.json, generator_report.html and CSVs under "
        "eval_generator.output. See docs/generator.md.",
    )
    add_config_args(p)

    p = commands.add(
        "evaluate",
        cmd_evaluate,
        "zero-shot evaluation (CheXzero) with bootstrap CIs, ensembles, linear probing and an HTML report",
        "Evaluate trained CLIPs (evaluate.models; default: the train job's last checkpoint and the mean of its "
        "top-k checkpoints by validation AUC) zero-shot on evaluate.datasets (the corpus's test split, or "
        "CheXpert, PadChest and RSNA through adapters of their real label files): per-label and macro AUC, "
        "ACC and F1 with CheXzero's 1,000-resample bootstrap intervals; optional linear probing "
        "(evaluate.linear_probe). Writes metrics.json, predictions/*.csv and report.html under evaluate.output.",
    )
    add_config_args(p)

    p = commands.add(
        "metrics",
        cmd_metrics,
        "the evaluation protocol on any model's predictions (labels CSV + scores CSV)",
        "Compute per-label and macro AUC/ACC/F1 with CheXzero's bootstrap intervals for predictions made by any "
        "model: one row per image, one column per label, matched by an id column. Labels are 1/0 (-1 and blank "
        "are left out of that label). Example:\n  pairaug metrics --labels labels.csv --scores scores.csv --out m.json",
    )
    p.add_argument(
        "--labels", required=True, metavar="CSV", help="ground truth: id column + one column per label"
    )
    p.add_argument(
        "--scores", required=True, metavar="CSV", help="predictions: id column + one column per label"
    )
    p.add_argument(
        "--id-column", default="image_id", help="column matching rows of the two files (default image_id)"
    )
    p.add_argument(
        "--label-names", metavar="A,B,...", help="labels to evaluate (default: every shared column)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate the findings both files have when the labels have findings the scores lack "
        "(refused without it; the table and the JSON name what was left out)",
    )
    p.add_argument("--out", metavar="JSON", help="also write the metrics here (local path or s3://)")

    p = commands.add(
        "compare",
        cmd_compare,
        "the comparison table over several evaluation runs",
        "Build the paper's comparison table (rows: runs, e.g. base, +AugImg, +AugText, +PairAug, ensemble; "
        "columns: AUC, ACC, F1 with 95% CIs per dataset) from the metrics.json of several `pairaug evaluate` runs.\n"
        "  pairaug compare runs/base/evaluate runs/pairaug/evaluate --names base,+PairAug --out runs/compare",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="evaluate output folders (or their metrics.json)")
    p.add_argument(
        "--names", metavar="A,B,...", help="row names, one per run (default: the run folders' names)"
    )
    p.add_argument("--out", metavar="DIR", help="write compare.json and compare.html here")


@job
def cmd_study(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.study import format_study, study_job

    print(format_study(study_job(cfg)))
    return 0


def register_study(commands: Commands) -> None:
    p = commands.add(
        "study",
        cmd_study,
        "does PairAug help? pretrain CLIPs in several arms over seeds and compare them (docs/study.md)",
        "Build the world (the phantom corpus), train the generator (finetune_t2i) and a scorer (a CLIP on the "
        "real pairs only), run the augment job with them, then pretrain a CLIP per arm (study.arms: real only "
        "at a low-data fraction and at 100%, + AugText, + InterAug, + IntraAug from generated or real sources, "
        "+ both, unpruned, + MedCutMix) and training seed (study.seeds), every one for study.steps steps. "
        "Each is evaluated zero-shot and by linear probing on the test split; each arm's difference to "
        "study.baseline is the observed difference, with a 95% interval from a t distribution over the paired "
        "seeds plus a paired bootstrap of the test images; a gain when the interval excludes 0, and Holm's "
        "adjusted p over the arms beside it. Writes study.json, study.md (the table) and study.png "
        "under study.output. Every part resumes on a rerun.\n"
        "  pairaug study --config configs/phantom-study.yaml            # the full study (make study)\n"
        "  pairaug study --config configs/phantom-study.yaml --quick    # a first look: study.quick's settings",
    )
    add_config_args(p)
    p.add_argument(
        "--quick",
        action="store_true",
        help="apply the config's study.quick overrides first (a smaller world, fewer steps and seeds)",
    )
