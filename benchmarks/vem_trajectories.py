#!/usr/bin/env python3
"""VEM trajectories: the SI-SDR and unsupervised statistics of each file along the iterations.

Runs the VEM loop of :func:`speechvae.enhancement.em.run_em` by hand on each pair of a
rendered noisy/clean set (the mixture peak-normalised as ``speechvae.enhance`` does, seed
0), and every 5 iterations computes the speech estimate of the posterior-mean Wiener filter
and its SI-SDR against the clean reference (an oracle, for analysis only), with the speech
share of the mixture power that filter keeps, the geometric-mean gain ``g`` and the fraction
of the mixture power in ``W H``. Every iteration it records the objective and the speech
share of the E-step's sample (:func:`speechvae.enhancement.em.speech_share`, what
``EMConfig.share_tol`` uses). Writes one JSON list (one record per pair) after every pair.

``--share-rule JSON...`` instead evaluates the speech-share stopping rule offline on earlier
outputs: for each window, tolerance and cap, the mean SI-SDR at the iteration where
:func:`speechvae.enhancement.em.share_settled` first holds (rounded to the nearest 5), and
the mean and largest iteration counts.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/vem_trajectories.py runs/tuning vae OUT.json \\
        [--iterations 300] [--variant k=v,...] [--every 1] [--offset 0]
    python benchmarks/vem_trajectories.py --share-rule runs/s6/trajS_tuning.json ...
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from enhance_tune import parse_variant

import speechvae
from speechvae.audio import load_audio
from speechvae.enhancement.em import share_settled, speech_share
from speechvae.enhancement.model import initial_noise, mixture_power
from speechvae.enhancement.vem import VEMStep
from speechvae.metrics import si_sdr
from speechvae.stft import istft, stft

CHECK_EVERY = 5


def trajectory(prior, cfg, clean: np.ndarray, noisy: np.ndarray, seed: int = 0) -> dict:
    """The record of one pair (see the module docstring)."""
    peak = float(np.abs(noisy).max())
    spec = stft(torch.from_numpy(noisy / peak).float(), prior.stft_config)[None]
    gen = torch.Generator().manual_seed(seed)
    mixture, power, mask, lengths = mixture_power(prior, spec, [spec.shape[-1]])
    step = VEMStep(prior, mixture, power, mask, lengths, cfg, [gen])
    step.init_latents()
    nmf = initial_noise(power, lengths, cfg.nmf_rank, cfg.init_noise_level, [gen],
                        cfg.noise_init, cfg.floor_quantile)
    nmf = step.start(nmf)
    rec = {k: [] for k in ("it", "sisdr", "share", "gmean", "noisefrac", "obj", "share_s")}
    total = float(power.sum())
    for it in range(1, cfg.iterations + 1):
        est = step.e_step(nmf)
        with torch.no_grad():
            rec["share_s"].append(speech_share(power, est.speech_var, nmf, est.moments)[0])
            nmf = step.m_step(nmf, est)
        rec["obj"].append(est.objective[0])
        if it % CHECK_EVERY:
            continue
        with torch.no_grad():
            gain = step.wiener_gain(nmf)
            s = istft((gain * mixture)[0], len(noisy), prior.stft_config).numpy() * peak
        rec["it"].append(it)
        rec["sisdr"].append(float(si_sdr(clean, s)))
        rec["share"].append(float((gain.square() * power).sum()) / total)
        rec["gmean"].append(float(nmf.g.log().mean().exp()))
        rec["noisefrac"].append(float(nmf.noise_variance().sum()) / total)
    return rec


def share_rule_table(paths: list[Path]) -> None:
    for path in paths:
        recs = json.loads(path.read_text())
        its = recs[0]["it"]
        sisdr = np.array([r["sisdr"] for r in recs])
        print(f"{path}: {len(recs)} pairs")
        for cap in (100, 150, 200, 300):
            if cap in its:
                print(f"  fixed {cap}: SI-SDR {sisdr[:, its.index(cap)].mean():.3f}")
        for window in (10, 15, 25):
            for tol in (0.005, 0.01, 0.015, 0.02, 0.03):
                for cap in (200, 300):
                    vals, stops = [], []
                    for r in recs:
                        shares, stop = r["share_s"], min(cap, len(r["share_s"]))
                        for t in range(1, stop + 1):
                            if share_settled(shares[:t], tol, window):
                                stop = t
                                break
                        k = min(range(len(its)), key=lambda j: abs(its[j] - stop))
                        vals.append(r["sisdr"][k])
                        stops.append(stop)
                    print(f"  window {window} tol {tol} cap {cap}: SI-SDR {np.mean(vals):.3f}, "
                          f"iterations mean {np.mean(stops):.0f} max {max(stops)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", type=Path, nargs="?")
    ap.add_argument("prior", nargs="?", default="vae")
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--variant", default="", help="VEMConfig fields, k=v,... (enhance_tune)")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--share-rule", type=Path, nargs="+", metavar="JSON")
    a = ap.parse_args()
    if a.share_rule:
        share_rule_table(a.share_rule)
        return
    if a.set is None or a.out is None:
        ap.error("give SET PRIOR OUT (or --share-rule JSON...)")
    torch.set_num_threads(a.threads)
    prior = speechvae.load_prior(a.prior)
    cfg = dataclasses.replace(parse_variant("v:" + a.variant)[2], iterations=a.iterations)
    with open(a.set / "list.csv", newline="") as f:
        pairs = list(csv.DictReader(f))[a.offset::a.every]
    out = []
    for p in pairs:
        clean, _ = load_audio(a.set / p["clean"])
        noisy, _ = load_audio(a.set / p["noisy"])
        rec = {"name": p["name"], "snr": p["snr_db"], **trajectory(prior, cfg, clean, noisy)}
        out.append(rec)
        print(p["name"], " ".join(f"{i}:{v:.2f}" for i, v in zip(rec["it"], rec["sisdr"])
                                  if i % 25 == 0), flush=True)
        a.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
