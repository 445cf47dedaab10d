"""Data commands: `make-phantom`, `import-mimic`, `ingest`, `label`, `manifest show`."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from pairaug_ray.cli.common import Commands, in_terminal


def _logs(out: str) -> str:
    from pairaug_ray import storage

    return storage.join(out, "logs")


def cmd_make_phantom(args: argparse.Namespace) -> int:
    from pairaug_ray.config import PhantomCorpusConfig, RayConfig
    from pairaug_ray.corpora.phantom import build_phantom
    from pairaug_ray.pairs import summarize_root
    from pairaug_ray.runtime import init_ray

    cfg = PhantomCorpusConfig(
        patients=args.patients,
        seed=args.seed,
        size=args.size,
        studies_per_patient=tuple(args.studies),
        bit_depth=args.bit_depth,
        text=args.text,
    )
    with in_terminal(args, _logs(args.out)):
        init_ray(RayConfig(num_cpus=args.num_cpus))
        uri = build_phantom(cfg, args.out)
        s = summarize_root(args.out)
    print(f"wrote {s['rows']} pairs ({s['patients']} patients, splits {s['split']}) to {uri}")
    return 0


def cmd_import_mimic(args: argparse.Namespace) -> int:
    from pairaug_ray.config import MimicCorpusConfig, RayConfig
    from pairaug_ray.corpora.mimic import check_root, import_mimic
    from pairaug_ray.pairs import summarize_root
    from pairaug_ray.runtime import init_ray

    cfg = MimicCorpusConfig(
        root=args.root,
        reports_root=args.reports_root,
        text=args.text,
        labels=args.labels,
        views=tuple(args.views),
        limit=args.limit,
    )
    check_root(cfg)  # a wrong root is refused before anything is made
    with in_terminal(args, _logs(args.out)):
        init_ray(RayConfig(num_cpus=args.num_cpus))
        uri = import_mimic(cfg, args.out)
        s = summarize_root(args.out)
    print(f"wrote {s['rows']} pairs ({s['patients']} patients, status {s['status']}) to {uri}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from pairaug_ray import schema
    from pairaug_ray.config import RayConfig
    from pairaug_ray.pairs import manifest_columns
    from pairaug_ray.pipeline.ingest import ingest_job

    manifest_columns(args.input)  # no manifest there: refused before anything is made
    with in_terminal(args, _logs(args.out)):
        result = ingest_job(
            args.input,
            args.out,
            to_png=args.to_png,
            ray_cfg=RayConfig(num_cpus=args.num_cpus),
            show_errors=args.show_errors,
        )
    print(f"wrote {result['summary']['rows']} pairs to {args.out}; status {result['summary']['status']}")
    for row in result["errors"]:
        print(f"  {row[schema.PAIR_ID]}: {row[schema.ERROR]}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from pairaug_ray.text.label_io import label_file

    counts = label_file(args.input, args.out, column=args.column, id_column=args.id_column)
    total = counts.labelled + counts.errors
    where = f"their reasons are in the 'error' column of {args.out}"
    if not counts.labelled:
        what = f"all {total} rows were unusable ({where})" if total else "it holds no reports"
        print(f"error: {args.input}: nothing could be labelled: {what}", file=sys.stderr)
        return 2
    print(f"labelled {counts.labelled} of {total} reports -> {args.out}")
    if counts.errors:
        print(f"  {counts.errors} rows were unusable; {where}")
    return 0


def cmd_manifest_show(args: argparse.Namespace) -> int:
    from pairaug_ray import schema
    from pairaug_ray.pairs import SUMMARY_COLUMNS, checked_columns, read_info, summarize

    columns = [
        schema.PAIR_ID,
        schema.SPLIT,
        schema.ORIGIN,
        schema.STATUS,
        schema.IMAGE_URI,
        schema.REPORT,
        schema.ERROR,
        schema.STUDY_ID,
        *schema.LABEL_COLUMNS,
    ]
    # Checked first: a damaged file or a column outside the pair schema is an error naming it.
    table = checked_columns(args.root, list(dict.fromkeys([*columns, *SUMMARY_COLUMNS])))
    print(json.dumps({"dataset": read_info(args.root), "summary": summarize(table)}, indent=2, default=str))
    head = table.select(columns).slice(0, max(args.head, args.grid_rows if args.grid else 0)).to_pylist()
    if args.grid:
        from pairaug_ray.viz import pair_grid

        print(f"image grid: {pair_grid(head[: args.grid_rows], args.grid)}")
    for row in head[: args.head]:
        print(
            f"\n{row[schema.PAIR_ID]}  {row[schema.SPLIT]}  {row[schema.ORIGIN]}  {row[schema.STATUS]}  {row[schema.IMAGE_URI]}"
        )
        text = row[schema.REPORT] or f"(no report: {row[schema.ERROR]})"
        print(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="  "))
    return 0


def register(commands: Commands) -> None:
    p = commands.add(
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

    p = commands.add(
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

    p = commands.add(
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

    p = commands.add(
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

    p = commands.add("manifest", lambda a: a.manifest_parser.print_help() or 2, "inspect a pair dataset")
    p.set_defaults(manifest_parser=p)
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION")
    show = msub.add_parser(
        "show",
        help="print counts, label prevalence and the first rows of a pair dataset",
        description="Print what wrote a pair dataset (dataset.json), its counts (rows, patients, studies, "
        "splits, origins, statuses, label prevalence) and its first rows; optionally an image grid.",
    )
    show.set_defaults(fn=cmd_manifest_show, command_name="manifest show")
    show.add_argument("root", metavar="ROOT", help="dataset root (local or s3://)")
    show.add_argument("--head", type=int, default=3, metavar="N", help="rows to print")
    show.add_argument(
        "--grid", metavar="PNG", default=None, help="also save an image grid of the first pairs"
    )
    show.add_argument("--grid-rows", type=int, default=8, metavar="N", help="pairs in the grid")
