"""The GPU pools grow with the backlog and the cluster shrinks back, on Ray's real autoscaler.

Ray's tracker had a P0 report that Ray Data GPU actor pools do not autoscale on an autoscaling
cluster (ray-project/ray#59144). On the fake multi-node cluster of tests/autoscaling_cluster.py
(autoscaler v2, shaped like the chart: a head without CPUs, a CPU group, a GPU group from 0 with
room for 3 nodes), the quick start's augment job (docs/deployment.md) is submitted with
`ray job submit`, generation and scoring each with `max_actors: 3` and one (logical) GPU per
actor, over a backlog of about 1,700 images. While it runs, the test samples Ray's state API
(which node holds which live actor); afterwards it reads the node each image was drawn and
scored on from the rows.

Asserted: 3 GPU nodes ran generation actors at the same time and the images were spread over
them; the same for the scoring pool; every image once; and the GPU group is back to 0 nodes after
the idle timeout.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from autoscaling_cluster import HEAD_NODE_TYPE, FakeAutoscalingCluster, WorkerType, wait_for
from test_quickstart_cluster import CONFIG, Followed, _rows, _sets

# `long`: minutes of a six-node fake cluster; `make test-all` runs it, `make test` (CI) does not.
pytestmark = [pytest.mark.slow, pytest.mark.long]

GPU_NODES = 3
IDLE_TIMEOUT_S = 15.0  # above the pauses between stages (see test_quickstart_cluster.py)

JOB = [
    "models.build_tiny=true",
    "models.train_generator=false",
    "models.train_scorer=false",
    "corpus.phantom.patients=24",
    "corpus.phantom.size=64",
    "corpus.phantom.split_fractions=[0.8, 0.1, 0.1]",
    "rewrite.patient_fraction=1",
    "rewrite.modes=[inter]",
    # A backlog for both pools: ~55 rewrites x 32 images (a few minutes of drawing on one actor, and
    # enough pairs that scoring them on one actor outlasts the time its pool takes to grow).
    "generate.branches=[inter]",
    "generate.inter.images_per_report=32",
    "generate.inter.num_inference_steps=6",
    "generate.inter.batch_size=4",
    "generate.height=64",
    "generate.width=64",
    "generate.rows_per_file=8",
    "generate.num_gpus=1",
    "generate.num_cpus=1",
    "generate.min_actors=1",
    f"generate.max_actors={GPU_NODES}",
    "score.num_gpus=1",
    "score.num_cpus=1",
    "score.min_actors=1",
    f"score.max_actors={GPU_NODES}",
    "score.batch_size=1",
    "score.rows_per_file=8",
    "augment.examples=1",
    "ray.progress_bars=false",
]


@pytest.fixture(scope="module")
def cluster():
    venv_bin = str(Path(sys.executable).parent)
    c = FakeAutoscalingCluster(
        {
            "cpu": WorkerType({"CPU": 2}, max_workers=2),
            "gpu": WorkerType({"CPU": 1, "GPU": 1}, max_workers=GPU_NODES),
        },
        idle_timeout_s=IDLE_TIMEOUT_S,
        token_auth=True,
        env={"PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"},
    )
    c.start()
    try:
        yield c
    finally:
        c.stop()


class ActorSampler:
    """Polls Ray's state API: which node holds each live actor of a stage, over time."""

    def __init__(self, cluster: FakeAutoscalingCluster, interval: float = 0.5):
        self.cluster, self.interval = cluster, interval
        self.samples: list[tuple[float, dict[str, set[str]]]] = []  # (time, stage -> node ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ActorSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = self.cluster.api_get(
                    "/api/v0/actors?limit=10000&detail=1&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
                )
                held: dict[str, set[str]] = defaultdict(set)
                for a in body["data"]["result"]["result"]:
                    name = a.get("class_name") or ""
                    for stage in ("GenerateInter", "ScorePairs"):
                        if stage in name and a.get("node_id"):
                            held[stage].add(a["node_id"])
                self.samples.append((time.time(), dict(held)))
            except Exception:  # the dashboard is briefly busy; the next sample counts
                pass
            self._stop.wait(self.interval)

    def most_nodes_at_once(self, stage: str, nodes: set[str]) -> int:
        return max((len(held.get(stage, set()) & nodes) for _, held in self.samples), default=0)


def test_gpu_pools_grow_to_their_maximum_and_the_group_returns_to_zero(cluster, tmp_path):
    out = str(tmp_path / "run")
    wait_for(lambda: cluster.live_node_types() == [HEAD_NODE_TYPE], timeout=60)
    argv = ["pairaug", "augment", "--config", CONFIG, "--set", f"run.output_dir={out}", *_sets(JOB)]
    with ActorSampler(cluster) as sampler:
        job = Followed(cluster, argv)
        log = job.wait(timeout=900)
    assert job.proc.returncode == 0, log[-4000:]
    ended = time.time()
    gpu_nodes = {n.node_id for n in cluster.nodes() if n.node_type == "gpu"}

    # Generation: three GPU nodes held generation actors at the same moment, and drew the images.
    generated = [r for r in _rows(f"{out}/generated") if r["status"] == "ok"]
    ids = [r["pair_id"] for r in generated]
    assert len(ids) == len(set(ids)) >= 1000
    drawn_on = Counter(json.loads(r["provenance"]["params"])["node_id"] for r in generated)
    print(f"\n[pools] images per node: {sorted(drawn_on.values(), reverse=True)}")
    assert sampler.most_nodes_at_once("GenerateInter", gpu_nodes) == GPU_NODES, sampler.samples[-5:]
    assert set(drawn_on) <= gpu_nodes and len(drawn_on) == GPU_NODES
    assert min(drawn_on.values()) >= 0.1 * len(generated), drawn_on

    # Scoring: the same, read from the node each pair was scored on.
    scored = [r for r in _rows(f"{out}/scored") if r["status"] == "ok"]
    assert len(scored) == len(generated)
    scored_on = Counter(json.loads(r["scoring"])["node_id"] for r in scored)
    print(f"[pools] pairs scored per node: {sorted(scored_on.values(), reverse=True)}")
    assert sampler.most_nodes_at_once("ScorePairs", gpu_nodes) == GPU_NODES
    assert set(scored_on) <= gpu_nodes and len(scored_on) == GPU_NODES

    # And back to no GPU node once the idle timeout has passed.
    wait_for(
        lambda: not cluster.live_nodes("gpu"),
        timeout=IDLE_TIMEOUT_S + 90,
        message=lambda: f"GPU nodes still up: {cluster.live_node_types()}",
    )
    down_s = time.time() - ended
    print(
        f"[pools] GPU group back to 0 nodes {down_s:.0f} s after the job (idle timeout {IDLE_TIMEOUT_S:.0f} s)"
    )
