#!/usr/bin/env python3
"""Where enhancement loses: SI-SDR improvement by the kind of noise of each pair.

The corpus' noise folders carry no class labels, so each pair's noise (``noisy - clean``) is
described by two measures computed here, and the pairs are grouped by their terciles:

* non-stationarity: standard deviation over frames of the frame level in dB (32 ms frames,
  16 ms hop, frames within 50 dB of the loudest only); impulsive noises (barks, knocks,
  keyboard) score high, steady hums and fans low;
* spectral flatness: mean over frames of the Wiener entropy (geometric / arithmetic mean of
  the power spectrum); broadband noises (running water, fans) score high, tonal or
  harmonic (speech-like, music, engines) noises low.

Reads the per-file rows written by ``benchmarks/enhance_tune.py --json-out`` (one or more
files, joined by pair name as its ``--tables-from``) and the set they were measured on.

Usage:
    python benchmarks/enhance_noise_kinds.py --set runs/eval/devset runs/enh15/dev_o0.json \\
        runs/enh15/dev_o5.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from speechvae.audio import load_audio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from enhance_tune import join_parts


def noise_measures(noise: np.ndarray, frame: int = 512, hop: int = 256) -> tuple[float, float]:
    """``(non-stationarity in dB, spectral flatness in [0, 1])`` of a noise waveform
    ``(time,)`` at 16 kHz (see the module docstring)."""
    n = 1 + max(0, (len(noise) - frame) // hop)
    frames = np.stack([noise[i * hop:i * hop + frame] for i in range(n)]) * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    level = 10 * np.log10(power.sum(1))
    keep = level > level.max() - 50
    flat = np.exp(np.log(power).mean(1)) / power.mean(1)
    return float(level[keep].std()), float(flat[keep].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("results", type=Path, nargs="+")
    a = ap.parse_args()
    rows, names = join_parts([json.loads(p.read_text()) for p in a.results])
    rows = [r for r in rows if all(f"{n}/SI-SDR" in r for n in names)]
    for r in rows:
        clean, _ = load_audio(a.set / "clean" / f"{r['name']}.wav")
        noisy, _ = load_audio(a.set / "noisy" / f"{r['name']}.wav")
        r["nonstat"], r["flat"] = noise_measures(noisy - clean)
    for key, label in (("nonstat", "non-stationarity (dB)"), ("flat", "spectral flatness")):
        vals = np.array([r[key] for r in rows])
        edges = np.quantile(vals, [1 / 3, 2 / 3])
        print(f"\n| {label} tercile | range | n | input SNR | "
              + " | ".join(f"{m} ΔSI-SDR" for m in names) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(names))
        for t, (lo, hi) in enumerate(zip([-np.inf, *edges], [*edges, np.inf])):
            sel = [r for r in rows if lo <= r[key] < hi]
            if not sel:
                continue
            rng = f"{min(r[key] for r in sel):.2f}–{max(r[key] for r in sel):.2f}"
            snr = np.mean([float(r["snr"].split()[0]) for r in sel])
            gains = [np.mean([r[f"{m}/SI-SDR"] - r["noisy/SI-SDR"] for r in sel])
                     for m in names]
            print(f"| {('low', 'mid', 'high')[t]} | {rng} | {len(sel)} | {snr:+.1f} | "
                  + " | ".join(f"{g:+.2f}" for g in gains) + " |")
    worst = sorted(rows, key=lambda r: r[f"{names[-1]}/SI-SDR"] - r["noisy/SI-SDR"])[:5]
    print("\nsmallest gains (last variant):")
    for r in worst:
        print(f"  {r['name']} ({r['noise type']}): noisy {r['noisy/SI-SDR']:.2f} dB, "
              + ", ".join(f"{m} {r[f'{m}/SI-SDR']:.2f}" for m in names)
              + f"; non-stationarity {r['nonstat']:.1f} dB, flatness {r['flat']:.3f}")


if __name__ == "__main__":
    main()
