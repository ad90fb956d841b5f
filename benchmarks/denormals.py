#!/usr/bin/env python3
"""Training-step time of a prior with and without flushing subnormal floats to zero.

Usage:
    python benchmarks/denormals.py CHECKPOINT [--audio-dir DIR] [--threads 1] [--steps 7]

Each mode runs in its own process (the flush is process-wide and set when
``speechvae.priors`` is imported; ``SPEECHVAE_DENORMALS=keep`` turns it off): Adam steps of
``prior.neg_elbo`` on batches of 32 segments of 50 frames cut from the power spectrograms of
the files in ``--audio-dir`` (default: synthetic speech-like signals), after one warm-up step.
Subnormals appear with *trained* weights: give a trained checkpoint, e.g.
``runs/rvae_noncausal/best.pt``. Prints a Markdown table with the machine, threads and commit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(a) -> None:
    import time

    import numpy as np
    import torch
    from signals import speech_like

    from speechvae.audio import load_audio
    from speechvae.priors import load_checkpoint
    from speechvae.priors import DENORMALS_FLUSHED
    from speechvae.stft import stft

    torch.set_num_threads(a.threads)
    prior = load_checkpoint(a.checkpoint)
    prior.train()
    if a.audio_dir:
        files = sorted(p for p in Path(a.audio_dir).rglob("*")
                       if p.suffix.lower() in (".wav", ".flac"))[:40]
        waves = [load_audio(p)[0] for p in files]
    else:
        waves = [speech_like(6.0, seed) for seed in range(40)]
    specs = [stft(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)),
                  prior.stft_config).abs().square() for w in waves]
    segments = [s[:, i:i + 50] for s in specs for i in range(0, s.shape[1] - 49, 50)]
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(segments), generator=g)
    batches = [torch.stack([segments[int(j)] for j in order[k:k + 32]])
               for k in range(0, len(order) - 31, 32)][: a.steps + 1]
    opt = torch.optim.Adam(prior.parameters(), lr=1e-3)

    def step(power):
        loss = prior.neg_elbo(power, beta=1.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(batches[0])
    t0 = time.perf_counter()
    for b in batches[1:]:
        step(b)
    dt = (time.perf_counter() - t0) / (len(batches) - 1)
    print(json.dumps({"flushed": DENORMALS_FLUSHED, "steps": len(batches) - 1,
                      "seconds_per_step": dt}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--audio-dir", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    from speechvae.evaluation.report import machine_info

    rows = []
    for mode in ("keep", ""):
        env = {**os.environ, "SPEECHVAE_DENORMALS": mode, "OMP_NUM_THREADS": str(a.threads)}
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child"], env=env,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    m = machine_info()
    print(f"machine: {m['machine']}, {m['cores']} cores; threads: {a.threads}; device: cpu; "
          f"torch {m['torch']}; commit {m['commit']}; checkpoint {a.checkpoint}; "
          f"data: {a.audio_dir or 'synthetic speech-like signals'}")
    print()
    print("| subnormals | steps | s per step (32 x 50 frames) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {'flushed' if r['flushed'] else 'kept'} | {r['steps']} | "
              f"{r['seconds_per_step']:.3f} |")


if __name__ == "__main__":
    main()
