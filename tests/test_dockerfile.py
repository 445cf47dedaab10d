"""The container image recipe (Dockerfile, .dockerignore), checked without a Docker engine.

hadolint lints the Dockerfile; the checks below read its instructions (base image = the Ray and
Python versions CI tests, GPU variant; a non-root user; no secrets in ENV/ARG; every dependency of
pyproject.toml pinned), and the slow test runs its install steps in a clean virtual environment: the
pinned dependencies are resolved with `pip --dry-run`, and the package step runs for real in a copy
of the build context that .dockerignore lets through.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SECRETISH = re.compile(r"(^|_)(API_?KEY|KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.I)


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        piece = stripped.removesuffix("\\").strip()
        current = f"{current} {piece}" if current else piece
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def pins() -> dict[str, Requirement]:
    """The requirements of the Dockerfile's dependency command (the first command of the RUN with
    `==` pins; the `--no-deps` installs after it are data wheels), by name."""
    (run,) = [a for k, a in instructions() if k == "RUN" and "==" in a]
    first = run.split("&&")[0]
    reqs = [Requirement(w) for w in shlex.split(first) if "==" in w]
    return {r.name.lower(): r for r in reqs}


def data_pins() -> dict[str, Requirement]:
    """What the dependency RUN installs with `--no-deps` after the dependencies (data wheels)."""
    (run,) = [a for k, a in instructions() if k == "RUN" and "==" in a]
    out = {}
    for part in run.split("&&")[1:]:
        words = shlex.split(part)
        assert "--no-deps" in words, part
        out.update({Requirement(w).name.lower(): Requirement(w) for w in words if "==" in w})
    return out


def run_steps() -> list[str]:
    return [a for k, a in instructions() if k == "RUN"]


# --- lint ---------------------------------------------------------------------------------------------------


def test_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail(f"hadolint is missing at {hadolint}: install the dev extras (pip install -e '.[dev]')")
    proc = subprocess.run(
        [str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_matches_ci():
    import ray

    froms = [a for k, a in instructions() if k == "FROM"]
    assert froms == [
        f"rayproject/ray:{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}-cpu"
    ]


def test_runs_as_non_root_and_bakes_in_no_secrets():
    steps = instructions()
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", users
    # Everything after the (single) USER runs unprivileged: no way back to root.
    assert len(users) == 1
    assert [k for k, _ in steps].index("USER") < [k for k, _ in steps].index("RUN")
    for keyword, args in steps:
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args)
            assert names and not [n for n in names if SECRETISH.search(n)], f"{keyword} {args}"
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|credentials|\.aws|\.kube|weights|runs/", args), (
                args
            )
            assert not args.startswith("http"), f"{keyword} from the network: {args}"
    assert not [a for k, a in steps if k == "ADD"], "use COPY (ADD fetches URLs and unpacks archives)"


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for dep in map(Requirement, project["dependencies"]):
        pin = pinned.get(dep.name.lower())
        assert pin is not None, f"{dep.name} (pyproject.toml) is not pinned in the Dockerfile"
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert dep.specifier.contains(spec.version), f"Dockerfile pins {pin}, pyproject.toml wants {dep}"
        assert dep.extras <= pin.extras, f"{pin} lacks the extras of {dep}"
    assert pinned["ray"].specifier == f"=={__import__('ray').__version__}"
    assert set(pinned) == {Requirement(d).name.lower() for d in project["dependencies"]}, (
        "pins of non-dependencies"
    )


# --- .dockerignore ------------------------------------------------------------------------------------------


def _pattern(p: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex over slash paths."""
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[":
            j = p.index("]", i)
            out, i = out + p[i : j + 1].replace("[!", "[^"), j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def build_context(paths: list[str]) -> list[str]:
    """The paths Docker sends: the last matching rule decides; a rule matching a parent folder applies."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    kept = []
    for path in paths:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negate, rx in rules:
            if any(rx.fullmatch(p) for p in prefixes):
                excluded = not negate
        if not excluded:
            kept.append(path)
    return kept


def repo_files() -> list[str]:
    """The working tree's files that git does not ignore: what `docker build .` would be sent."""
    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_dockerignore_keeps_the_context_small():
    never = [
        ".venv/bin/python",
        ".venv/lib/python3.11/site-packages/torch/lib/libtorch.so",
        ".git/HEAD",
        ".git/objects/ab/cdef",
        ".tools/helm",
        "runs/demo/summary.json",
        "runs/demo/generated/a.png",
        "data/mimic/files/p10/s1.jpg",
        "weights/roentgen/unet/diffusion_pytorch_model.safetensors",
        "models/clip/model.bin",
        "pairaug_ray/models/leftover.safetensors",
        "pairaug_ray/__pycache__/cli.cpython-311.pyc",
        "configs/.env",
        "configs/corpus.parquet",
        "credentials.json",
        ".env",
        "tests/test_helm.py",
        "helm/pairaug/values.yaml",
        "k8s/rayjob-augment.yaml",
        "Dockerfile",
    ]
    assert build_context(never) == []
    kept = build_context(sorted(set(repo_files())))
    assert {
        "pyproject.toml",
        "README.md",
        "pairaug_ray/__init__.py",
        "pairaug_ray/cli/__init__.py",
        "configs/demo.yaml",
    } <= set(kept)
    assert {p.split("/")[0] for p in kept} <= {"pyproject.toml", "README.md", "pairaug_ray", "configs"}
    size = sum((REPO / p).stat().st_size for p in kept if (REPO / p).is_file())
    assert size < 5_000_000, f"build context of {size} bytes"


# --- data wheels ---------------------------------------------------------------------------------------------


def test_the_runtime_data_wheels_are_in_the_image_with_the_pins_of_make_setup():
    """open_clip_torch carries the CLIP BPE vocabulary that models built from scratch need at run time
    (the tiny models, training from random init); the image installs it as `make setup` does. The
    other data wheels of the Makefile (a DICOM, the IU reports, SmolLM2) serve only the tests."""
    makefile = (REPO / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("DATA_WHEELS"))
    setup = {Requirement(w).name.lower(): Requirement(w) for w in line.split(":=", 1)[1].split()}
    image = data_pins()
    assert set(image) == {"open_clip_torch"}, image
    assert image["open_clip_torch"].specifier == setup["open_clip_torch"].specifier
    # The Python environment of the image, built from these steps, runs the quick start: tests/test_image.py.
