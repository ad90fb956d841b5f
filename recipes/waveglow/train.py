#!/usr/bin/env python3
"""Train WaveGlow (Prenger, Valle, Catanzaro, ICASSP 2019) on clean speech at 16 kHz.

Usage:
    python recipes/waveglow/train.py recipes/waveglow/conf.yaml --out runs/waveglow \
        [--data DIR ...] [--device cpu|cuda] [--steps N] [--threads N] [--no-resume]
    torchrun --nproc-per-node N recipes/waveglow/train.py ... --device cuda   # DDP

Loss: the WaveGlow negative log-likelihood per sample, ``sum(z^2) / (2 sigma^2) -
sum(log s) - sum(log|det W|)`` (:func:`speechvae.vocoders.waveglow_loss`). Each step takes
random 1 s segments of random training files (files shorter than a segment are zero-padded),
computes the model's own log-mel and runs Adam. ``OUT/last.pt`` (model, optimiser, step,
configs) is written atomically every ``checkpoint_every`` steps and at the end; a run
restarted with the same command resumes from it. ``OUT/waveglow.pt`` is the model alone in
speechvae's vocoder format (load with ``speechvae.vocoders.load_waveglow``, or pass it to
``--vocoder-checkpoint``).

Data: by default the training splits of ../shared/data/speech (train, train_extra,
train_more); ``--data`` takes folders instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT, TRAIN_SPLITS

from speechvae.audio import list_audio_files, load_audio
from speechvae.checkpoint import atomic_torch_save, safe_torch_load
from speechvae.vocoders import (
    WaveGlow,
    WaveGlowConfig,
    save_waveglow,
    waveglow_loss,
    waveglow_mel,
)


@dataclass(frozen=True)
class WaveGlowTrainConfig:
    """Training settings (the ``train:`` section of the recipe YAML)."""

    segment_length: int = 16000
    batch_size: int = 12
    learning_rate: float = 1e-4
    sigma: float = 1.0
    steps: int = 500000
    checkpoint_every: int = 2000
    log_every: int = 100
    seed: int = 1234


def load_conf(path) -> tuple[WaveGlowConfig, WaveGlowTrainConfig]:
    with open(path) as fh:
        conf = yaml.safe_load(fh)
    return WaveGlowConfig(**conf.get("model", {})), WaveGlowTrainConfig(**conf.get("train", {}))


class SegmentLoader:
    """Random fixed-length segments of random files; files are read once and kept in memory
    (the corpus here is a few hours; use a streaming loader for more)."""

    def __init__(self, files, sample_rate: int, segment_length: int, seed: int):
        self.files = list(files)
        if not self.files:
            raise ValueError("no training audio files")
        self.sample_rate, self.segment_length, self.seed = sample_rate, segment_length, seed
        self._cache: dict[int, np.ndarray] = {}

    def _audio(self, i: int) -> np.ndarray:
        if i not in self._cache:
            self._cache[i] = load_audio(self.files[i], self.sample_rate)[0]
        return self._cache[i]

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        """``(batch, segment_length)`` float32; depends only on (seed, step, rank)."""
        rng = np.random.default_rng([self.seed, step, rank])
        out = np.zeros((batch_size, self.segment_length), np.float32)
        for b in range(batch_size):
            x = self._audio(int(rng.integers(len(self.files))))
            if x.size > self.segment_length:
                start = int(rng.integers(x.size - self.segment_length + 1))
                x = x[start: start + self.segment_length]
            out[b, : x.size] = x
        return torch.from_numpy(out)


def _dist():
    """(rank, world_size) and the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def train(model_config: WaveGlowConfig, config: WaveGlowTrainConfig, files, out: Path,
          device: str = "cpu", resume: bool = True, log=print) -> dict:
    """Train (or resume) a WaveGlow; returns ``{"step", "loss"}`` of the last step."""
    rank, world = _dist()
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
        torch.cuda.set_device(device)
    if config.segment_length % model_config.n_group:
        raise ValueError("segment_length must be a multiple of n_group")
    torch.manual_seed(config.seed)
    model = WaveGlow(model_config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    step = 0
    if resume and last.exists():
        state = safe_torch_load(last, map_location=device)
        if state["model_config"] != model_config.to_dict():
            raise ValueError(f"{last}: model config differs from the recipe; use a new --out")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        log(f"resumed from {last} at step {step}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.startswith("cuda") else None)
    loader = SegmentLoader(files, model_config.sample_rate, config.segment_length,
                           config.seed)

    def save():
        if rank != 0:
            return
        atomic_torch_save({"format": "speechvae-waveglow-train", "step": step,
                           "model_config": model_config.to_dict(),
                           "train_config": dataclasses.asdict(config),
                           "state_dict": {k: v.detach().cpu()
                                          for k, v in model.state_dict().items()},
                           "optimizer": opt.state_dict()}, last)
        save_waveglow(model, out / "waveglow.pt", {"step": step})

    loss_value = float("nan")
    t0 = time.perf_counter()
    while step < config.steps:
        audio = loader.batch(step, config.batch_size, rank).to(device)
        with torch.no_grad():
            mel = waveglow_mel(audio, model_config)
        z, log_s, log_det = net(mel, audio)
        loss = waveglow_loss(z, log_s, log_det, config.sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise FloatingPointError(f"non-finite loss at step {step}")
        if rank == 0 and step % config.log_every == 0:
            log(json.dumps({"step": step, "loss": round(loss_value, 5),
                            "seconds": round(time.perf_counter() - t0, 1)}))
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
    return {"step": step, "loss": loss_value}


def default_files(data_root: Path) -> list[Path]:
    dirs = [data_root / "speech" / s for s in TRAIN_SPLITS if (data_root / "speech" / s).is_dir()]
    return list_audio_files(dirs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("conf")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", nargs="*", type=Path, help="folders of clean speech")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_config, config = load_conf(args.conf)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    files = list_audio_files(args.data) if args.data else default_files(args.data_root)
    result = train(model_config, config, files, args.out, args.device,
                   resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
