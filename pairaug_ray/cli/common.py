"""What the command modules share: the config arguments, and how a job command runs.

Each module of this package registers its commands (`register(commands)`) beside their handlers.
A job command loads its config, then runs inside `job_terminal`, which sends library output to a
log file under the run's output folder and keeps the screen for stage lines, bars and results.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


class ExampleFormatter(argparse.HelpFormatter):
    """Wraps a command's description as prose, but keeps its indented lines (the examples) as
    written, so that they can be copied."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for line in text.splitlines():
            if line.startswith("  "):
                out.append(indent + line)
            else:
                out.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
        return "\n".join(out)


class Commands:
    """Adds subcommands to the `pairaug` parser: `commands.add(name, handler, help, description)`."""

    def __init__(self, sub: Any):
        self.sub = sub

    def add(
        self, name: str, fn: Handler, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        p = self.sub.add_parser(
            name, help=help, description=description or help, formatter_class=ExampleFormatter
        )
        p.set_defaults(fn=fn, command_name=name)
        return p


def add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
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


def add_io_args(p: argparse.ArgumentParser, input_help: str, output_key: str) -> None:
    """--input/--output of a stage command: run the stage between other datasets than the config's."""
    p.add_argument("--input", default=None, metavar="ROOT", help=input_help)
    p.add_argument("--output", default=None, metavar="ROOT", help=f"where to write (default: {output_key})")


def load(args: argparse.Namespace):
    from pairaug_ray.config import load_config

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "quick", False):  # `study --quick`: the config's quick settings, then --set on top
        cfg = load_config(args.config, [*cfg.study.quick, *args.overrides])
    return cfg


def in_terminal(args: argparse.Namespace, log_dir: str | None):
    """The job terminal for this command (see cli/terminal.py)."""
    from pairaug_ray.cli.terminal import job_terminal

    return job_terminal(log_dir, args.command_name, verbose=args.verbose, level=args.log_level)


def job(fn: Callable[[Any, argparse.Namespace], int]) -> Handler:
    """A handler of a config-driven job: fn(cfg, args), run with its library output in
    <run.output_dir>/logs/."""

    def handler(args: argparse.Namespace) -> int:
        from pairaug_ray import nodes, progress, storage

        cfg = load(args)
        with in_terminal(args, storage.join(cfg.run.output_dir, "logs")):
            # nodes.json beside the outputs: which nodes of which group came and went, for which stage.
            nodes.record_to(storage.join(cfg.run.output_dir, nodes.TIMELINE_FILE))
            # progress.json beside the outputs: what `pairaug status` and `pairaug submit` show.
            progress.report_to(
                storage.join(cfg.run.output_dir, progress.PROGRESS_FILE),
                run=cfg.run.name,
                command=args.command_name,
            )
            try:
                code = fn(cfg, args)
            except BaseException as e:
                progress.report_end(error=f"{type(e).__name__}: {e}"[:500])
                raise
            else:
                progress.report_end()
            finally:
                nodes.finish()
                progress.report_to(None)
            return code

    handler.__doc__ = fn.__doc__
    return handler
