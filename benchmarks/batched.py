#!/usr/bin/env python3
"""Throughput of batched VEM enhancement (``--batch-size``) against one file at a time.

Generates ``--files`` noisy signals of ``--seconds`` s (harmonic "speech" with a syllable
envelope plus white noise, each with its own pitch and noise) and enhances them in memory
with the shipped prior (``--prior``, default ``vae``) and VEM, ``B`` files per batch for each
``B`` of ``--batch-sizes``: ``B = 1`` is the one-file path
(:func:`speechvae.enhancement.enhance_segment`), ``B > 1`` the batched one
(:func:`speechvae.enhancement.enhance_segments`). File reading and writing are left out; the
STFT, inference and inverse STFT are timed. One untimed warm-up batch precedes each batch
size. Prints a Markdown table: files/s, and the real-time factor RTF = processing time /
audio duration (below 1: faster than real time).

    python benchmarks/batched.py --threads 1                    # CPU
    python benchmarks/batched.py --device cuda --batch-sizes 1,4,16,64 --files 64
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

from signals import speech_like  # benchmarks/signals.py (the script folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SR = 16000



def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
    c = git("rev-parse", "--short", "HEAD") or "unknown"
    return c + ("+dirty" if git("status", "--porcelain") else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--batch-sizes", default="1,4,16", help="comma-separated batch sizes")
    ap.add_argument("--files", type=int, default=16, help="files per batch size")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each file")
    ap.add_argument("--iterations", type=int, default=None,
                    help="VEM iterations [default: VEMConfig's]")
    ap.add_argument("--prior", default="vae", help="shipped prior name or checkpoint")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import dataclasses

    import torch

    from speechvae.enhancement import VEMConfig, enhance_segment, enhance_segments
    from speechvae.priors import load_prior

    torch.set_num_threads(args.threads)
    prior = load_prior(args.prior, device=args.device)
    config = VEMConfig()
    if args.iterations is not None:
        config = dataclasses.replace(config, iterations=args.iterations)
    signals = [speech_like(args.seconds, i) for i in range(args.files)]

    def sync():
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()

    def run(batch, seed=0):
        gens = [torch.Generator(device=args.device).manual_seed(seed) for _ in batch]
        if len(batch) == 1:
            return [enhance_segment(prior, batch[0], config, gens[0], args.device)]
        return enhance_segments(prior, batch, config, gens, args.device)

    device_name = (torch.cuda.get_device_name(torch.device(args.device))
                   if str(args.device).startswith("cuda") else "cpu")
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores), torch {torch.__version__}, threads {args.threads}, "
          f"device {device_name}, commit {_commit()}")
    print(f"{args.files} files of {args.seconds:g} s, prior {args.prior!r}, VEM "
          f"{config.iterations} iterations, rank {config.nmf_rank}\n")
    print("| batch size | files/s | RTF | speed-up |")
    print("|---:|---:|---:|---:|")
    base = None
    for b in (int(v) for v in args.batch_sizes.split(",")):
        run(signals[:b])  # warm-up (allocator, kernels, first-call imports)
        sync()
        t0 = time.perf_counter()
        for start in range(0, len(signals), b):
            run(signals[start:start + b])
        sync()
        elapsed = time.perf_counter() - t0
        rate = len(signals) / elapsed
        base = base or rate
        print(f"| {b} | {rate:.3f} | {elapsed / (len(signals) * args.seconds):.4f} | "
              f"{rate / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
