"""Connecting to Ray: a private local Ray on 127.0.0.1, or an existing cluster.

Inside `ray job submit` (or a RayJob) the driver finds its cluster through RAY_ADDRESS, so
`address: null` joins it; on a laptop it starts a local Ray that binds loopback only, sends no
usage stats and caps the object store.
"""

from __future__ import annotations

import logging
import os

import ray
from ray.data import DataContext

from pairaug_ray.config import RayConfig

log = logging.getLogger(__name__)

# The Ray node label the Helm chart puts on each worker group: "gpu" on a group whose pods have GPUs,
# "cpu" on one without (helm/pairaug/templates/_helpers.tpl). Selectors use its negation, so that a
# node without the label (a laptop's local Ray, a cluster not deployed by the chart) takes any work.
NODE_KIND_LABEL = "pairaug.io/node-kind"
CPU_WORK = {NODE_KIND_LABEL: "!gpu"}  # every CPU task and actor: never on a GPU-labelled node
GPU_WORK = {NODE_KIND_LABEL: "!cpu"}  # a GPU stage overrides the CPU default, key for key


def work_selector(gpus: float) -> dict[str, str]:
    """The label selector of a worker that reserves `gpus` GPUs (docs/operations.md, "CPU work stays
    off GPU nodes")."""
    return dict(GPU_WORK if gpus else CPU_WORK)


# Whether this process started the Ray it is connected to (a fixed-size local Ray whose CPUs are
# all there is) rather than joining a cluster, which may autoscale from zero.
_started_local = False


def started_local_ray() -> bool:
    """True when `init_ray` started the Ray this process uses: its resources are fixed and known.
    A joined cluster (an address, RAY_ADDRESS inside a Ray job) may hold 0 CPUs while idle and grow
    on demand, so resource checks against its current size would refuse jobs it can run."""
    return _started_local and ray.is_initialized()


def init_ray(cfg: RayConfig) -> None:
    global _started_local
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            log.info("connecting to Ray at %s", address)
            ray.init(address=address, log_to_driver=True)
        else:
            # Keep a laptop/CI Ray on loopback and quiet; these only take effect for a new local Ray.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            log.info("starting a local Ray (num_cpus=%s, num_gpus=%s)", cfg.num_cpus, cfg.num_gpus)
            ray.init(
                # "local": a new private instance even when `ray start` left a cluster on this machine
                # (ray.init() would silently join that one instead).
                address="local",
                num_cpus=cfg.num_cpus,
                num_gpus=cfg.num_gpus,
                object_store_memory=cfg.object_store_memory_mb * 1024**2
                if cfg.object_store_memory_mb
                else None,
                include_dashboard=False,
                log_to_driver=True,
                configure_logging=True,
                logging_level=logging.WARNING,
            )
            _started_local = True
    if not log.isEnabledFor(logging.DEBUG):
        # Ray Data logs every finished dataset at INFO; progress bars already say that.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    # The stages draw their own bars (pipeline/progress.py: one per stage, rows/s and an ETA); Ray
    # Data's draw one line per operator and would flood the log file the terminal sends them to.
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    # Every Ray Data task and actor (reads, validation, repartitions, writes, CPU pools) avoids nodes
    # labelled gpu: the autoscaler would otherwise start a GPU node for CPU work whenever the CPU
    # group is at its maximum, since a GPU node offers CPUs too. GPU stages override the key
    # (stages/base.py). Set before any dataset is made: a dataset keeps a copy of this context.
    ctx.execution_options.label_selector = dict(CPU_WORK) if cfg.cpu_work_off_gpu_nodes else None
    if cfg.cpu_work_off_gpu_nodes and not _started_local:
        # Ray 2.60's Parquet reader (datasource V2) lists files through a pool of up to 32
        # FooterReader actors that take neither the context's label selector nor a resource
        # setting: on a cluster whose CPU group is full, the autoscaler starts GPU nodes to place
        # them (seen on the fake autoscaler: two GPU nodes during validate). The V1 reader fetches
        # file metadata with tasks that carry the selector. A local Ray has no labelled nodes, and
        # keeps V2.
        ctx.use_datasource_v2 = False
    from pairaug_ray import nodes, progress

    progress.show_bars(cfg.progress_bars)
    nodes.start_if_requested(autoscaling=not _started_local)
