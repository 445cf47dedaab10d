"""Bad input to every command that reads user files or arguments: a generated table of malformed
inputs, each of which must end with exit code 0 (input that is odd but valid, e.g. a BOM or CRLF
line ends) or 2 with one line that names the file, row, column or key, never a traceback and
never another exit code, and must leave earlier outputs as they were.

The cases are made here, per command, from the same malformations (docs/reliability.md lists
them and what failed before the fixes): empty files, bytes that are not UTF-8, UTF-16 and
UTF-8-with-BOM text, CRLF line ends, a 10 MB single line, truncated Parquet, a manifest missing a
required column or with a column of the wrong type, duplicate ids, NaN and infinite scores,
negative and zero counts, paths that do not exist or are directories, an unreachable s3://
endpoint, YAML that is not a mapping or not YAML.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairaug_ray.cli import main

REPO = Path(__file__).resolve().parents[1]
TEN_MB = 10 * 1024 * 1024
REPORT = "Heart size is normal. No pleural effusion. Mild basal atelectasis."


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes its files under the folder, returns argv
    codes: tuple[int, ...] = (2,)  # allowed exit codes
    says: tuple[str, ...] = ()  # what the error line must contain (after substituting {tmp})
    env: tuple[tuple[str, str], ...] = ()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# --- the malformations, applied to each command's inputs ---------------------------------------------


def label_cases() -> list[Case]:
    def run(name: str, content: bytes | str, suffix: str = "txt", extra: tuple[str, ...] = ()):
        return lambda d: [
            "label",
            str(_write(d / f"in.{suffix}", content)),
            "--out",
            str(d / "out.csv"),
            *extra,
        ]

    good_csv = f"id,report\n1,{REPORT}\n2,{REPORT}\n"
    return [
        # Nothing labelled is an error (exit 2) that says why and where the rows' reasons are.
        Case(
            "label: empty text file",
            run("e", b""),
            says=("in.txt", "nothing could be labelled", "no reports"),
        ),
        Case("label: empty csv", run("e", b"", "csv"), says=("in.csv", "no column 'report'")),
        Case(
            "label: header-only csv",
            run("h", b"id,report\n", "csv"),
            says=("in.csv", "nothing could be labelled"),
        ),
        Case(
            "label: not UTF-8 (a bad line)",
            run("b", f"{REPORT}\n".encode() + b"\xff\xfe\x80 x\n"),
            codes=(0,),
        ),
        Case("label: all binary", run("bin", bytes(range(256)) * 40), codes=(0,)),
        Case(
            "label: UTF-16 with BOM",
            run("u16", codecs.BOM_UTF16_LE + f"{REPORT}\n".encode("utf-16-le")),
            codes=(0,),
        ),
        Case("label: UTF-8 BOM csv", run("bom", codecs.BOM_UTF8 + good_csv.encode(), "csv"), codes=(0,)),
        Case("label: CRLF csv", run("crlf", good_csv.replace("\n", "\r\n"), "csv"), codes=(0,)),
        Case(
            "label: 10 MB single line",
            run("big", "x " * (TEN_MB // 2)),
            says=("in.txt", "all 1 rows were unusable", "'error' column of"),
        ),
        Case(
            "label: jsonl of garbage",
            run("j", b'{not json\n[1,2]\n"s"\n', "jsonl"),
            says=("in.jsonl", "all 3 rows were unusable"),
        ),
        Case(
            "label: csv without the column",
            run("c", "a,b\n1,2\n", "csv"),
            says=("in.csv", "no column 'report'"),
        ),
        Case("label: csv ragged quotes", run("q", 'id,report\n1,"unterminated\n2,x\n', "csv"), codes=(0, 2)),
        Case(
            "label: missing input",
            lambda d: ["label", str(d / "nope.txt"), "--out", str(d / "o.csv")],
            says=("nope.txt",),
        ),
        Case("label: input is a folder", lambda d: ["label", str(d), "--out", str(d / "o.csv")], says=()),
        Case(
            "label: output is a folder",
            lambda d: ["label", str(_write(d / "in.txt", REPORT)), "--out", str(d)],
            says=(),
        ),
    ]


def metrics_cases() -> list[Case]:
    labels = "image_id,Atelectasis\na,1\nb,0\nc,1\nd,0\n"
    scores = "image_id,Atelectasis\na,0.9\nb,0.1\nc,0.7\nd,0.2\n"

    def run(lab: bytes | str = labels, sco: bytes | str = scores):
        return lambda d: [
            "metrics",
            "--labels",
            str(_write(d / "labels.csv", lab)),
            "--scores",
            str(_write(d / "scores.csv", sco)),
            "--bootstrap",
            "50",
        ]

    two = "image_id,Atelectasis,Edema\na,1,0\nb,0,1\nc,1,1\nd,0,0\n"
    return [
        Case("metrics: valid", run(), codes=(0,)),
        Case(
            "metrics: labels name a finding the scores lack",
            run(lab=two),
            says=("scores.csv", "no scores for the finding(s) 'Edema'", "--allow-missing"),
        ),
        Case(
            "metrics: the same, with --allow-missing",
            lambda d: [*run(lab=two)(d), "--allow-missing"],
            codes=(0,),
        ),
        Case("metrics: empty labels file", run(lab=b""), says=("labels.csv",)),
        Case(
            "metrics: labels not UTF-8",
            run(lab=b"image_id,Atelectasis\n\xff\xfe,1\n"),
            says=("labels.csv", "UTF-8"),
        ),
        Case(
            "metrics: duplicate id",
            run(lab=labels + "a,0\n"),
            says=("labels.csv", "id 'a' appears more than once"),
        ),
        Case(
            "metrics: duplicate numeric id",
            run(lab="image_id,Atelectasis\n1,1\n1,0\n2,0\n", sco="image_id,Atelectasis\n1,0.3\n2,0.5\n"),
            says=("id '1' appears more than once",),
        ),
        Case(
            "metrics: NaN score",
            run(sco=scores.replace("0.7", "nan")),
            says=("scores.csv", "id 'c'", "not a number"),
        ),
        Case(
            "metrics: infinite score",
            run(sco=scores.replace("0.7", "inf")),
            says=("scores.csv", "id 'c'", "not a finite number"),
        ),
        Case("metrics: text score", run(sco=scores.replace("0.7", "high")), says=("scores.csv", "id 'c'")),
        Case("metrics: no id column", run(sco="id,Atelectasis\na,0.1\n"), says=("scores.csv", "image_id")),
        Case(
            "metrics: missing file",
            lambda d: ["metrics", "--labels", str(d / "x.csv"), "--scores", str(d / "y.csv")],
            says=("x.csv",),
        ),
        Case(
            "metrics: 10 MB line",
            run(lab="image_id,Atelectasis\n" + "a" * TEN_MB + ",1\n"),
            codes=(2,),
            says=("scores.csv",),
        ),
        Case("metrics: zero bootstrap", lambda d: [*run()(d)[:-1], "0"], says=("bootstrap",)),
        Case("metrics: negative bootstrap", lambda d: [*run()(d)[:-1], "-5"], says=("bootstrap",)),
    ]


def _manifest(d: Path, table: pa.Table, name: str = "ds") -> Path:
    root = d / name
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "manifest" / "part-0.parquet")
    return root


def _good_table() -> pa.Table:
    from pairaug_ray import schema

    rows = [
        {
            schema.PAIR_ID: f"p{i}",
            schema.IMAGE_URI: f"images/{i}.png",
            schema.REPORT: REPORT,
            schema.SPLIT: "train",
            schema.ORIGIN: "real",
            schema.STATUS: "ok",
        }
        for i in range(3)
    ]
    return schema.rows_to_table(rows)


def manifest_cases() -> list[Case]:
    from pairaug_ray import schema

    def truncated(d: Path) -> list[str]:
        root = _manifest(d, _good_table())
        f = root / "manifest" / "part-0.parquet"
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
        return ["manifest", "show", str(root)]

    def missing_column(d: Path) -> list[str]:
        return ["manifest", "show", str(_manifest(d, _good_table().drop_columns([schema.PAIR_ID])))]

    def wrong_type(d: Path) -> list[str]:
        t = _good_table()
        t = t.set_column(t.schema.get_field_index(schema.STATUS), schema.STATUS, pa.array([1, 2, 3]))
        return ["manifest", "show", str(_manifest(d, t))]

    return [
        Case("manifest: valid", lambda d: ["manifest", "show", str(_manifest(d, _good_table()))], codes=(0,)),
        Case("manifest: truncated parquet", truncated, says=("part-0.parquet",)),
        Case("manifest: missing pair_id column", missing_column, says=("pair_id",)),
        Case("manifest: status of the wrong type", wrong_type, says=("status",)),
        Case("manifest: not a folder", lambda d: ["manifest", "show", str(d / "nothing")], says=("nothing",)),
        Case(
            "manifest: empty folder",
            lambda d: ["manifest", "show", str((d / "empty").mkdir() or d / "empty")],
            says=("empty",),
        ),
    ]


def config_cases() -> list[Case]:
    def show(content: bytes | str, *sets: str):
        return lambda d: [
            "config",
            "show",
            "--config",
            str(_write(d / "job.yaml", content)),
            *[a for s in sets for a in ("--set", s)],
        ]

    demo = (REPO / "configs" / "demo.yaml").read_text()
    return [
        Case("config: valid", show(demo), codes=(0,)),
        Case("config: BOM and CRLF", show(codecs.BOM_UTF8 + demo.replace("\n", "\r\n").encode()), codes=(0,)),
        Case("config: empty", show(b""), says=("job.yaml",)),
        Case("config: a list, not a mapping", show("- a\n- b\n"), says=("job.yaml", "mapping")),
        Case("config: not YAML", show("run: [unclosed\n"), says=("job.yaml",)),
        Case("config: not UTF-8", show(b"run:\n  name: \xff\xfe\n"), says=("job.yaml", "UTF-8")),
        Case("config: 10 MB line", show("run:\n  name: " + "x" * TEN_MB + "\n"), codes=(0, 2)),
        Case("config: unknown key", show("run:\n  nmae: x\n"), says=("run.nmae",)),
        Case(
            "config: negative count",
            show("corpus:\n  phantom:\n    patients: -3\n"),
            says=("corpus.phantom.patients",),
        ),
        Case("config: zero count", show("train:\n  steps: 0\n"), says=("train.steps",)),
        Case("config: --set without =", show(demo, "corpus.phantom.patients"), says=("--set",)),
        Case(
            "config: --set unknown key",
            show(demo, "corpus.phantom.patiens=3"),
            says=("corpus.phantom.patiens",),
        ),
        Case(
            "config: missing file",
            lambda d: ["config", "show", "--config", str(d / "nope.yaml")],
            says=("nope.yaml",),
        ),
        Case("config: a folder", lambda d: ["config", "show", "--config", str(d)], says=()),
        Case(
            "config: unreachable s3",
            lambda d: ["config", "show", "--config", "s3://pairaug-fuzz/job.yaml"],
            says=("s3://pairaug-fuzz/job.yaml",),
            env=(
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("AWS_ACCESS_KEY_ID", "x"),
                ("AWS_SECRET_ACCESS_KEY", "y"),
                ("AWS_MAX_ATTEMPTS", "1"),
                ("AWS_RETRY_MODE", "standard"),
            ),
        ),
        Case(
            "run: config a list",
            lambda d: ["run", "--config", str(_write(d / "j.yaml", "[1]"))],
            says=("j.yaml",),
        ),
        Case(
            "train: config not UTF-8",
            lambda d: ["train", "--config", str(_write(d / "j.yaml", b"\xff"))],
            says=("j.yaml",),
        ),
    ]


def other_cases() -> list[Case]:
    return [
        Case(
            "make-phantom: negative patients",
            lambda d: ["make-phantom", str(d / "ph"), "--patients", "-3"],
            says=("--patients",),
        ),
        Case(
            "make-phantom: zero patients",
            lambda d: ["make-phantom", str(d / "ph"), "--patients", "0"],
            says=("--patients",),
        ),
        Case(
            "make-phantom: tiny size",
            lambda d: ["make-phantom", str(d / "ph"), "--size", "8"],
            says=("--size",),
        ),
        Case("status: no run there", lambda d: ["status", str(d / "nothing")], says=("nothing",)),
        *[
            Case(
                f"{' '.join(a for a in argv[:3] if a != 'STUDY')}: no study there",
                lambda d, argv=argv: [a.replace("STUDY", str(d / "nostudy")) for a in argv],
                says=("nostudy", "reader-study create"),
            )
            for argv in (
                ["reader-study", "serve", "STUDY"],
                ["reader-study", "report", "STUDY"],
                ["reader-study", "reader", "add", "STUDY", "ann"],
                ["reader-study", "reader", "revoke", "STUDY", "ann"],
                ["reader-study", "reader", "list", "STUDY"],
            )
        ],
        Case(
            "status: corrupt progress.json",
            lambda d: ["status", str(_write(d / "run" / "progress.json", "{oops").parent)],
            says=("progress.json",),
        ),
        Case(
            "status: progress.json a list",
            lambda d: ["status", str(_write(d / "r2" / "progress.json", "[1]").parent)],
            says=("progress.json",),
        ),
        Case(
            "compare: not JSON",
            lambda d: ["compare", str(_write(d / "a" / "metrics.json", "{x"))],
            says=("metrics.json",),
        ),
        Case(
            "compare: wrong structure",
            lambda d: ["compare", str(_write(d / "b" / "metrics.json", json.dumps({"x": 1})))],
            says=("metrics.json", "datasets"),
        ),
        Case("compare: missing", lambda d: ["compare", str(d / "zz")], says=("zz",)),
        Case(
            "make-tiny-models: output is a file",
            lambda d: ["make-tiny-models", str(_write(d / "f", "x"))],
            says=("f",),
        ),
        Case(
            "import-mimic: a root that is not MIMIC-CXR-JPG",
            lambda d: [
                "import-mimic",
                str(_write(d / "notmimic" / "readme.txt", "x").parent),
                str(d / "imported"),
            ],
            says=("notmimic",),
        ),
        Case(
            "import-mimic: a root that does not exist",
            lambda d: ["import-mimic", str(d / "nowhere"), str(d / "imported")],
            says=("nowhere",),
        ),
        Case(
            "submit: nowhere to submit",
            lambda d: ["submit", "--", "pairaug", "augment"],
            says=("--address", "--rayjob"),
        ),
        Case(
            "submit: a dashboard that does not answer",
            lambda d: ["submit", "--address", "http://127.0.0.1:9", "--", "pairaug", "augment"],
            says=("cannot use the Ray job API at http://127.0.0.1:9",),
        ),
        Case(
            "submit: a RayJob without a cluster or template",
            lambda d: ["submit", "--rayjob", "--", "pairaug", "augment"],
            says=("--cluster", "--template"),
        ),
        Case(
            "study: an arm that does not exist",
            lambda d: [
                "study",
                "-c",
                str(REPO / "configs" / "phantom-study.yaml"),
                "--set",
                "study.arms=[nope]",
            ],
            says=("study.arms.0", "'nope'"),
        ),
        Case(
            "finetune-t2i: a negative image size",
            lambda d: [
                "finetune-t2i",
                "-c",
                str(REPO / "configs" / "demo.yaml"),
                "--set",
                "finetune_t2i.image_size=-4",
            ],
            says=("finetune_t2i.image_size",),
        ),
        Case(
            "evaluate: a dataset kind that does not exist",
            lambda d: [
                "evaluate",
                "-c",
                str(REPO / "configs" / "demo.yaml"),
                "--set",
                "evaluate.datasets=[{kind: xray}]",
            ],
            says=("evaluate.datasets",),
        ),
        Case(
            "ingest: input that does not exist",
            lambda d: ["ingest", str(d / "nothing.parquet"), str(d / "ingested")],
            says=("nothing.parquet",),
        ),
    ]


CASES = [*label_cases(), *metrics_cases(), *manifest_cases(), *config_cases(), *other_cases()]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_a_clear_error(case, tmp_path, capsys, monkeypatch):
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    # An earlier output beside the inputs, which no failing command may touch.
    sentinel = _write(tmp_path / "o.csv", "earlier output\n")
    argv = case.make(tmp_path)
    before = set(tmp_path.rglob("*"))
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out, f"{case.name}: a traceback\n{err[-3000:]}"
    assert code in case.codes, f"{case.name}: exit {code}, expected {case.codes}\nstderr: {err[-2000:]}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("error: "), f"{case.name}: {err!r}"
        message = lines[-1]
        assert len(lines) == 1, f"{case.name}: more than one line:\n{err}"
        for needle in case.says:
            assert needle in message, f"{case.name}: {needle!r} not in {message!r}"
        assert "np.int64" not in message and "https://errors.pydantic.dev" not in message
        if "out.csv" not in " ".join(argv):
            assert sentinel.read_text() == "earlier output\n"
        # A refused command leaves nothing behind: no output folder, no logs/ (label's --out file with
        # each row's reason is its answer, and is allowed).
        left = sorted(
            str(p.relative_to(tmp_path)) for p in set(tmp_path.rglob("*")) - before if p.name != "out.csv"
        )
        assert not left, f"{case.name}: left behind {left}"


def test_a_failing_label_run_leaves_the_earlier_output(tmp_path, capsys):
    out = _write(tmp_path / "labels.csv", "the labels of yesterday\n")
    bad = _write(tmp_path / "reports.csv", "id,text\n1,x\n")  # no 'report' column
    assert main(["label", str(bad), "--out", str(out)]) == 2
    assert out.read_text() == "the labels of yesterday\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("labels.csv.")]  # no partial file left


def test_a_traceback_only_under_debug(capsys, monkeypatch):
    """An unexpected error (a bug) is one line and exit 1; --log-level DEBUG shows its traceback."""
    import pairaug_ray.cli as cli

    def boom(args):
        raise RuntimeError("a bug")

    real_parser = cli.build_parser

    def parser_whose_command_fails():
        parser = real_parser()
        parse = parser.parse_args

        def parse_args(argv=None):
            args = parse(argv)
            args.fn = boom  # any command's handler, failing as a bug would
            return args

        parser.parse_args = parse_args
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_whose_command_fails)
    argv = ["config", "show", "--config", str(REPO / "configs" / "demo.yaml")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError: a bug" in err and "--log-level DEBUG" in err
    assert main(["--log-level", "DEBUG", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err
