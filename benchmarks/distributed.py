#!/usr/bin/env python3
"""Benchmark multi-process runs (``torchrun``) against one process, on CPU.

Generates a synthetic corpus (harmonic "speech" with a syllable envelope plus white noise),
then times, for 1 process and for ``--processes`` processes with ``--threads`` threads each:

* training: ``speechvae train`` of the default VAE architecture (recipes/vae/conf.yaml),
  ``--epochs`` epochs of ``--steps`` optimiser steps of ``--batch-size`` frames; the time is
  the sum of the epoch times in log.csv (start-up and cache excluded: the cache is built
  before timing);
* enhancement: ``speechvae enhance`` of ``--files`` files of ``--seconds`` s with the
  shipped prior and ``--iterations`` VEM iterations; the time is the processing time the
  command reports (the slowest rank's) and the wall time of the whole command.

It also times reading batches from the memory-mapped cache against a training step, to
show whether DataLoader worker processes would help. Prints a Markdown table.

    python benchmarks/distributed.py                   # 2 processes x 1 thread
    python benchmarks/distributed.py --steps 50 --files 4 --seconds 2 --iterations 10
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
from signals import speech_like  # benchmarks/signals.py (the script folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SR = 16000



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "speechvae"]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
            "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "speechvae"]


def _run(cmd: list[str], threads: int) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), GLOO_SOCKET_IFNAME="lo")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return wall, r.stdout


def _commit() -> str:
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                           capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
        return c + ("-dirty" if c and dirty else "")
    except OSError:
        return ""


def _memmap_vs_step(cache, batch_size: int, threads: int, n: int = 30) -> tuple[float, float]:
    """Milliseconds to read one batch from the memory map, and for one training step."""
    import torch

    from speechvae.priors import VAE
    from speechvae.training import SegmentSampler

    torch.set_num_threads(threads)
    sampler = SegmentSampler(cache, 1, batch_size)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    batches = [b for _, b in zip(range(n), sampler.batches(g))]
    read = (time.perf_counter() - t0) / len(batches)
    prior = VAE()
    opt = torch.optim.Adam(prior.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for b in batches:
        loss = prior(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = (time.perf_counter() - t0) / len(batches)
    return 1e3 * read, 1e3 * step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per process")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=100, help="optimiser steps per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--files", type=int, default=8, help="files to enhance")
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of each")
    ap.add_argument("--iterations", type=int, default=20, help="VEM iterations")
    a = ap.parse_args()

    from speechvae.audio import list_audio_files
    from speechvae.training import build_cache

    tmp = Path(tempfile.mkdtemp(prefix="speechvae-dist-bench-"))
    # training corpus: enough frames for `steps` batches per epoch (hop 256 samples)
    frames = a.batch_size * a.steps * 1.1
    n_train = 40
    per_file = frames * 256 / SR / n_train
    (tmp / "train").mkdir()
    for i in range(n_train):
        sf.write(str(tmp / "train" / f"t{i:03d}.wav"), speech_like(per_file, i, 0.02), SR)
    (tmp / "val").mkdir()
    for i in range(4):
        sf.write(str(tmp / "val" / f"v{i}.wav"), speech_like(5.0, 1000 + i, 0.02), SR)
    (tmp / "noisy").mkdir()
    for i in range(a.files):
        sf.write(str(tmp / "noisy" / f"n{i}.wav"), speech_like(a.seconds, 2000 + i, 0.3), SR)
    cache_dir = tmp / "cache"
    train_cache = build_cache(list_audio_files([tmp / "train"]), cache_dir, progress=False)
    build_cache(list_audio_files([tmp / "val"]), cache_dir, progress=False)
    read_ms, step_ms = _memmap_vs_step(train_cache, a.batch_size, a.threads)

    conf = tmp / "conf.yaml"
    conf.write_text((REPO / "recipes" / "vae" / "conf.yaml").read_text()
                    .replace("epochs: 300", f"epochs: {a.epochs}\n  max_batches_per_epoch: "
                             f"{a.steps}")
                    .replace("batch_size: 512", f"batch_size: {a.batch_size}"))

    rows = []
    for p in sorted({1, a.processes}):
        out = tmp / f"train{p}"
        wall, _ = _run(_launcher(p) + ["train", "--config", str(conf), "--out", str(out),
                                       "--train-dir", str(tmp / "train"), "--val-dir",
                                       str(tmp / "val"), "--cache-dir", str(cache_dir),
                                       "--threads", str(a.threads), "--json"], a.threads)
        with open(out / "log.csv", newline="") as fh:
            seconds = sum(float(r["seconds"]) for r in csv.DictReader(fh))
        rows.append(("train", p, f"{a.epochs}x{a.steps} steps of {a.batch_size} frames",
                     seconds, wall))
    for p in sorted({1, a.processes}):
        wall, stdout = _run(_launcher(p) + ["enhance", str(tmp / "noisy"), "--output-dir",
                                            str(tmp / f"enh{p}"), "--threads",
                                            str(a.threads), "--iterations",
                                            str(a.iterations), "--json"], a.threads)
        seconds = json.loads(stdout)["seconds"]
        work = f"{a.files} files x {a.seconds:g} s, {a.iterations} VEM iterations"
        rows.append(("enhance", p, work, seconds, wall))

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {cores} cores "
          f"({platform.node()}), torch {torch.__version__}, commit {_commit()}, "
          f"{a.threads} thread(s) per process")
    print()
    print("| task | processes | work | compute s | speed-up | wall s (whole command) |")
    print("|---|---|---|---|---|---|")
    base = {}
    for task, p, work, seconds, wall in rows:
        base.setdefault(task, seconds)
        print(f"| {task} | {p} | {work} | {seconds:.2f} | {base[task] / seconds:.2f}x | "
              f"{wall:.1f} |")
    print()
    print(f"memory-mapped cache: reading one batch of {a.batch_size} frames {read_ms:.2f} ms, "
          f"one training step {step_ms:.2f} ms ({100 * read_ms / step_ms:.0f} %)")
    print(f"(files in {tmp})")


if __name__ == "__main__":
    main()
