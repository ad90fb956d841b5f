#!/usr/bin/env python3
"""Resynthesis quality of a prior: oracle phase vs Griffin–Lim, on the dev clean speech.

Usage: OMP_NUM_THREADS=1 python recipes/resynthesis/run.py [--prior vae] [--threads 1]
       [--data-root ../shared/data] [--gl-iter 32] [--json out.json]

Each dev file (../shared/data/speech/dev/*/*.flac) is encoded by the prior (posterior
mean), decoded to a power spectrogram and turned back into a waveform with

* ``oracle``: the decoded magnitude with the input's own STFT phase;
* ``griffin-lim``: fast Griffin–Lim (momentum 0.99) from the decoded power;
* ``griffin-lim, clean power`` (no prior): Griffin–Lim from the input's own power
  spectrogram, the vocoder's share of the error.

Scores against the input: SI-SDR (dB), PESQ-WB (ITU-T P.862.2) and ESTOI; mean over files.
Prints a Markdown table with the machine, the thread count and the commit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT

from speechvae.audio import load_audio
from speechvae.evaluation.report import machine_info
from speechvae.metrics import estoi, pesq_wb, si_sdr
from speechvae.priors import load_prior
from speechvae.stft import power_spectrogram
from speechvae.synthesis import resynthesize
from speechvae.vocoders import GriffinLim, GriffinLimConfig


def _machine() -> str:
    return machine_info()["machine"]


def _commit() -> str:
    return machine_info()["commit"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", default="vae")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gl-iter", type=int, default=32)
    ap.add_argument("--limit", type=int, help="first N files only (smoke runs)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    files = sorted((args.data_root / "speech" / "dev").glob("*/*.flac"))[: args.limit]
    if not files:
        raise SystemExit(f"no dev files under {args.data_root / 'speech' / 'dev'}")
    prior = load_prior(args.prior)
    sr = prior.stft_config.sample_rate
    gl = GriffinLim(GriffinLimConfig(n_iter=args.gl_iter), prior.stft_config)
    methods = {
        "oracle phase (prior)": lambda x: resynthesize(x, sr, prior, "oracle"),
        "Griffin–Lim (prior)": lambda x: resynthesize(x, sr, prior, gl),
        "Griffin–Lim, clean power (no prior)": lambda x: gl(
            power_spectrogram(torch.from_numpy(x / np.abs(x).max())), length=x.size
        ).numpy() * np.abs(x).max(),
    }
    scores = {m: {"si_sdr": [], "pesq_wb": [], "estoi": [], "seconds": []} for m in methods}
    total_s = 0.0
    for f in files:
        x, _ = load_audio(f, sr)
        total_s += x.size / sr
        for name, fn in methods.items():
            t0 = time.perf_counter()
            y = fn(x)
            scores[name]["seconds"].append(time.perf_counter() - t0)
            scores[name]["si_sdr"].append(si_sdr(x, y))
            scores[name]["pesq_wb"].append(pesq_wb(x, y, sr))
            scores[name]["estoi"].append(estoi(x, y, sr))
    summary = {m: {k: float(np.mean(v)) for k, v in s.items() if k != "seconds"}
               | {"rtf": float(np.sum(s["seconds"]) / total_s)} for m, s in scores.items()}
    print(f"Prior `{args.prior}`, {len(files)} dev files ({total_s:.0f} s), Griffin–Lim "
          f"{args.gl_iter} iterations, momentum 0.99. Machine: {_machine()}, "
          f"{args.threads} thread(s), commit {_commit()}.\n")
    print("| method | SI-SDR (dB) | PESQ-WB | ESTOI | real-time factor |")
    print("|---|---|---|---|---|")
    for m, s in summary.items():
        print(f"| {m} | {s['si_sdr']:.2f} | {s['pesq_wb']:.2f} | {s['estoi']:.3f} | "
              f"{s['rtf']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"prior": args.prior, "files": len(files),
                                         "threads": args.threads, "results": summary},
                                        indent=1))


if __name__ == "__main__":
    main()
