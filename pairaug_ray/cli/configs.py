"""`pairaug config show`: the validated config with every default filled in."""

from __future__ import annotations

import argparse

from pairaug_ray.cli.common import Commands, add_config_args, load


def cmd_config_show(args: argparse.Namespace) -> int:
    from pairaug_ray.config import dump_config

    print(dump_config(load(args)), end="")
    return 0


def register(commands: Commands) -> None:
    p = commands.add("config", lambda a: a.config_parser.print_help() or 2, "show or check a job config")
    p.set_defaults(config_parser=p)
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    show = sub.add_parser(
        "show",
        help="print the validated config with every default filled in",
        description="Load a job config (with --set overrides), validate it and print it with every default "
        "filled in, so you see exactly what a job would run with. Invalid keys exit 2 with the key path.",
    )
    show.set_defaults(fn=cmd_config_show, command_name="config show")
    add_config_args(show)
