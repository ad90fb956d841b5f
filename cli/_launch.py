"""Commands started by ``torchrun``: this rank's device, threads and share of the work.

``torchrun --nproc-per-node N -m speechvae enhance ...`` starts N copies of the command.
Each plans and checks every output (so all of them refuse the same bad command), then
processes every N-th file (``files[rank::N]``) with the same seed per file as a
single-process run, so the outputs are identical. Each rank prints its own per-file lines;
rank 0 prints the summary of all ranks (JSON included); every rank exits 1 if any file
failed. A plain run is rank 0 of 1 and behaves as before.
"""
from __future__ import annotations

import os


def rank_setup(device: str, threads: int | None):
    """``(launch, device, threads)`` of this process.

    In a multi-process launch a gloo process group is created (only small summaries travel
    between ranks), ``cuda``/``cuda:N`` becomes ``cuda:LOCAL_RANK``, and on CPU the cores
    are split between the processes of the node unless ``threads`` is given.
    """
    from speechvae import distributed as D

    launch = D.init_distributed("cpu")
    device = D.local_device(device, launch)
    if threads is None and launch.distributed and not device.startswith("cuda"):
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        threads = max(1, cores // launch.local_world_size)
    return launch, device, threads


def my_share(launch, jobs: list) -> list:
    """This rank's jobs, ``jobs[rank::world_size]``, after every rank has checked all the
    outputs (so that no rank sees another rank's fresh output as an existing file)."""
    from speechvae import distributed as D

    D.barrier()
    return jobs[launch.rank::launch.world_size]


def gather_results(launch, results: list[dict], failures: list[dict]):
    """``(results, failures, seconds)`` of the whole launch, in rank order.

    ``seconds`` is the processing time: the sum over files in a single process, the
    slowest rank's sum in a multi-process launch. Every rank must call this.
    """
    from speechvae import distributed as D

    if not launch.distributed:
        return results, failures, sum(r["seconds"] for r in results)
    parts = D.all_gather_objects((results, failures))
    return ([r for rs, _ in parts for r in rs], [f for _, fs in parts for f in fs],
            max(sum(r["seconds"] for r in rs) for rs, _ in parts))
