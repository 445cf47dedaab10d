"""The augment job over a large report-only corpus on an autoscaling cluster: rates, memory, resume.

For each corpus size N, N reports (the 3,955 real Indiana University reports repeated with distinct
ids) are written as JSONL to the S3 server the tests use (moto, on 127.0.0.1), and the quick start's
augment job is submitted with `ray job submit` to Ray's fake multi-node autoscaling cluster
(tests/autoscaling_cluster.py: a head without CPUs and several CPU nodes started on demand):
import -> validate -> rules rewrite (InterAug) -> the tiny generator (32 px, 2 steps) on CPU ->
score -> prune, every output on S3.

Measured per size: rows/s of each stage, the wall time, the driver's peak memory (the `pairaug
augment` process) and the head's (the GCS server), the objects written, and `pairaug status` while
the job draws. With `--kill-at-half N`, the driver of the size-N run is killed (SIGKILL) once half
the images are written; the job is submitted again, the time until it writes its first new image
is the resume time, and every image is checked to be there exactly once.

    .venv/bin/python bench/scale.py --reports 10000 30000 100000 --kill-at-half 100000 --out docs/scale.json

The baseline in the same run: the same stages' own callables over 2,000 reports in this process,
without Ray or S3 (rows/s of the plain loop), so the ratio says what the distribution costs here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the fake autoscaling cluster the tests use

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
from autoscaling_cluster import FakeAutoscalingCluster, WorkerType, wait_for  # noqa: E402

STAGES = ("prepare", "validate", "rewrite", "generate", "score", "prune", "report")


def job_config(reports_uri: str, out: str, models_dir: str) -> dict:
    return {
        "run": {"name": "scale", "output_dir": out, "seed": 0},
        "ray": {"address": "auto", "progress_bars": False},
        "corpus": {
            "kind": "reports",
            "reports": {"path": reports_uri, "text_field": "text", "id_field": "id", "duplicates": "keep"},
        },
        "models": {"build_tiny": True, "tiny_dir": models_dir},
        "rewrite": {"backend": "rules", "modes": ["inter"], "min_words": 3, "rows_per_file": 2048},
        "generate": {
            "branches": ["inter"],
            "height": 32,
            "width": 32,
            "num_gpus": 0,
            "num_cpus": 1,
            "min_actors": 1,
            "max_actors": 2,
            "rows_per_file": 1024,
            "inter": {"num_inference_steps": 2, "batch_size": 64},
        },
        "score": {"num_cpus": 1, "max_actors": 2, "batch_size": 256, "rows_per_file": 2048},
        "prune": {"tau": 0.0},
        "augment": {"examples": 1},
    }


def write_reports(n: int, uri: str) -> int:
    """N reports as JSONL files of 10,000 lines on S3: the IU reports repeated with distinct ids."""
    from pairaug_ray import storage
    from pairaug_ray.corpora.iu_reports import iu_archive, load_iu_reports

    archive = iu_archive()
    if archive is None:
        raise SystemExit("the IU reports come with the torchxrayvision wheel: run `make setup`")
    texts = [(r.uid, r.text) for r in load_iu_reports(archive)]
    per_file = 10_000
    for start in range(0, n, per_file):
        lines = []
        for i in range(start, min(n, start + per_file)):
            uid, text = texts[i % len(texts)]
            lines.append(json.dumps({"id": f"{i:07d}-{uid}", "text": text}))
        storage.write_text(f"{uri}/part-{start // per_file:04d}.jsonl", "\n".join(lines) + "\n")
    return n


class Sampler:
    """Peak RSS of the job's driver and of the cluster's GCS, sampled every second; and the driver's
    anonymous memory (its heap and other allocations, /proc/PID/smaps_rollup), which leaves out the
    shared-library pages that RSS counts and that move as Ray's workers map the same files."""

    def __init__(self, cluster: FakeAutoscalingCluster, marker: str):
        self.cluster, self.marker = cluster, marker
        self.driver_peak = self.gcs_peak = self.driver_anon_peak = 0
        self.driver_samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def driver(self) -> psutil.Process | None:
        """The job's Python driver (not the shell the job supervisor starts it with)."""
        for p in psutil.process_iter(["cmdline"]):
            argv = p.info["cmdline"] or []
            cmd = " ".join(argv)
            if (
                len(argv) > 2
                and "python" in os.path.basename(argv[0])
                and os.path.basename(argv[1]) == "pairaug"  # not `ray job submit ... -- pairaug augment`
                and argv[2] == "augment"
                and self.marker in cmd
            ):
                return p
        return None

    def _run(self):
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                d = self.driver()
                if d is not None:
                    rss = d.memory_info().rss
                    self.driver_peak = max(self.driver_peak, rss)
                    self.driver_samples.append((time.time(), rss))
                    self.driver_anon_peak = max(self.driver_anon_peak, _anonymous_bytes(d.pid))
            with contextlib.suppress(psutil.Error):
                for p in self.cluster.processes():
                    if p.name() == "gcs_server":
                        self.gcs_peak = max(self.gcs_peak, p.memory_info().rss)
            self._stop.wait(1.0)


def _anonymous_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stage_seconds(log: str) -> dict[str, float]:
    """Each stage's own seconds, from the job's stage lines ('generate  done: ... (123 s)')."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = re.match(r"^(\w+)\s+done: .*\((\d+) s\)", line)
        if m:  # the last line of a stage counts (`ray job submit` may print a failed job's log twice)
            out[m.group(1)] = float(m.group(2))
    return out


def peak_by_stage(samples: list[tuple[float, int]], stages: list[tuple[float, str]]) -> dict[str, int]:
    """The driver's peak RSS (MiB) while each stage ran (the stage progress.json named at the time)."""
    out: dict[str, int] = {}
    for t, rss in samples:
        current = [name for ts, name in stages if ts <= t]
        name = current[-1] if current else "start"
        out[name] = max(out.get(name, 0), round(rss / 2**20))
    return out


def rows_written(root: str) -> int:
    import pyarrow.parquet as pq

    from pairaug_ray import storage

    n = 0
    for f in storage.list_files(storage.join(root, "manifest"), ".parquet"):
        with contextlib.suppress(Exception):
            n += pq.read_metadata(f.removeprefix("s3://"), filesystem=_s3()).num_rows
    return n


def _s3():
    import pyarrow.fs
    import s3fs

    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(s3fs.S3FileSystem(skip_instance_cache=True)))


def count_objects(prefix: str) -> int:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return len(fs.find(prefix.removeprefix("s3://")))


def submit(cluster: FakeAutoscalingCluster, config_path: str, log_path: Path) -> subprocess.Popen:
    argv = ["pairaug", "augment", "--config", config_path]
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "job",
            "submit",
            "--address",
            cluster.dashboard_url,
            "--",
            *argv,
        ],
        env=cluster.client_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_size(cluster, bucket: str, n: int, models_dir: str, workdir: Path, kill_half: bool) -> dict:
    from pairaug_ray import storage

    reports = f"s3://{bucket}/reports-{n}"
    t0 = time.time()
    write_reports(n, reports)
    out = f"s3://{bucket}/run-{n}-{uuid.uuid4().hex[:6]}"
    cfg_path = workdir / f"scale-{n}.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(job_config(reports, out, models_dir)))
    print(f"[{n}] {n} reports written in {time.time() - t0:.0f} s; job -> {out}", flush=True)
    result: dict = {"reports": n, "output": out}
    status_sample = None
    started = time.time()
    logs = []
    kill: dict | None = None
    generate_started: float | None = None
    stages_seen: list[tuple[float, str]] = []
    with Sampler(cluster, str(cfg_path)) as sampler:
        proc = submit(cluster, str(cfg_path), workdir / f"job-{n}-1.log")
        while proc.poll() is None:
            time.sleep(2)
            doc = None
            with contextlib.suppress(Exception):
                doc = json.loads(storage.read_text(f"{out}/progress.json"))
            if doc and doc.get("stage"):
                stages_seen.append((time.time(), doc["stage"]["name"]))
            drawing = doc is not None and "generate" in str(doc.get("stage"))
            if drawing and generate_started is None:
                generate_started = datetime.fromisoformat(doc["stage"]["started_at"]).timestamp()
            written = rows_written(f"{out}/generated") if drawing else 0
            if drawing and status_sample is None and written >= n // 4:
                shown = subprocess.run(
                    [str(Path(sys.executable).with_name("pairaug")), "status", out],
                    capture_output=True,
                    text=True,
                )
                status_sample = shown.stdout or shown.stderr
            if kill_half and kill is None and drawing and written >= n // 2:
                d = sampler.driver()
                if d is not None:
                    d.send_signal(signal.SIGKILL)
                    kill = {
                        "written_at_kill": written,
                        "killed_after_s": round(time.time() - started, 1),
                        "generate_s_before_kill": round(time.time() - generate_started, 1),
                    }
                    print(f"[{n}] driver killed with {written} images written", flush=True)
        logs.append((workdir / f"job-{n}-1.log").read_text())
        if kill is not None:
            proc.wait()
            resumed = time.time()
            proc = submit(cluster, str(cfg_path), workdir / f"job-{n}-2.log")
            first_new = None
            while proc.poll() is None:
                time.sleep(0.5)
                if first_new is None and rows_written(f"{out}/generated") > kill["written_at_kill"]:
                    first_new = time.time() - resumed
            logs.append((workdir / f"job-{n}-2.log").read_text())
            kill["resume_to_first_new_image_s"] = None if first_new is None else round(first_new, 1)
            result["kill"] = kill
        wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"[{n}] the job failed:\n{logs[-1][-4000:]}")
    summary = json.loads(storage.read_text(f"{out}/summary.json"))
    seconds = stage_seconds(logs[-1])
    if kill:
        # The stages the killed run finished count from its log (the rerun only found them done);
        # generate counts both parts: until the kill, and the rerun's.
        seconds.update(stage_seconds(logs[0]))
        seconds["generate"] = kill["generate_s_before_kill"] + stage_seconds(logs[-1])["generate"]
    rows = {
        "validate": summary["stages"].get("validate_reports", {}).get("rows"),
        "rewrite": summary["stages"]["rewrite"]["rows"],
        "generate": summary["stages"]["generate"]["rows"],
        "score": summary["stages"]["score"]["rows"],
        "prune": summary["stages"]["prune"]["rows"],
    }
    result.update(
        wall_s=round(wall, 1),
        stage_seconds=seconds,
        rows=rows,
        rows_per_s={k: round(v / seconds[k], 1) for k, v in rows.items() if v and seconds.get(k)},
        driver_peak_mib=round(sampler.driver_peak / 2**20),
        driver_peak_mib_by_stage=peak_by_stage(sampler.driver_samples, stages_seen),
        driver_anonymous_peak_mib=round(sampler.driver_anon_peak / 2**20),
        gcs_peak_mib=round(sampler.gcs_peak / 2**20),
        objects_written=count_objects(out),
        status_while_drawing=status_sample,
    )
    if kill:
        from pairaug_ray.resume import scan_output

        generated = scan_output(f"{out}/generated")
        result["kill"]["images_once"] = generated.rows == len(generated.done) == rows["generate"]
    print(f"[{n}] {json.dumps({k: v for k, v in result.items() if k != 'status_while_drawing'})}", flush=True)
    return result


def plain_baseline(n: int) -> dict:
    """The stages' callables over n reports in this process: no Ray, no S3, no files between stages."""
    import pyarrow as pa

    from pairaug_ray import schema
    from pairaug_ray.config import parse_config
    from pairaug_ray.corpora.iu_reports import iu_archive, load_iu_reports
    from pairaug_ray.models.tiny import make_tiny_models
    from pairaug_ray.stages.generate import GenerateInter, expand_image_tasks
    from pairaug_ray.stages.rewrite import RulesRewriter, expand_tasks
    from pairaug_ray.stages.score import ScorePairs
    from pairaug_ray.stages.validate import validate_pairs

    texts = [r.text for r in load_iu_reports(iu_archive())]
    rows = [
        {
            schema.PAIR_ID: f"r{i}",
            schema.REPORT: texts[i % len(texts)],
            schema.SPLIT: "train",
            schema.SOURCE_KIND: schema.SOURCE_KIND_REPORT,
        }
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        models = make_tiny_models(tmp)
        cfg = parse_config(job_config("x", tmp, tmp))
        import torch

        torch.set_num_threads(1)
        t = {}
        start = time.perf_counter()
        table = validate_pairs(
            schema.rows_to_table(rows), max_report_chars=20000, check_images=False, require_image=False
        )
        t["validate"] = time.perf_counter() - start
        ok = table.filter(pa.compute.equal(table.column(schema.STATUS), schema.STATUS_OK))
        start = time.perf_counter()
        tasks = expand_tasks(ok, cfg=cfg.rewrite)
        rewritten = RulesRewriter(cfg.rewrite, 0)(tasks)
        t["rewrite"] = time.perf_counter() - start
        good = rewritten.filter(pa.compute.equal(rewritten.column(schema.STATUS), schema.STATUS_OK))
        start = time.perf_counter()
        images = expand_image_tasks(good, cfg=cfg.generate)
        drawn = GenerateInter(cfg.generate, models["diffusion"], tmp, 0, tmp)(images)
        t["generate"] = time.perf_counter() - start
        start = time.perf_counter()
        ScorePairs(cfg.score, models["scorer"], tmp)(drawn)
        t["score"] = time.perf_counter() - start
        counts = {
            "validate": n,
            "rewrite": tasks.num_rows,
            "generate": drawn.num_rows,
            "score": drawn.num_rows,
        }
    return {k: round(counts[k] / t[k], 1) for k in t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument(
        "--kill-at-half", type=int, default=None, help="kill the driver half-way in the run of this size"
    )
    ap.add_argument("--cpu-nodes", type=int, default=3, help="most CPU nodes (2 CPUs each)")
    ap.add_argument("--baseline", type=int, default=2000, help="reports in the plain in-process baseline")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3_env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    }
    os.environ.update(s3_env)
    import s3fs

    bucket = f"scale-{uuid.uuid4().hex[:6]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
    results: dict = {
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "cluster": f"head 0 CPUs; up to {args.cpu_nodes} CPU nodes of 2 CPUs (fake multi-node, autoscaler v2)",
        "runs": [],
    }
    print(f"plain baseline over {args.baseline} reports ...", flush=True)
    results["plain_rows_per_s"] = plain_baseline(args.baseline)
    print(f"plain baseline: {results['plain_rows_per_s']}", flush=True)
    venv_bin = str(Path(sys.executable).parent)
    cluster = FakeAutoscalingCluster(
        {"cpu": WorkerType({"CPU": 2}, max_workers=args.cpu_nodes)},
        idle_timeout_s=60,
        token_auth=False,
        object_store_mb=400,
        env={**s3_env, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"},
    )
    with cluster, tempfile.TemporaryDirectory() as tmp:
        wait_for(lambda: cluster.live_nodes(), timeout=60)
        models_dir = os.path.join(tmp, "models")
        for n in args.reports:
            results["runs"].append(
                run_size(cluster, bucket, n, models_dir, Path(tmp), n == args.kill_at_half)
            )
    server.stop()
    runs = results["runs"]
    if len(runs) > 1:
        results["driver_peak_ratio_last_to_first"] = round(
            runs[-1]["driver_peak_mib"] / runs[0]["driver_peak_mib"], 2
        )
        results["driver_anonymous_peak_ratio_last_to_first"] = round(
            runs[-1]["driver_anonymous_peak_mib"] / max(1, runs[0]["driver_anonymous_peak_mib"]), 2
        )
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
