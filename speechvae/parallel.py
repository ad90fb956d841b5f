"""Worker processes over files: many independent files, each single-threaded.

The tensors of one file are small: torch's intra-op threads give a file little speed, and on
a machine where another process holds a core, spinning OpenMP threads that wait for each
other cost a lot (a 6-s file took 16-32 s instead of 0.5 s). Files in a folder are
independent work, so :func:`enhance_in_pool` gives each of ``workers`` processes one torch
thread (by default) and whole files, longest first.

The pool uses the ``spawn`` start method: forking a process that has started torch's thread
pools (or CUDA) is unsafe. A spawned worker imports torch again, which takes seconds, so the
calling process enhances files itself while its workers start, and hands a worker tasks only
once it is up. Each worker sets its thread count and loads the prior once, in its
initializer. As with any ``spawn``/``forkserver`` pool, a script that
calls this must guard its entry point with ``if __name__ == "__main__":``. Every file is seeded as in a one-process run, so with the same thread count the
outputs are the same bit for bit. Warnings raised in a worker are raised again in the calling
process (where its filters and display apply); progress reports travel over a queue.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

__all__ = ["available_cores", "enhance_in_pool"]


def available_cores() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where
    that does not exist), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_WORKER: dict = {}




def _init_worker(prior, device, threads: int, progress_queue, run: Callable,
                 resolve: Callable) -> None:
    """Initializer of a worker process: threads, then the prior, once (``resolve``), and the
    function that enhances a list of files (``run``)."""
    import torch

    torch.set_num_threads(threads)
    _WORKER["prior"] = resolve(prior, device)
    _WORKER["queue"] = progress_queue
    _WORKER["run"] = run


def _ready() -> int:
    """A no-op task: done once a worker has started (its initializer has run)."""
    return os.getpid()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 -- any failure to round-trip: send its text instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _run_task(indices: list[int], jobs: list, batch_size: int, options: dict):
    """Enhance ``jobs`` (global indices ``indices``) in this worker; returns the results and
    the warnings raised, to be shown by the calling process."""
    enhance_files = _WORKER["run"]
    q = _WORKER.get("queue")

    def progress(i: int, seconds: float, iterations: int) -> None:
        if q is not None:
            q.put((indices[i], seconds, iterations))

    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, info in enhance_files(jobs, prior=_WORKER["prior"], batch_size=batch_size,
                                     progress=progress, **options):
            results.append((indices[i], _picklable(info) if isinstance(info, BaseException)
                            else info))
    return results, [(str(w.message), w.category) for w in caught]


def _drain(q, progress: Callable | None) -> None:
    if q is None:
        return
    while True:
        try:
            item = q.get_nowait()
        except (queue_module.Empty, OSError, ValueError):
            return
        if progress is not None:
            progress(*item)


def _in_this_process(task: list[int], jobs: list, prior, batch_size: int, options: dict,
                     progress: Callable | None, enhance_files: Callable):
    def report(i: int, seconds: float, iterations: int) -> None:
        if progress is not None:
            progress(task[i], seconds, iterations)

    for i, info in enhance_files([jobs[k] for k in task], prior=prior, batch_size=batch_size,
                                 progress=report, **options):
        yield task[i], info


def enhance_in_pool(jobs: list, prior, workers: int, threads: int | None = None,
                    batch_size: int = 1, durations: list[float] | None = None,
                    progress: Callable | None = None, device="cpu",
                    options: dict | None = None, *, run: Callable,
                    resolve: Callable) -> Iterator[tuple[int, object]]:
    """Enhance files in ``workers`` processes; yields ``(job_index, info or exception)`` as
    files complete (see :func:`speechvae.enhancement.enhance_files`, which calls this for
    ``workers > 1``).

    The calling process is one of the ``workers``: it starts ``workers - 1`` worker
    processes and enhances files itself while they start (a spawned process imports torch
    again, which takes seconds), with ``threads`` torch threads for the time of each of its files (its own
    setting is restored after). A worker gets tasks once it has started, two at a time; a
    small folder may be done before any worker is up (they are then stopped).

    Args:
        jobs: ``(input_path, output_path, noise_path or None)`` per file.
        prior: a Prior (sent to every worker), a shipped name or a checkpoint path (loaded
            once by every worker), or None (``"vae"``).
        workers: number of processes, this one included (at most one per task).
        threads: torch threads per process; default 1.
        batch_size: files per task, enhanced as one batch; 1: one file per task.
        durations: seconds per job: tasks are handed out longest first.
        progress: ``(job_index, seconds_done, iterations)`` callback, called in this process.
        device: torch device of the workers.
        options: the other keyword arguments of ``run`` (config, algorithm, seed,
            overwrite, segment_s, overlap_s, output_rate, device).
        run: the function that enhances a list of files in one process,
            ``run(jobs, prior=, batch_size=, progress=, **options)`` yielding
            ``(index, info or exception)`` (:func:`speechvae.enhancement.enhance_files`; a
            module-level function, so that spawned workers can import it).
        resolve: ``(prior, device) -> Prior`` (loads a name or path once per process).

    A task whose worker dies (e.g. killed for memory) yields its files with the exception.
    When the caller stops iterating, tasks not yet started are cancelled; started ones
    finish (their outputs are complete files).
    """
    import torch

    options = dict(options or {})
    threads = threads or 1
    n = len(jobs)
    if durations is None:
        durations = [0.0] * n
    if batch_size == 1:
        tasks = [[i] for i in sorted(range(n), key=lambda i: -durations[i])]
    else:  # groups of similar durations (little padding), the longest group first
        order = sorted(range(n), key=lambda i: durations[i])
        tasks = [order[k:k + batch_size] for k in range(0, n, batch_size)]
        tasks.sort(key=lambda g: -sum(durations[i] for i in g))
    if prior is None:
        prior = "vae"
    if isinstance(prior, os.PathLike):
        prior = str(prior)
    local_prior = resolve(prior, device)
    children = max(0, min(workers, len(tasks)) - 1)
    todo = deque(tasks)
    q = executor = None
    inflight: dict = {}
    warm: list = []
    if children:
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue() if progress is not None else None
        executor = ProcessPoolExecutor(max_workers=children, mp_context=ctx,
                                       initializer=_init_worker,
                                       initargs=(prior, device, threads, q, run, resolve))
        warm = [executor.submit(_ready) for _ in range(children)]  # starts the workers

    def top_up() -> None:
        ready = sum(f.done() and f.exception() is None for f in warm)
        while executor is not None and todo and len(inflight) < 2 * ready:
            task = todo.popleft()
            inflight[executor.submit(_run_task, task, [jobs[i] for i in task], batch_size,
                                     options)] = task

    def collect(futures) -> Iterator[tuple[int, object]]:
        for fut in futures:
            task = inflight.pop(fut)
            try:
                results, caught = fut.result()
            except Exception as exc:  # noqa: BLE001 -- e.g. a worker that died
                results, caught = [(i, exc) for i in task], []
            for message, category in caught:
                warnings.warn(message, category, stacklevel=3)
            yield from results

    try:
        top_up()
        while todo or inflight:
            yield from collect([f for f in list(inflight) if f.done()])
            _drain(q, progress)
            top_up()
            if todo:  # this process works too
                own = torch.get_num_threads()
                torch.set_num_threads(threads)
                try:
                    yield from _in_this_process(todo.popleft(), jobs, local_prior, batch_size,
                                                options, progress, run)
                finally:
                    torch.set_num_threads(own)
            elif inflight:
                done, _ = wait(list(inflight), timeout=0.2, return_when=FIRST_COMPLETED)
                yield from collect(done)
        _drain(q, progress)
    finally:
        if executor is not None:
            if not all(f.done() for f in warm):  # workers still starting: not needed now
                for proc in list(getattr(executor, "_processes", {}).values()):
                    proc.terminate()
            executor.shutdown(wait=True, cancel_futures=True)
        if q is not None:
            q.close()
            q.join_thread()
