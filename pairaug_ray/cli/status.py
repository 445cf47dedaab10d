"""`pairaug status OUTPUT_DIR`: where a run is, from the progress.json it keeps beside its outputs."""

from __future__ import annotations

import argparse
import sys
import time

from pairaug_ray.cli.common import Commands
from pairaug_ray.errors import UserError


def cmd_status(args: argparse.Namespace) -> int:
    from pairaug_ray import progress

    while True:
        doc = progress.read_progress(args.output_dir)
        if doc is None:
            if not args.follow:
                raise UserError(
                    f"{args.output_dir}: no progress.json (not a run's output folder, or its job has not started; "
                    "--follow waits for it)"
                )
            print(f"no progress at {args.output_dir} yet (progress.json is written once a job starts)")
        else:
            print(progress.format_progress(doc), flush=True)
            if not args.follow or doc.get("state") != "running":
                return {"finished": 0, "running": 0}.get(doc.get("state"), 1)
        time.sleep(args.interval)
        if sys.stdout.isatty():
            print()


def register(commands: Commands) -> None:
    p = commands.add(
        "status",
        cmd_status,
        "where a run is: its stage, rows done of the total, rows/s, ETA, errors (local or s3://)",
        "Print the progress a job keeps in OUTPUT_DIR/progress.json while it runs (rewritten every few "
        "seconds): the stage, rows done of the total, rows/s, ETA, errors so far, and the stages "
        "finished; then whether it finished or failed. Works for any run, local or on S3, wherever the "
        "job runs. Exit status: 0 running or finished, 1 failed or no progress yet.\n"
        "  pairaug status s3://bucket/pairaug/exp1 --follow",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="the run's run.output_dir (local or s3://)")
    p.add_argument("--follow", "-f", action="store_true", help="print again every --interval s until it ends")
    p.add_argument(
        "--interval", type=float, default=10.0, metavar="S", help="seconds between prints (default 10)"
    )
