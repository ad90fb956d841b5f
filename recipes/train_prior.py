#!/usr/bin/env python3
"""Train a prior on the ../shared/data speech corpus from a recipe YAML.

Usage: python recipes/train_prior.py recipes/vae/conf.yaml --out runs/vae [--data-root DIR]
       [--device cpu|cuda] [--threads N] [--epochs N] [--max-files N] [--init PRIOR]

Multi-process: torchrun --nproc-per-node N recipes/train_prior.py ... (one GPU per process
with --device cuda; see docs/distributed.md). Runs resume: start the same command again after
an interruption. ``--init PRIOR`` (a shipped prior's name or a checkpoint path) warm-starts a
new run from those weights (same prior class and config; ignored when the run resumes from its
own last.pt), so a lost runs/ folder costs only the optimiser state. The best checkpoint is
runs/<name>/best.pt; copy it to speechvae/pretrained/ to ship it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_ROOT, speaker_split

from speechvae import distributed as D
from speechvae.priors import get_prior_class
from speechvae.training import TrainConfig, build_cache, train_prior


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--max-files", type=int, default=None,
                    help="use only the first N training files (and N/10 validation files, at "
                         "least 1): a quick check of a recipe, not a training")
    ap.add_argument("--init", default=None, metavar="PRIOR",
                    help="warm-start a new run from these weights (shipped name or checkpoint "
                         "path; same prior class and config); a run that resumes from its "
                         "last.pt ignores it")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    launch = D.init_distributed(a.device)  # no-op unless started by torchrun
    say = print if launch.is_main else (lambda *args, **kw: None)
    conf = yaml.safe_load(a.config.read_text())
    if not (a.data_root / "manifest.csv").exists():
        sys.exit(f"error: {a.data_root}/manifest.csv not found (give --data-root)")
    data = conf.get("data", {})
    train_files, val_files, split_info = speaker_split(
        a.data_root, data.get("val_fraction", 0.05), conf["train"].get("seed", 0),
        tuple(data.get("splits", ("train", "train_extra", "train_more"))))
    if a.max_files is not None:
        train_files, val_files = train_files[:a.max_files], val_files[:max(1, a.max_files // 10)]
        split_info = dict(split_info, max_files=a.max_files, train_files=len(train_files),
                          val_files=len(val_files))
    say(json.dumps(split_info))
    top_db = data.get("trim_top_db", 40)
    train = build_cache(train_files, a.cache_dir, top_db=top_db)
    val = build_cache(val_files, a.cache_dir, top_db=top_db)
    say(f"train frames {train.num_frames}, val frames {val.num_frames}", flush=True)
    tconf = dict(conf["train"])
    if a.epochs is not None:
        tconf["epochs"] = a.epochs
    train_config = TrainConfig(**tconf)
    cls = get_prior_class(conf["prior"]["name"])
    pconf = {k: tuple(v) if isinstance(v, list) else v
             for k, v in conf["prior"].get("config", {}).items()}
    torch.manual_seed(train_config.seed)
    prior = cls(cls.config_class(**pconf))
    init_info = {"init": a.init} if a.init is not None else None
    if a.init is not None and not (a.out / "last.pt").exists():
        from speechvae import load_prior

        start = load_prior(a.init)
        if start.name != prior.name or start.config != prior.config:
            sys.exit(f"error: --init {a.init}: a {start.name} prior with another config than "
                     f"{a.config} ({start.config} vs {prior.config})")
        prior.load_state_dict(start.state_dict())
        init_info = {"init": a.init, "init_metadata": {
            k: v for k, v in getattr(start, "metadata", {}).items()
            if k in ("epochs_trained", "best_epoch", "val_loss_per_frame", "commit", "recipe")}}
        say(f"warm start from {a.init}")
    try:
        # outside a git checkout: empty commit, not an error
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    meta = {"data": split_info, "recipe": str(a.config), "commit": commit,
            "train_frames": train.num_frames, "val_frames": val.num_frames,
            "command": " ".join(["python"] + sys.argv), "world_size": launch.world_size}
    if init_info is not None:
        meta.update(init_info)
    summary = train_prior(prior, train, val, train_config, a.out, device=a.device,
                          metadata=meta)
    summary["train_config"] = dataclasses.asdict(train_config)
    say(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
