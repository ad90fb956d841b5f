#!/usr/bin/env python3
"""Spectrogram figures of the pairs where enhancement gains least (issue 15, "find where it
loses").

Reads the per-pair scores of earlier ``benchmarks/enhance_tune.py --json-out`` runs, picks
the ``--n`` pairs with the smallest SI-SDR gain of one variant over the noisy input, enhances
each again with that variant (same seed, through the public ``speechvae.enhance``) and draws
one PNG per pair: the noisy input, the clean reference, the speech estimate, the true noise
(``noisy - clean``) and the noise estimate (``noisy - estimate``), on one dB scale. Prints a
Markdown table of the pairs with their noise descriptors (non-stationarity: standard deviation
of the noise's frame level in dB; spectral flatness: mean over frames) and where the
estimate's error lies (speech removed: clean energy missing from the estimate; noise left:
noise energy still in it, each in dB relative to the clean speech energy, from the
projection of the estimate on the clean signal and the true noise).

Usage:
    python benchmarks/enhance_worst.py runs/enh15/devfull_o0.json runs/enh15/devfull_o1.json \\
        --set runs/eval/devset --noise-info ../shared/data/devset.csv --variant new \\
        --n 4 --out docs/figures
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from enhance_noise_kinds import noise_measures
from enhance_tune import join_parts, noise_types, parse_variant

import speechvae
from speechvae.audio import load_audio
from speechvae.evaluation.report import plot_spectrograms


def error_split(clean: np.ndarray, noise: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """``(speech removed, noise left)`` in dB relative to the clean energy: the estimate is
    projected (least squares) on ``[clean, noise]``; speech removed is ``(1 - a)^2 |s|^2``,
    noise left ``b^2 |n|^2`` for the coefficients ``a``, ``b``."""
    basis = np.stack([clean, noise], 1).astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(basis, estimate.astype(np.float64), rcond=None)
    es = float(np.sum(clean.astype(np.float64) ** 2)) + 1e-20
    removed = (1 - a) ** 2 * es
    left = b ** 2 * float(np.sum(noise.astype(np.float64) ** 2))
    return 10 * np.log10(removed / es + 1e-12), 10 * np.log10(left / es + 1e-12)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", type=Path, nargs="+", help="enhance_tune.py --json-out files")
    ap.add_argument("--set", type=Path, default=Path("runs/eval/devset"))
    ap.add_argument("--noise-info", type=Path)
    ap.add_argument("--variant", required=True,
                    help="the variant to show, as in enhance_tune.py (NAME:k=v,...); NAME "
                         "must be a variant of the score files")
    ap.add_argument("--prior", default="vae")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/worst"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows, names = join_parts([json.loads(p.read_text()) for p in a.scores])
    name, alg, cfg, prior_name = parse_variant(a.variant, a.prior)
    if name not in names:
        sys.exit(f"error: variant {name!r} is not in the score files (they have "
                 f"{', '.join(names)})")
    rows = [r for r in rows if f"{name}/SI-SDR" in r]
    worst = sorted(rows, key=lambda r: r[f"{name}/SI-SDR"] - r["noisy/SI-SDR"])[:a.n]
    types = noise_types(a.set, a.noise_info)
    with open(a.set / "list.csv", newline="") as f:
        files = {r["name"]: r for r in csv.DictReader(f)}
    prior = speechvae.load_prior(prior_name)
    a.out.mkdir(parents=True, exist_ok=True)
    print("| pair | noise type | input SNR | SI-SDR in → out | non-stationarity (dB) | "
          "flatness | speech removed (dB) | noise left (dB) | figure |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in worst:
        p = files[r["name"]]
        clean, sr = load_audio(a.set / p["clean"])
        noisy, _ = load_audio(a.set / p["noisy"])
        out = speechvae.enhance(noisy, sr, prior=prior, algorithm=alg, config=cfg,
                                seed=a.seed).waveform
        noise = noisy - clean
        nonstat, flat = noise_measures(noise)
        removed, left = error_split(clean, noise, out)
        fig = a.out / f"worst_{r['name']}.png"
        plot_spectrograms([("noisy input", noisy), ("clean reference", clean),
                           (f"speech estimate ({name})", out), ("true noise", noise),
                           ("noise estimate (input - speech estimate)", noisy - out)],
                          fig, title=f"{r['name']}: SI-SDR {r['noisy/SI-SDR']:.1f} → "
                                     f"{r[f'{name}/SI-SDR']:.1f} dB", sample_rate=sr)
        print(f"| {r['name']} | {types.get(r['name'], 'unknown')} | {r['snr']} | "
              f"{r['noisy/SI-SDR']:.2f} → {r[f'{name}/SI-SDR']:.2f} | {nonstat:.1f} | "
              f"{flat:.3f} | {removed:.1f} | {left:.1f} | {fig} |", flush=True)


if __name__ == "__main__":
    main()
