"""A terminal a person can read: stage lines, progress bars and results on the screen; everything
the libraries print in a log file.

Ray, Ray Data, Ray Train, torch, transformers and diffusers write to the process's stdout and
stderr from Python (logging, warnings, tqdm) and from C++ (Ray's core worker logs straight to file
descriptor 2). While a job runs, `job_terminal` points descriptors 1 and 2 at the log file, so all of
that lands there, and keeps the screen for the project's own output: `print()` (results) goes to the
terminal's stdout, and pairaug_ray/progress.py writes stage lines and bars to the terminal's stderr.
The log file sits under the run's output folder (`<output_dir>/logs/<command>-<time>.log`; for an
s3:// output it is written locally and uploaded when the command ends) and its path is printed first.

`--verbose` skips all of this: everything goes to the terminal, as the libraries print it.

Nothing is silenced: messages are moved, not dropped. The ones a user sees in the log and can do
nothing about, and their causes, are listed in docs/augment.md ("The terminal").
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

from pairaug_ray import progress, storage

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers that report library internals: into the log file at WARNING and above only.
NOISY = (
    "ray",
    "filelock",
    "urllib3",
    "botocore",
    "s3fs",
    "fsspec",
    "transformers",
    "diffusers",
    "matplotlib",
)


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """The project's loggers at `level`, library loggers at WARNING or above, to `stream`."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=stream or sys.stderr)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    if level != "DEBUG":
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        # Download and shard-writing bars of the Hugging Face libraries: noise in a log file.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _screen(stream: TextIO) -> TextIO:
    """A stream to the screen that survives pointing the descriptors elsewhere: a duplicate of the
    stream's descriptor when it has one, else the stream itself (pytest's capture objects)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stream
    stream.flush()
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115


# Ray's driver relays what its workers print and the autoscaler's events ("Adding 1 node(s) of type
# gpu", "No available node types can fulfill ...") from one thread, and the cluster's warnings
# ("tasks with infeasible resource requests", "node ... marked dead") from another, to whatever
# sys.stdout is when a line arrives.
RAY_RELAY_THREADS = frozenset({"ray_print_logs", "ray_listen_error_messages"})
# What such a relayed line starts with (after a colour code): a line of these written from any other
# thread goes to the log too. One "(raylet) There are tasks with infeasible resource requests" line
# reached a cluster job's log in a suite run of 2026-12-06, from outside those threads.
RAY_RELAY_PREFIX = re.compile(r"^(\x1b\[[0-9;]*m)*\((raylet|autoscaler|gcs_server)[ )]")


class _Screen(io.TextIOBase):
    """sys.stdout while a job runs: the screen for the command's results, the log file for Ray's
    relayed worker output and autoscaler events (a cluster job's log would otherwise be mostly those)."""

    def __init__(self, screen: TextIO, log: TextIO):
        self.screen, self.log = screen, log
        self._line = threading.local()  # per thread: whether its last write began a relayed line

    def _target(self, text: str) -> TextIO:
        relayed = (
            threading.current_thread().name in RAY_RELAY_THREADS
            or RAY_RELAY_PREFIX.match(text)
            or getattr(self._line, "relayed", False)  # print() writes a line's end separately
        )
        self._line.relayed = bool(relayed) and not text.endswith("\n")
        return self.log if relayed else self.screen

    @property
    def closed(self) -> bool:
        # Closed with the screen stream when the job ends: a library that kept this stream (colorama,
        # which Ray initialises, writes a reset code to it at exit) then sees a closed stream.
        return self.screen.closed

    def write(self, text: str) -> int:
        return self._target(text).write(text)

    def flush(self) -> None:
        self.screen.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.screen.isatty()

    def fileno(self) -> int:
        return self.screen.fileno()


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def log_path(log_dir: str, command: str) -> tuple[str, str | None]:
    """(local file to write, remote URI to upload it to, or None)."""
    name = f"{command.replace(' ', '-')}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.log"
    if storage.is_local(log_dir):
        os.makedirs(storage.absolute(log_dir), exist_ok=True)
        return os.path.join(storage.absolute(log_dir), name), None
    local = os.path.join(tempfile.mkdtemp(prefix="pairaug-log-"), name)
    return local, storage.join(log_dir, name)


def _new_folders(log_dir: str) -> list[str]:
    """The local folders (the log folder, and the output folder above it) that do not exist yet: a
    command that fails before writing anything removes them again, leaving nothing behind."""
    if not storage.is_local(log_dir):
        return []
    folder, parent = storage.absolute(log_dir), os.path.dirname(storage.absolute(log_dir))
    return [d for d in (folder, parent) if not os.path.exists(d)]


def _nothing_else_written(log_dir: str, local: str, remote: str | None) -> bool:
    """Whether the output folder holds nothing but this command's log (a refusal, not a failure)."""
    out = storage.absolute(log_dir) if remote is None else log_dir
    out = out.rstrip("/").rsplit("/", 1)[0]
    try:
        files = storage.list_files(out)
    except OSError:
        return False
    return all(remote is None and os.path.abspath(f) == os.path.abspath(local) for f in files)


@contextmanager
def job_terminal(
    log_dir: str | None, command: str, *, verbose: bool = False, level: str = "INFO"
) -> Iterator[str | None]:
    """Run the body with library output in a log file under `log_dir`; yields the log file's path."""
    if verbose or log_dir is None:
        progress.enable(sys.stderr)
        try:
            yield None
        finally:
            progress.enable(None)
        return
    ray_was_running = _ray_running()
    created = _new_folders(log_dir)
    local, remote = log_path(log_dir, command)
    failed = False
    screen_out, screen_err = _screen(sys.stdout), _screen(sys.stderr)
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    for s in (sys.stdout, sys.stderr):
        s.flush()
    saved_fds = os.dup(1), os.dup(2)
    log_fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = logging.FileHandler(local, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    saved_level = root.level
    # The terminal's own log handlers (configure_logging) would copy every record into the log file
    # a second time through descriptor 2: set them aside while the file handler records.
    to_screen = [
        h
        for h in root.handlers
        if type(h) is logging.StreamHandler
        and getattr(h, "stream", None) in (sys.stdout, sys.stderr, sys.__stderr__, sys.__stdout__)
    ]
    screen_err.write(f"pairaug {command}: library and Ray logs go to {progress.shown(remote or local)}\n")
    screen_err.flush()
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Whatever holds on to sys.stderr (Ray's log handler, warnings) writes to descriptor 2, which
        # points at the log now and at the terminal again afterwards: never a closed stream.
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stdout = _Screen(screen_out, sys.stderr)
        for h in to_screen:
            root.removeHandler(h)
        root.addHandler(handler)
        root.setLevel(level)
        progress.enable(screen_err)
        try:
            yield remote or local
        except BaseException:
            failed = True
            raise
    finally:
        if not ray_was_running and _ray_running():
            # A Ray this command started: stop it while its last words (worker exits, the raylet's
            # warnings) still go to the log, not at interpreter exit onto the terminal.
            import ray

            ray.shutdown()
        progress.enable(None)
        root.removeHandler(handler)
        for h in to_screen:
            root.addHandler(h)
        root.setLevel(saved_level)
        handler.close()
        for s in (sys.stdout, sys.stderr):
            s.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (*saved_fds, log_fd):
            os.close(fd)
        sys.stdout, sys.stderr = saved_stdout, saved_stderr
        for s in (screen_out, screen_err):
            if s not in (saved_stdout, saved_stderr):
                s.close()
        # A command refused before it wrote anything (bad input, a wrong root) leaves nothing behind:
        # not its log, nor the folders made for it. Its reason is on the screen.
        if failed and _nothing_else_written(log_dir, local, remote):
            os.remove(local)
            for d in created:  # the log folder first, then the output folder above it
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        elif remote:
            try:
                with open(local, "rb") as f:
                    storage.write_bytes(remote, f.read())
            except OSError as e:
                saved_stderr.write(f"could not upload the log to {remote} ({e}); it is at {local}\n")
