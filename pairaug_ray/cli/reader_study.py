"""`pairaug reader-study create | serve | report | reader add | reader revoke | reader list`:
PairAug's Visual Turing Test, taken by clinicians in a browser (docs/reader-study.md)."""

from __future__ import annotations

import argparse
import os

from pairaug_ray.cli.common import Commands, add_config_args, load

DEFAULT_PORT = 8800


def _db_url(args: argparse.Namespace) -> str | None:
    """The database URL: from the environment variable --database-url-env names (a PostgreSQL URL
    carries a password, so it is never a command-line argument), else SQLite in the study's folder."""
    from pairaug_ray.errors import UserError

    name = getattr(args, "database_url_env", None)
    if not name:
        return None
    url = os.environ.get(name)
    if not url:
        raise UserError(f"--database-url-env names {name}, which is not set in the environment")
    return url


def _local_study(path: str) -> str:
    from pairaug_ray import storage
    from pairaug_ray.errors import UserError

    if not storage.is_local(path):
        raise UserError(f"a reader study lives in a local folder (its answers' database too), not {path}")
    return path


def _drawn_study(path: str) -> str:
    """The study's folder, refused (one line, nothing created) unless a study was drawn there."""
    from pairaug_ray.reader_study.report import load_study

    load_study(_local_study(path))
    return path


def _free_address(host: str, port: int) -> None:
    """Refuse, before saying anything, an address another server holds (or this host lacks)."""
    import socket

    from pairaug_ray.errors import UserError

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror}): choose another --port or --host"
        ) from None


def _link(args: argparse.Namespace, token: str) -> str:
    return f"{args.url.rstrip('/')}/r/{token}"


def cmd_create(args: argparse.Namespace) -> int:
    from pairaug_ray import storage
    from pairaug_ray.errors import UserError
    from pairaug_ray.pipeline.common import real_pairs_root
    from pairaug_ray.reader_study import db
    from pairaug_ray.reader_study.draw import draw_study

    cfg = load(args)
    out = _local_study(args.out or storage.join(cfg.run.output_dir, "reader-study"))
    if storage.exists(storage.join(out, "study.json")):
        raise UserError(
            f"{out} holds a drawn study already (its answers refer to its cases): choose another --out, "
            "or remove the folder to draw anew"
        )
    study = draw_study(
        real_pairs_root(cfg),
        cfg.synthetic_dir(),
        out,
        cases_per_task=args.cases_per_task,
        seed=args.seed,
        include_pruned=args.include_pruned,
        image_size=args.image_size,
        tasks=tuple(args.tasks),
        match_resolution=not args.keep_resolution,
    )
    engine = db.open_study_db(_db_url(args) or db.default_url(out))
    db.register_cases(engine, study["cases"])
    by_task = {t: sum(c["task"] == t for c in study["cases"]) for t in study["tasks"]}
    print(
        f"drew {len(study['cases'])} cases ({', '.join(f'{t} {n}' for t, n in by_task.items())}) into {out}"
    )
    markers = study["blinding"]["report_markers"]
    if markers:
        words = ", ".join(f"{m['word']} ({m['more_in']})" for m in markers[:8])
        print(f"check before readers start: words far more frequent in one origin's reports: {words}")
    for name in args.reader:
        print(f"reader {name}: {_link(args, db.add_reader(engine, name))}")
    print(f"next: pairaug reader-study serve {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pairaug_ray.reader_study import db
    from pairaug_ray.reader_study.app import create_app

    study_dir = _drawn_study(args.study)
    _free_address(args.host, args.port)
    app = create_app(study_dir, _db_url(args))
    engine = db.open_study_db(_db_url(args) or db.default_url(study_dir))
    readers = db.list_readers(engine)
    print(
        f"reader study {study_dir}: {len(readers)} readers "
        f"({sum(r['revoked_at'] is None for r in readers)} active); serving on http://{args.host}:{args.port}"
    )
    print("readers open their personal links; Ctrl-C stops (answers are saved as they are given)")
    # The access log would print every request's path, which holds the reader's token: off.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pairaug_ray.reader_study.report import format_report, write_report

    study_dir = _drawn_study(args.study)
    report = write_report(study_dir, _db_url(args), quorum=args.quorum)
    print(format_report(report))
    print(f"wrote {Path(study_dir) / 'reader_study.json'} and {Path(study_dir) / 'report.html'}")
    return 0


def _engine(args: argparse.Namespace):
    from pairaug_ray.reader_study import db

    study_dir = _drawn_study(args.study)
    return db.open_study_db(_db_url(args) or db.default_url(study_dir))


def cmd_reader_add(args: argparse.Namespace) -> int:
    from pairaug_ray.reader_study import db

    token = db.add_reader(_engine(args), args.name)
    print(f"reader {args.name}: {_link(args, token)}")
    print("send the link to the reader alone: it is their key (shown once; revoke it if it leaks)")
    return 0


def cmd_reader_revoke(args: argparse.Namespace) -> int:
    from pairaug_ray.reader_study import db

    db.revoke_reader(_engine(args), args.name)
    print(f"revoked {args.name}: their link opens nothing now; their answers stay in the study")
    return 0


def cmd_reader_list(args: argparse.Namespace) -> int:
    from pairaug_ray.reader_study import db

    for r in db.list_readers(_engine(args)):
        state = "revoked" if r["revoked_at"] else "active"
        print(f"{r['name']:<20} {state:<8} {r['answered']} answered")
    return 0


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", metavar="STUDY_DIR", help="the study's folder (reader-study create --out)")
    _database_arg(p)


def _database_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url-env",
        metavar="NAME",
        help="environment variable holding the answers' database URL, e.g. "
        "postgresql+psycopg://user:pass@host/db (default: SQLite in the study's folder)",
    )


def _url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=f"http://127.0.0.1:{DEFAULT_PORT}",
        help="the address readers reach the server at, for their links (default %(default)s)",
    )


def register(commands: Commands) -> None:
    p = commands.add(
        "reader-study",
        lambda a: a.study_parser.print_help() or 2,
        "PairAug's Visual Turing Test for clinicians: draw, serve in a browser, report, prune",
        "Radiologists judge the pairs: real or synthetic images (task 1) and reports (task 2), and "
        "how well synthetic pairs match (task 3). Answers go to a database; the report gives "
        "accuracy, agreement and how pruning scores rank rejected pairs; prune.reader_verdicts "
        "feeds the verdicts back into pruning.\n"
        "examples:\n"
        "  pairaug reader-study create --config configs/demo.yaml --reader alice --reader bob\n"
        "  pairaug reader-study serve runs/demo/reader-study\n"
        "  pairaug reader-study report runs/demo/reader-study\n"
        "  pairaug prune --config configs/demo.yaml --set prune.reader_verdicts=runs/demo/reader-study",
    )
    p.set_defaults(study_parser=p)
    sub = p.add_subparsers(dest="study_command", metavar="ACTION")

    c = sub.add_parser(
        "create",
        help="draw a blinded study from an augment run's outputs",
        description="Draw the three tasks from the run's real pairs and pruned synthetic pairs "
        "(seeded; InterAug and IntraAug both; real and synthetic balanced in tasks 1-2) into a "
        "folder: study.json (with the truth, never served), media/ (blinded images), answers.sqlite.",
    )
    add_config_args(c)
    c.add_argument("--out", help="the study's folder (default <run.output_dir>/reader-study)")
    c.add_argument("--cases-per-task", type=int, default=50, help="default %(default)s, as PairAug")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--include-pruned",
        action="store_true",
        help="show pruned synthetic pairs beside kept ones, half and half (to see if pruning agrees with readers)",
    )
    c.add_argument("--image-size", type=int, default=512, help="pixels per side every image is shown at")
    c.add_argument(
        "--keep-resolution",
        action="store_true",
        help="do not bring every image down to the smallest native size of the study first (by default "
        "it is, so that sharpness does not tell a generator's upsampled images from real ones)",
    )
    c.add_argument(
        "--tasks", nargs="+", default=["images", "reports", "pairs"], choices=["images", "reports", "pairs"]
    )
    c.add_argument("--reader", action="append", default=[], metavar="NAME", help="add a reader (repeatable)")
    _database_arg(c)
    _url_arg(c)
    c.set_defaults(fn=cmd_create, command_name="reader-study create")

    s = sub.add_parser(
        "serve",
        help="serve the study to its readers (127.0.0.1 unless --host says otherwise)",
        description="Start the web app. Each reader opens their personal link; one case at a time, "
        "answers by key or click, resumable. Binds 127.0.0.1 by default: on a cluster reach it "
        "with kubectl port-forward or an ingress the operator adds.",
    )
    _study_args(s)
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default %(default)s)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    s.set_defaults(fn=cmd_serve, command_name="reader-study serve")

    r = sub.add_parser(
        "report",
        help="score the answers: accuracy, agreement, pruning-score AUC; reader_study.json and report.html",
    )
    _study_args(r)
    r.add_argument(
        "--quorum",
        choices=["any", "majority", "all"],
        default="any",
        help="how many readers must rate a pair poor for it to count as rejected (default %(default)s)",
    )
    r.set_defaults(fn=cmd_report, command_name="reader-study report")

    rd = sub.add_parser("reader", help="add, revoke or list readers")
    rd.set_defaults(fn=lambda a: rd.print_help() or 2, command_name="reader-study reader")
    rsub = rd.add_subparsers(dest="reader_command", metavar="ACTION")
    add = rsub.add_parser("add", help="add a reader and print their personal link (shown once)")
    _study_args(add)
    add.add_argument("name", metavar="NAME")
    _url_arg(add)
    add.set_defaults(fn=cmd_reader_add, command_name="reader-study reader add")
    rev = rsub.add_parser("revoke", help="revoke a reader's link (their answers stay)")
    _study_args(rev)
    rev.add_argument("name", metavar="NAME")
    rev.set_defaults(fn=cmd_reader_revoke, command_name="reader-study reader revoke")
    ls = rsub.add_parser("list", help="readers, whether active, how many cases each answered")
    _study_args(ls)
    ls.set_defaults(fn=cmd_reader_list, command_name="reader-study reader list")
