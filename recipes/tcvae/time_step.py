#!/usr/bin/env python3
"""Time training steps of priors from recipe YAMLs on real batches of the training corpus.

Usage: python recipes/tcvae/time_step.py CONF [CONF ...] [--threads 1] [--steps 10]
       [--data-root DIR] [--cache-dir runs/cache] [--init PRIOR]

For each recipe: the prior it trains (fresh weights, or ``--init`` weights where the class and
config match, e.g. a warm start), its segment sampler over the speaker-split training cache of
``recipes/train_prior.py`` (same batch size, segment length and silence rule), then one warm-up
and ``--steps`` timed Adam steps of the negative ELBO. Prints a Markdown table: seconds per
step, frames per second, optimiser steps per epoch and the estimated training time of one
epoch (steps x seconds per step, validation not included), with the machine, threads and
commit.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT, speaker_split

from speechvae.priors import get_prior_class
from speechvae.training import TrainConfig, build_cache
from speechvae.training.data import SegmentSampler


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", type=Path, nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    ap.add_argument("--init", default=None, metavar="PRIOR",
                    help="start every prior whose class and config match from these weights")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not (a.data_root / "manifest.csv").exists():
        sys.exit(f"error: {a.data_root}/manifest.csv not found (give --data-root)")
    init = None
    if a.init is not None:
        from speechvae import load_prior

        init = load_prior(a.init)
    caches = {}
    rows = []
    for path in a.configs:
        conf = yaml.safe_load(path.read_text())
        data = conf.get("data", {})
        splits = tuple(data.get("splits", ("train", "train_extra", "train_more")))
        key = (splits, data.get("val_fraction", 0.05), data.get("trim_top_db", 40))
        if key not in caches:
            files, _, _ = speaker_split(a.data_root, key[1], conf["train"].get("seed", 0),
                                        splits)
            caches[key] = build_cache(files, a.cache_dir, top_db=key[2])
        train = TrainConfig(**conf["train"])
        cls = get_prior_class(conf["prior"]["name"])
        pconf = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in conf["prior"].get("config", {}).items()}
        torch.manual_seed(train.seed)
        prior = cls(cls.config_class(**pconf))
        if init is not None and init.name == prior.name and init.config == prior.config:
            prior.load_state_dict(init.state_dict())
        prior.train()
        sampler = SegmentSampler(caches[key], train.sequence_length, train.batch_size,
                                 train.silence_db)
        batches = sampler.batches(torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(prior.parameters(), lr=train.lr)
        noise = torch.Generator().manual_seed(1)
        times = []
        for i in range(a.steps + 1):
            power = next(batches)
            t0 = time.perf_counter()
            loss = prior.neg_elbo(power, beta=train.beta, generator=noise)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if train.grad_clip:
                torch.nn.utils.clip_grad_norm_(prior.parameters(), train.grad_clip)
            opt.step()
            if i:  # the first step warms up the allocator and kernels
                times.append(time.perf_counter() - t0)
        step = sorted(times)[len(times) // 2]
        frames = train.batch_size * train.sequence_length
        n_steps = len(sampler)
        if train.max_batches_per_epoch:
            n_steps = min(n_steps, train.max_batches_per_epoch)
        params = sum(p.numel() for p in prior.parameters())
        rows.append(f"| {path} | {prior.name} | {params:,} | {train.batch_size} x "
                    f"{train.sequence_length} | {step:.3f} | {frames / step:,.0f} | {n_steps} | "
                    f"{n_steps * step / 60:.1f} |")
        print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    print(f"\nmachine: {_cpu()}; threads {a.threads}; CPU; torch {torch.__version__}; "
          f"commit {commit}; median of {a.steps} steps after one warm-up\n")
    print("| recipe | prior | parameters | batch | s per step | frames per s | steps per epoch "
          "| min per epoch (training) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
