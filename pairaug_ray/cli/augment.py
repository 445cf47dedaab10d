"""`pairaug augment`, `run` and the augment job's stages one at a time (rewrite, generate, score,
prune)."""

from __future__ import annotations

import argparse

from pairaug_ray.cli.common import Commands, add_config_args, add_io_args, job


@job
def cmd_augment(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.augment import augment_job, format_augment

    print(format_augment(augment_job(cfg)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    return _run(args)


def _dry_run(args: argparse.Namespace) -> int:
    """Check the job (files, models, endpoint, resources, output) without running it: exit 2 on a problem."""
    from pairaug_ray.cli.common import load
    from pairaug_ray.pipeline.dry_run import PROBLEM, dry_run, format_checks, load_values

    cfg = load(args)
    checks = dry_run(cfg, load_values(args.values) if args.values else None)
    print(format_checks(checks))
    return 2 if any(c.status == PROBLEM for c in checks) else 0


@job
def _run(cfg, args: argparse.Namespace) -> int:
    """The whole pipeline: the augment job, then pretraining on real plus synthetic pairs, then evaluation."""
    from pairaug_ray.pipeline.augment import augment_job, format_augment
    from pairaug_ray.pipeline.evaluate import evaluate_job, format_evaluate
    from pairaug_ray.pipeline.train import format_train, train_job

    print(format_augment(augment_job(cfg)), end="\n\n", flush=True)
    print(format_train(train_job(cfg)), end="\n\n", flush=True)
    print(format_evaluate(evaluate_job(cfg)))
    return 0


@job
def cmd_rewrite(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.common import format_outcomes
    from pairaug_ray.pipeline.rewrite import rewrite_job

    print(format_outcomes(rewrite_job(cfg, input_root=args.input, output_root=args.output)))
    print(f"output: {args.output or cfg.rewrite_dir()}")
    return 0


@job
def cmd_generate(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.common import format_outcomes
    from pairaug_ray.pipeline.generate import generate_job

    print(format_outcomes(generate_job(cfg, input_root=args.input, output_root=args.output), noun="image"))
    print(f"output: {args.output or cfg.generate_dir()}")
    return 0


@job
def cmd_score(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.common import format_outcomes
    from pairaug_ray.pipeline.score import score_job

    print(format_outcomes(score_job(cfg, input_root=args.input, output_root=args.output), noun="scored"))
    print(f"output: {args.output or cfg.score_dir()}")
    return 0


@job
def cmd_prune(cfg, args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.figures import write_figures
    from pairaug_ray.pipeline.prune import format_prune, prune_job

    summary = prune_job(
        cfg, tau=args.tau, epsilon=args.epsilon, input_root=args.input, output_root=args.output
    )
    print(format_prune(summary))
    if args.output is None:
        for name, path in write_figures(cfg).items():
            print(f"{name}: {path}")
    print(f"output: {args.output or cfg.synthetic_dir()}")
    return 0


def register_jobs(commands: Commands) -> None:
    p = commands.add(
        "augment",
        cmd_augment,
        "the PairAug job: rewrite -> generate -> score -> prune",
        "Run PairAug end to end: build or import the corpus (corpus.*), build/resolve the models, validate "
        "every real row, rewrite the reports (rewrite.*), draw InterAug images and IntraAug edits "
        "(generate.*), score the new pairs (score.*), prune them with tau and the hybrid consistency rule "
        "(prune.*), and write the synthetic manifest, summary.json, score histograms and an example grid "
        "under run.output_dir. Every stage checkpoints; a rerun after a crash or kill resumes. Works as a "
        "Ray job: ray job submit --working-dir . -- pairaug augment --config s3://...",
    )
    add_config_args(p)
    p = commands.add(
        "run",
        cmd_run,
        "the whole pipeline: augment, train, evaluate (the demo's entry point)",
        "Run `augment`, `train` and `evaluate` with one config: the synthetic pairs the first writes are the "
        "ones the second trains on, and the third evaluates the trained model zero-shot. Each part resumes "
        "on a rerun.\n"
        "--dry-run checks the job instead, without loading a weight or touching a GPU: the corpus files, every "
        "model reference, the rewrite endpoint, the evaluation datasets, the resources against the chart "
        "(--values, repeated as with helm -f: later files win) and that the output folder is writable; it exits "
        "2 naming each problem.\n"
        "  pairaug run --dry-run --config my-mimic.yaml --values helm/pairaug/values.yaml \\\n"
        "      --values helm/pairaug/presets/production.yaml --values my-values.yaml",
    )
    add_config_args(p)
    p.add_argument(
        "--dry-run", action="store_true", help="check the job without running it (exit 2 on a problem)"
    )
    p.add_argument(
        "--values",
        metavar="YAML",
        action="append",
        default=None,
        help="with --dry-run: the Helm values the cluster runs with; repeat for each -f file, in helm's order",
    )


def register_stages(commands: Commands) -> None:
    p = commands.add(
        "score",
        cmd_score,
        "score generated pairs with a CLIP-family model (PairAug step 3)",
        "Embed each generated pair with the scorer (score.model: a transformers CLIP folder, an OpenCLIP "
        "model or a MedCLIP checkpoint) and store S_a (InterAug) or S1, S2, S3 (IntraAug) beside it. "
        "Resumable: rows already scored are skipped.",
    )
    add_config_args(p)
    add_io_args(p, "generated pairs (default: generate.output)", "score.output")

    p = commands.add(
        "prune",
        cmd_prune,
        "re-apply PairAug's pruning rules to stored scores, without regenerating",
        "Keep InterAug pairs with S_a > tau, and IntraAug pairs whose S1, S2 and S3 each exceed their mean "
        "over all IntraAug pairs of the run minus epsilon (global means: a first pass aggregates, a second "
        "filters). Writes every pair with a `kept` flag and the thresholds used, and redraws the score "
        "histograms.",
    )
    add_config_args(p)
    p.add_argument("--tau", type=float, default=None, help="InterAug threshold (default: prune.tau)")
    p.add_argument(
        "--epsilon", type=float, default=None, help="IntraAug margin below the means (default: prune.epsilon)"
    )
    add_io_args(p, "scored pairs (default: score.output)", "prune.output")

    p = commands.add(
        "rewrite",
        cmd_rewrite,
        "rewrite reports with an LLM or the rule-based rewriter (PairAug step 1)",
        "Write new reports for the real pairs of a dataset: inter (partly opposite findings), intra (the "
        "patient's findings change) and/or paraphrase (same meaning, AugText), with the back-end chosen in "
        "rewrite.backend (rules, openai, vllm, local). Every output passes quality checks or is recorded "
        "with the reason it failed. A rerun into the same output resumes: finished rows are kept and "
        "rows that errored are redone.",
    )
    add_config_args(p)
    add_io_args(p, "pair dataset to rewrite (default: the config's corpus)", "rewrite.output")

    p = commands.add(
        "generate",
        cmd_generate,
        "draw InterAug images and make IntraAug prompt-to-prompt edits (PairAug step 2)",
        "For each rewritten report: InterAug draws it with Stable Diffusion (a new patient); IntraAug edits "
        "the original report's image towards it with prompt-to-prompt attention control (the same patient). "
        "Runs on actor pools with generate.num_gpus GPUs each; writes PNGs and a pair manifest; a rerun "
        "skips finished images.",
    )
    add_config_args(p)
    add_io_args(p, "rewrite output to draw (default: rewrite.output)", "generate.output")
