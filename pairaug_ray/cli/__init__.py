"""`pairaug`: the command line. Each command parses its arguments, builds a config, calls one job.

Each module here registers its commands beside their handlers: augment.py (augment, run and the
stages one by one), training.py (train, evaluate, metrics, compare), data.py (corpora and pair
datasets), models.py, configs.py; `submit` lives in pairaug_ray/submit.py. Heavy imports (Ray,
torch, diffusers) happen inside the handlers, so `--help` stays instant.

Errors a person can fix derive from `pairaug_ray.errors.UserError`: they are caught here, once, and
print one line (exit 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from pairaug_ray import __version__
from pairaug_ray.cli import augment, configs, data, models, reader_study, status, training
from pairaug_ray.cli.common import Commands

EPILOG = """\
examples:
  pairaug augment --config configs/demo.yaml          # the whole PairAug job on the phantom corpus
  pairaug prune --config configs/demo.yaml --tau 0.2  # re-prune stored scores, no regeneration
  pairaug train --config configs/demo.yaml            # pretrain the CLIP on real + synthetic pairs
  pairaug evaluate --config configs/demo.yaml         # zero-shot AUC/ACC/F1 with CIs, report.html
  pairaug run --config configs/demo.yaml              # augment, train, evaluate (what `make demo` runs)
  pairaug metrics --labels labels.csv --scores probs.csv   # the same protocol for any model
  pairaug submit --address http://127.0.0.1:8265 -- pairaug augment --config s3://b/job.yaml
  pairaug status s3://b/runs/exp1 --follow            # stage, rows done, rows/s, ETA of any run
  pairaug make-phantom runs/phantom --patients 200    # just the built-in corpus
  pairaug make-tiny-models runs/models                # tiny random-weight SD and CLIP
  pairaug manifest show runs/phantom                  # what is in a pair dataset
  pairaug label reports.txt --out labels.csv          # CheXpert-style labels for your reports
  pairaug config show --config configs/demo.yaml --set corpus.phantom.patients=10
  pairaug reader-study create --config configs/demo.yaml --reader alice   # clinicians judge the pairs

Jobs print one line per stage and a progress bar; Ray's and the libraries' own output goes to a log
file under the run's output folder (its path is printed first; --verbose shows it all instead).
Paths may be local or s3:// URIs; S3 endpoint and credentials come from the standard AWS
environment variables. Docs: README.md and docs/.
"""


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
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much the log file (or, with --verbose, the terminal) records of the project's own logs",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print Ray's and the libraries' output on the terminal instead of into the log file",
    )
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    augment.register_jobs(commands)
    training.register(commands)
    training.register_study(commands)

    from pairaug_ray.submit import add_submit_arguments, cmd_submit

    add_submit_arguments(
        commands.add(
            "submit",
            cmd_submit,
            "run a pipeline command as a Ray job or RayJob on a cluster and follow it to its end",
        )
    )
    augment.register_stages(commands)
    status.register(commands)
    configs.register(commands)
    data.register(commands)
    models.register(commands)
    reader_study.register(commands)
    return parser


def command_names(parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Every runnable command, nested ones as 'manifest show' (for the --help test and docs)."""
    parser = parser or build_parser()
    names: list[str] = []

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    nested = any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
                    if nested:
                        walk(child, f"{prefix}{name} ")
                    else:
                        names.append(f"{prefix}{name}")

    walk(parser, "")
    return names


def main(argv: list[str] | None = None) -> int:
    from pairaug_ray.cli.terminal import configure_logging
    from pairaug_ray.errors import UserError

    args = build_parser().parse_args(argv)
    # The terminal shows the project's warnings and up; a job command adds its log file (cli/terminal.py).
    configure_logging("WARNING" if not args.verbose else args.log_level)
    try:
        return int(args.fn(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno is None and not isinstance(e, FileNotFoundError | PermissionError):
            return _unexpected(e, args)
        # A path or a permission the user gave: missing, not readable, a folder where a file belongs.
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        # Readers name the file themselves; this is the net under any that does not.
        print(
            f"error: an input is not UTF-8 text ({e.reason}, byte {e.start}); save it as UTF-8",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes from it", file=sys.stderr)
        return 130
    except Exception as e:
        from pydantic import ValidationError

        if isinstance(e, ValidationError):  # a model built from command-line arguments
            print(f"error: {_argument_error(e)}", file=sys.stderr)
            return 2
        return _unexpected(e, args)


def _os_error(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {what}" if e.filename else what


def _argument_error(e) -> str:
    """pydantic's errors for models built from arguments, as the options the user typed."""
    parts = []
    for err in e.errors():
        field = ".".join(str(x) for x in err["loc"])
        option = "--" + field.replace("_", "-") if len(err["loc"]) == 1 else field
        parts.append(f"{option} {err.get('input')!r}: {err['msg'][0].lower() + err['msg'][1:]}")
    return "; ".join(parts)


def _unexpected(e: BaseException, args: argparse.Namespace) -> int:
    """A bug, not bad input: one line, exit 1; the traceback with --log-level DEBUG (and in the log)."""
    import logging
    import traceback

    logging.getLogger("pairaug_ray").debug("unexpected error", exc_info=e)  # the log file, not the screen
    if getattr(args, "log_level", None) == "DEBUG":
        traceback.print_exception(e, file=sys.stderr)
    message = " ".join(str(e).split())[:300]
    print(
        f"error: {type(e).__name__}: {message} (unexpected: please report it; --log-level DEBUG prints the traceback)",
        file=sys.stderr,
    )
    return 1
