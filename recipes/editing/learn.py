"""Learn the shipped source–filter subspaces of a prior (Sadok et al. 2023, DESIGN §5).

Synthetic labelled vowels (Praat KlattGrid) give the subspaces and regressions; with
``--speech-files N`` the f0 regression is also fitted on the voiced frames of N clean training
utterances of ../shared/data (f0 labels from Praat; never dev or FDA speech), see
``speechvae.editing.learn_subspaces``. Prints the subspace table and the dot products between
the factors' basis vectors (the paper's disentanglement measure).

    OMP_NUM_THREADS=1 python recipes/editing/learn.py --prior vae \\
        -o speechvae/pretrained/editing/vae.pt        # the shipped subspaces
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

from common import read_manifest

from speechvae.audio import load_audio
from speechvae.editing import learn_subspaces, make_factor_datasets
from speechvae.priors import load_prior

TRAIN_SPLITS = ("train", "train_extra", "train_more")


def training_speech(data_root: Path, count: int, seed: int, max_s: float = 8.0) -> list:
    """``count`` clean training utterances (first ``max_s`` seconds each), seeded draw."""
    rows = [r for r in read_manifest(data_root) if r["split"] in TRAIN_SPLITS]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    out = []
    for i in sorted(chosen):
        x, sr = load_audio(data_root / rows[i]["path"], 16000)
        out.append(x[: int(max_s * sr)])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="vae")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--data-root", type=Path,
                    default=Path(__file__).resolve().parents[2].parent / "shared" / "data")
    ap.add_argument("--files-per-factor", type=int, default=200)
    ap.add_argument("--speech-files", type=int, default=0)
    ap.add_argument("--variance-share", type=float, default=0.8,
                    help="share of latent variance kept by the formant subspaces (paper: 0.8)")
    ap.add_argument("--f0-variance-share", type=float, default=None,
                    help="share kept by the f0 subspace [default: --variance-share]")
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = load_prior(args.prior)
    t0 = time.perf_counter()
    datasets = make_factor_datasets(args.files_per_factor, seed=args.seed)
    speech = (training_speech(args.data_root, args.speech_files, args.seed)
              if args.speech_files else None)
    shares = {f: args.variance_share for f in ("F1", "F2", "F3")}
    shares["f0"] = args.f0_variance_share or args.variance_share
    subspaces = learn_subspaces(prior, datasets, variance_share=shares,
                                segments=args.segments, speech=speech)
    subspaces.prior["source"] = str(args.prior)
    subspaces.info["seed"] = args.seed
    subspaces.save(args.output)
    labels, gram = subspaces.disentanglement()
    print(subspaces.summary())
    print(f"\nlargest |dot product| between factors: {subspaces.max_cross_dot():.2f}")
    print("\n| | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for name, row in zip(labels, gram.tolist()):
        print(f"| {name} | " + " | ".join(f"{v:+.2f}" for v in row) + " |")
    print(f"\nwrote {args.output} in {time.perf_counter() - t0:.1f} s; "
          f"info {json.dumps(subspaces.info)}")


if __name__ == "__main__":
    main()
