#!/usr/bin/env python3
"""CPU time of enhancement settings, interleaved, for a load-independent speed ratio.

On a machine shared with other jobs, wall-clock real-time factors swing with the load; the
CPU time this process spends (``time.process_time``, all its threads) does not, so the
ratio between settings measured this way, file by file and interleaved, is what to quote
beside a quiet wall-clock RTF of the reference setting.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/enhance_cputime.py --set runs/eval/devset --every 24 \\
        --reps 2 --variant old:iterations=50,wiener=samples --variant new:iterations=75
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from enhance_tune import parse_variant

import speechvae
from speechvae.audio import load_audio


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=Path("runs/eval/devset"))
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--every", type=int, default=24)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prior", default="vae", help="prior of variants without prior=")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    variants = [parse_variant(v, a.prior) for v in a.variant]
    priors = {p: speechvae.load_prior(p) for p in dict.fromkeys(v[3] for v in variants)}
    with open(a.set / "list.csv", newline="") as f:
        pairs = list(csv.DictReader(f))[::a.every]
    x, sr = load_audio(a.set / pairs[0]["noisy"])
    for _, alg, cfg, prior in variants:
        speechvae.enhance(x[:sr], sr, prior=priors[prior], algorithm=alg,
                          config=dataclasses.replace(cfg, iterations=2))
    cpu = {v[0]: 0.0 for v in variants}
    audio = 0.0
    for p in pairs:
        noisy, sr = load_audio(a.set / p["noisy"])
        audio += a.reps * len(noisy) / sr
        for _ in range(a.reps):
            for name, alg, cfg, prior in variants:
                t0 = time.process_time()
                speechvae.enhance(noisy, sr, prior=priors[prior], algorithm=alg, config=cfg, seed=0)
                cpu[name] += time.process_time() - t0
    first = variants[0][0]
    print(f"{len(pairs)} files x {a.reps} reps, {audio:.1f} s of audio, threads {a.threads}")
    print("| setting | CPU s per audio s | ratio |")
    print("|---|---:|---:|")
    for name, t in cpu.items():
        print(f"| {name} | {t / audio:.4f} | {t / cpu[first]:.2f} |")


if __name__ == "__main__":
    main()
