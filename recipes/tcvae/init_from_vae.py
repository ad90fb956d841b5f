#!/usr/bin/env python3
"""Write a TCVAE checkpoint that starts as a trained frame-wise VAE, for ``train_prior.py --init``.

Usage: python recipes/tcvae/init_from_vae.py recipes/tcvae/conf_warm.yaml --vae vae
       --out runs/tcvae_init.pt

The TCVAE of the recipe's ``prior.config`` gets the VAE's encoder input layer, mean and
log-variance layers, decoder input layer and output layer (``speechvae.priors.TCVAE.from_vae``);
its residual blocks start as the identity, so the checkpoint's encoder and decoder equal the
VAE's and its validation loss is the VAE's. Then

    python recipes/train_prior.py recipes/tcvae/conf_warm.yaml --out runs/tcvae_warm \
        --init runs/tcvae_init.pt --threads 1

trains the temporal blocks (and fine-tunes the rest) from there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from speechvae import load_prior
from speechvae.priors import TCVAE, TCVAEConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, help="a TCVAE recipe YAML")
    ap.add_argument("--vae", default="vae", help="shipped VAE name or checkpoint path")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    a = ap.parse_args()
    conf = yaml.safe_load(a.config.read_text())
    if conf["prior"]["name"] != TCVAE.name:
        sys.exit(f"error: {a.config}: trains a {conf['prior']['name']!r} prior, not 'tcvae'")
    pconf = {k: tuple(v) if isinstance(v, list) else v
             for k, v in conf["prior"].get("config", {}).items()}
    vae = load_prior(a.vae)
    try:
        prior = TCVAE.from_vae(vae, TCVAEConfig(**pconf))
    except (TypeError, ValueError) as exc:
        sys.exit(f"error: {a.config} with --vae {a.vae}: {exc}")
    meta = {"init_from_vae": a.vae, "recipe": str(a.config),
            "vae_metadata": {k: v for k, v in getattr(vae, "metadata", {}).items()
                             if k in ("epochs_trained", "best_epoch", "val_loss_per_frame",
                                      "commit", "recipe")}}
    prior.save(a.out, meta)  # atomic
    print(f"wrote {a.out} (TCVAE starting as {a.vae})")


if __name__ == "__main__":
    main()
