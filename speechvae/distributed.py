"""Multi-process runs (``torchrun``): who am I, set up the process group, small collectives.

A process started by ``torchrun`` (``python -m torch.distributed.run``) finds ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
environment. :func:`init_distributed` turns that into a default process group (once per
process; a caller that made its own group keeps it) and every helper here is a no-op in a
plain single-process run, so library code calls them unconditionally.

Backends: ``gloo`` for CPU runs; ``cpu:gloo,cuda:nccl`` when the run uses CUDA, so that
gradients go through NCCL while small CPU-side results (validation sums, summaries) still
use gloo.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "Launch",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "launch_info",
    "local_device",
]


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a (possibly single-process) launch.

    Attributes:
        rank: global rank, 0 .. world_size - 1.
        world_size: number of processes over all nodes.
        local_rank: rank on this node (selects the GPU).
        local_world_size: processes on this node (shares the CPU cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes shared files."""
        return self.rank == 0


def launch_info() -> Launch:
    """This process's place, from the initialised process group or else ``torchrun``'s
    environment variables (a plain run: rank 0 of 1)."""
    env = os.environ
    local_rank = int(env.get("LOCAL_RANK", 0))
    local_world = int(env.get("LOCAL_WORLD_SIZE", 1))
    if dist.is_available() and dist.is_initialized():
        return Launch(dist.get_rank(), dist.get_world_size(), local_rank, local_world)
    world = int(env.get("WORLD_SIZE", 1))
    return Launch(int(env.get("RANK", 0)), world, local_rank, local_world if world > 1 else 1)


def local_device(device: str, launch: Launch | None = None) -> str:
    """The device this rank uses: in a distributed launch ``cuda``/``cuda:N`` become
    ``cuda:LOCAL_RANK`` (one GPU per process); anything else is returned unchanged."""
    launch = launch or launch_info()
    if launch.distributed and str(device).startswith("cuda"):
        return f"cuda:{launch.local_rank}"
    return str(device)


def init_distributed(device: str = "cpu") -> Launch:
    """Create the default process group from ``torchrun``'s environment if the launch has
    several processes and no group exists yet; return this process's :class:`Launch`.

    Args:
        device: the device the caller computes on; ``cuda...`` selects NCCL (plus gloo for
            CPU tensors) and sets this rank's current CUDA device.

    Raises:
        RuntimeError: ``WORLD_SIZE > 1`` but torch was built without distributed support.
    """
    launch = launch_info()
    if not launch.distributed:
        return launch
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if str(device).startswith("cuda"):
        torch.cuda.set_device(launch.local_rank)
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_destroy)
    return launch_info()


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in a single-process run)."""
    if _active():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few floats over ranks in float64 (returned unchanged in a single-process run)."""
    if not _active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself in a single-process run."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single-process run."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
