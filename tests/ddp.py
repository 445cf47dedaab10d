"""Two-process DDP for gradient tests: a gloo group over a file store, and an exit that cannot hang."""

from __future__ import annotations

import datetime
import os

import torch


def init_gloo(rank: int, world: int, store: str) -> None:
    """A file store rather than a TCP port (nothing to collide with), and a timeout, so that a lost
    peer fails the test instead of hanging it; one torch thread per process on a 2-core machine."""
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    torch.set_num_threads(1)


def finish() -> None:
    """Leave the group and exit without running the destructors: DDP's Reducer joins gloo's worker
    thread while holding the GIL, and that thread may still need the GIL to free its last work item;
    the process then never exits (seen on a loaded 2-core machine: the test hung until killed)."""
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)
