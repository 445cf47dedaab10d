"""The image as it runs: its Python environment built from the Dockerfile's own RUN steps, and the
quick start's job run in it as the image's non-root user. Slow.

No Docker engine or registry is reachable here, so the image is assembled from what the Dockerfile
says, read from the Dockerfile (nothing is repeated in this test):

- the dependency command of its first RUN is resolved for real against PyPI (`pip install --dry-run
  --report`); the distributions it resolves to are then taken from this machine's environment,
  exactly that set and nothing else (a folder of links on PYTHONPATH), with two substitutions:
  torch is the CPU build of the same version, and torch's CUDA-only wheels (nvidia-*, triton) are
  left out, as a GPU-less node does not load them;
- every other command of that RUN (the `--no-deps` installs: open_clip_torch, whose CLIP vocabulary
  the tiny models need) and the package step run for real, with pip, into a fresh venv that stands
  for the image's Python, from a copy of the build context that .dockerignore lets through;
- the job runs under the Dockerfile's USER (uid and gid, no other groups), with its WORKDIR as the
  working directory, HOME its parent, its ENV, and nothing writable but those and a temp folder:
  the image's Python belongs to root.

The job is the quick start's (docs/deployment.md: `pairaug augment --config .../demo.yaml --set
run.output_dir=s3://...`), into the moto S3 server, made small with `--set` (a few patients, 64 px).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from test_dockerfile import REPO, build_context, instructions, pins, repo_files

pytestmark = pytest.mark.slow

CUDA_ONLY_PREFIXES = ("nvidia-", "triton", "cuda-")  # torch's GPU wheels; not loaded without a GPU
QUICK_START_OVERRIDES = [  # the quick start's demo job, small: what matters is that it runs here
    "models.build_tiny=true",  # random-weight tiny models (make demo trains its own first)
    "models.train_generator=false",
    "models.train_scorer=false",
    "rewrite.patient_fraction=1",  # a few patients: rewrite them all (the demo rewrites 30%)
    "corpus.phantom.patients=3",
    "corpus.phantom.size=64",
    "generate.height=64",
    "generate.width=64",
    "generate.inter.num_inference_steps=3",
    "generate.intra.num_inference_steps=3",
    "augment.examples=1",
    "ray.progress_bars=false",
]


def dependency_run() -> list[list[str]]:
    """The first RUN (the dependencies) as its `&&`-joined commands, each split into words."""
    run = next(a for k, a in instructions() if k == "RUN")
    return [shlex.split(part) for part in run.split("&&")]


def image_user() -> tuple[int, int]:
    (user,) = [a for k, a in instructions() if k == "USER"]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def image_env_vars() -> dict[str, str]:
    env = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def resolved_dependencies(tmp: Path) -> dict[str, str]:
    """name -> version that the Dockerfile's dependency command resolves to today."""
    (cmd, *_) = dependency_run()
    assert cmd[:4] == ["python", "-m", "pip", "install"], cmd
    report = tmp / "report.json"
    argv = [w for w in cmd[1:] if w != "--no-cache-dir"]
    proc = subprocess.run(
        [sys.executable, *argv, "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    install = json.loads(report.read_text())["install"]
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in install}
    for name, pin in pins().items():
        assert pin.specifier.contains(resolved[canonicalize_name(name)], prereleases=True), (pin, resolved)
    return resolved


def link_distributions(resolved: dict[str, str], view: Path) -> list[str]:
    """Links in `view` to the top-level packages of exactly the resolved distributions, from this
    environment; returns the version differences (reported, not fatal: transitive pins move)."""
    site = Path(sysconfig.get_paths()["purelib"])
    # A symlink is enough when the image's user may walk to this environment; under a home folder of
    # mode 700 (a clone in /root) it may not, and the view gets hard links (a copy across file
    # systems) of the files instead, which it can read wherever they came from.
    linkable = all(os.stat(d).st_mode & 0o001 for d in [site, *site.parents])
    differences = []
    for name, version in sorted(resolved.items()):
        if name.startswith(CUDA_ONLY_PREFIXES):
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"the image installs {name}=={version}, which this environment lacks: run make setup")
        if dist.version.split("+")[0] != version:
            differences.append(f"{name} {version} (image) / {dist.version} (here)")
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops - {"__pycache__"}):
            target = site / top
            if target.exists() and not (view / top).exists():
                if linkable:
                    (view / top).symlink_to(target)
                elif target.is_dir():
                    shutil.copytree(target, view / top, copy_function=_hard_link_or_copy, symlinks=True)
                else:
                    _hard_link_or_copy(str(target), str(view / top))
    return differences


def _hard_link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed there
        shutil.copy2(src, dst)
    return dst


def image_python() -> str:
    """A Python interpreter of this minor version that the image's user may run (this one's may live
    under /root, which other users cannot enter)."""
    # The system's first: a venv links to its interpreter, and every directory on the way must be
    # open to the user (this one's may be under /root).
    candidates = [
        f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
        os.path.realpath(sys.executable),
    ]
    uid, gid = image_user()
    for python in candidates:
        if not all(os.stat(d).st_mode & 0o001 for d in Path(python).parents):
            continue  # a directory the user cannot enter
        probe = subprocess.run(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                python,
                "-c",
                "import sys, venv; print(sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return python
    pytest.skip(
        f"no Python {sys.version_info[0]}.{sys.version_info[1]} that uid {uid} may run: tried {candidates}"
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """(venv, view, home, workdir) of the image assembled from the Dockerfile (see the module docstring)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to the image's uid needs root and setpriv (util-linux)")
    uid, gid = image_user()
    python = image_python()
    # A short, world-traversable root (pytest's temp folders are private to root; Ray's socket paths
    # must stay short).
    root = Path(tempfile.mkdtemp(prefix="img", dir="/tmp"))
    os.chmod(root, 0o755)
    venv, view = root / "python", root / "site"
    view.mkdir()
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    # 1. The dependency command, resolved; the resolved set linked in from this environment.
    differences = link_distributions(resolved_dependencies(tmp_path_factory.mktemp("resolve")), view)
    print("versions that differ between the image's resolution and this environment:", differences or "none")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # 2. The other commands of that RUN, as written (the image's Python first on PATH).
    for cmd in dependency_run()[1:]:
        words = [w for w in cmd if w != "--no-cache-dir"]  # pip's cache: the same files, fetched once
        subprocess.run(words, env=env, check=True, capture_output=True, timeout=600)
    # 3. The package step exactly as written, in the WORKDIR holding what the COPY steps copy.
    (workdir_spec,) = [a for k, a in instructions() if k == "WORKDIR"]
    home = root / "home"
    workdir = home / Path(workdir_spec).name
    workdir.mkdir(parents=True)
    for rel in build_context(repo_files()):
        if (REPO / rel).is_file():
            (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, workdir / rel)
    package_step = [a for k, a in instructions() if k == "RUN"][-1]
    proc = subprocess.run(
        ["/bin/sh", "-c", package_step],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(view)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("pairaug-ray 0.1.0"), proc.stdout
    # COPY --chown: the user owns its home and working directory; the image's Python stays root's.
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, gid)
    yield venv, view, home, workdir
    shutil.rmtree(root, ignore_errors=True)


def run_as_image_user(image, argv: list[str], extra_env: dict[str, str], timeout: float = 900):
    venv, view, home, workdir = image
    uid, gid = image_user()
    tmp = home / "t"  # Ray's temp dir: the user's own (a root-owned /tmp/ray may exist here)
    tmp.mkdir(exist_ok=True)
    os.chown(tmp, uid, gid)
    env = {
        **image_env_vars(),
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(view),
        "TMPDIR": str(tmp),
        "RAY_TMPDIR": str(tmp),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "HF_HUB_OFFLINE": "1",
        **extra_env,
    }
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_vocabulary_comes_from_the_images_own_install_step(image):
    venv, *_ = image
    proc = run_as_image_user(
        image,
        ["python", "-c", "from pairaug_ray.models.tokenizer import find_bpe_file; print(find_bpe_file())"],
        {},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(venv)), proc.stdout  # not from this environment


def test_the_quick_start_job_runs_in_the_image_as_its_user(image, s3_server):
    import s3fs

    from pairaug_ray import storage

    bucket = "image-quick-start"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
    out = f"s3://{bucket}/pairaug/demo"
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    argv = ["pairaug", "augment", "--config", "configs/demo.yaml", "--set", f"run.output_dir={out}"]
    for override in QUICK_START_OVERRIDES:
        argv += ["--set", override]
    proc = run_as_image_user(image, argv, aws)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "augment job 'demo' finished" in proc.stdout, proc.stdout[-2000:]
    summary = json.loads(storage.read_text(f"{out}/summary.json"))
    assert summary["stages"]["generate"]["ok"] > 0 and summary["stages"]["score"]["ok"] > 0
    assert storage.list_files(f"{out}/logs", ".log"), "the job's log file was uploaded next to its outputs"
    # The tiny models were built with the image's own CLIP vocabulary, under the user's output.
    assert storage.exists(f"{out}/models/tiny-clip/tokenizer_config.json")
