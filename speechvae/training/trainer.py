"""Training loop for priors: Adam on the negative ELBO, early stopping, resume, logging.

The trainer owns everything stateful about a run and keeps it in ``out_dir``:

* ``last.pt``  -- full training state (weights, optimiser, generator, epoch, history), written
  atomically after every epoch; a run started again with the same ``out_dir`` resumes from it;
* ``best.pt``  -- the prior checkpoint with the lowest validation loss (a self-describing
  prior checkpoint, see :func:`speechvae.priors.save_prior`);
* ``log.csv``  -- one line per epoch: train/val loss, IS and KL terms, seconds.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same call trains data-parallel: the prior is
wrapped in ``DistributedDataParallel``, every batch of ``config.batch_size`` segments is split
over the ranks (the global batch, the number of optimiser steps and the learning rate stay
those of the single-process run, so a recipe gives the same model, only faster), validation
sums are added over ranks, and only rank 0 prints and writes ``out_dir``. A single-process
run is unchanged, bit for bit.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import distributed as D
from ..checkpoint import atomic_torch_save, safe_torch_load
from ..priors.base import Prior, save_prior
from .data import SegmentSampler, SpectrogramCache

__all__ = ["TrainConfig", "evaluate_prior", "train_prior"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: segments per batch (per optimiser step, summed over all processes of a
            distributed run).
        sequence_length: frames per segment (1 for frame-wise priors, ~50 for dynamical ones).
        lr: Adam learning rate.
        beta: final weight of the KL term.
        kl_warmup_epochs: epochs over which beta rises linearly from 0 (0 = no warm-up).
        patience: stop after this many epochs without a validation improvement.
        seed: seeds weights (via the caller), batch order and reparameterisation noise.
        max_batches_per_epoch: cap on batches per epoch (None = whole training set).
        silence_db: skip segments this far below their file's loudest frame (None: keep all).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        lr_decay_patience: multiply the learning rate by ``lr_decay_factor`` after this many
            epochs without a validation improvement (None: constant learning rate).
        lr_decay_factor: see ``lr_decay_patience``.
    """

    epochs: int = 500
    batch_size: int = 512
    sequence_length: int = 1
    lr: float = 1e-3
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    patience: int = 20
    seed: int = 0
    max_batches_per_epoch: int | None = None
    silence_db: float | None = 50.0
    grad_clip: float | None = None
    lr_decay_patience: int | None = None
    lr_decay_factor: float = 0.3


@torch.no_grad()
def evaluate_prior(prior: Prior, sampler: SegmentSampler, beta: float = 1.0, seed: int = 0,
                   device="cpu", launch: D.Launch | None = None) -> dict[str, float]:
    """Mean negative ELBO (and its IS / KL terms) per frame over a sampler, with fixed noise.

    With ``launch`` of a distributed run, each rank evaluates its shard of every batch (noise
    seeded ``seed + rank``) and the per-frame sums are added over ranks, so every rank
    returns the same numbers; every rank must call it.
    """
    launch = launch or D.Launch()
    prior.eval()
    g = torch.Generator(device=device).manual_seed(seed + launch.rank)
    tot = {"loss": 0.0, "is": 0.0, "kl": 0.0}
    n = 0
    for power in sampler.batches(shuffle=False, rank=launch.rank,
                                 world_size=launch.world_size):
        if power.shape[0] == 0:
            continue
        power = power.to(device)
        out = prior.neg_elbo(power, beta=beta, generator=g)
        frames = power.shape[0] * power.shape[2]
        for k in tot:
            tot[k] += float(out[k]) * frames
        n += frames
    if launch.distributed:
        *sums, n = D.all_reduce_sum([*tot.values(), n])
        tot = dict(zip(tot, sums))
    return {k: v / n for k, v in tot.items()}


def train_prior(prior: Prior, train: SpectrogramCache, val: SpectrogramCache,
                config: TrainConfig, out_dir: str | Path, device="cpu",
                progress: bool = True, metadata: dict | None = None) -> dict:
    """Train ``prior`` and return a summary (best epoch, best validation loss, epochs run).

    Resumes from ``out_dir/last.pt`` when it exists (the file must come from the same prior
    name and config). The best model is saved to ``out_dir/best.pt`` with ``metadata`` plus
    training facts (epochs, validation loss, train config).

    Distributed (``torchrun``, see the module docstring): every rank calls this with the same
    arguments; the process group is created from the environment if the caller has not done
    so, ``device="cuda"`` means this rank's GPU (``cuda:LOCAL_RANK``), every rank returns
    the same summary and only rank 0 writes files and prints.

    Raises:
        ValueError: ``last.pt`` belongs to another prior or config.
    """
    from tqdm.auto import tqdm

    launch = D.init_distributed(str(device))
    device = D.local_device(str(device), launch)
    main = launch.is_main
    progress = progress and main
    out_dir = Path(out_dir)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    prior.to(device)
    model = prior
    if launch.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # broadcasts rank 0's initial weights; backward() averages the gradients
        model = DistributedDataParallel(
            prior, device_ids=[launch.local_rank] if device.startswith("cuda") else None)
    opt = torch.optim.Adam(prior.parameters(), lr=config.lr)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.lr_decay_factor, patience=config.lr_decay_patience)
        if config.lr_decay_patience is not None else None)
    gen = torch.Generator().manual_seed(config.seed)  # batch order: the same on every rank
    # reparameterisation noise: one stream per rank (rank 0's is the single-process one)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1 + 1000 * launch.rank)
    train_sampler = SegmentSampler(train, config.sequence_length, config.batch_size,
                                   config.silence_db)
    val_sampler = SegmentSampler(val, config.sequence_length, config.batch_size,
                                 config.silence_db)
    history: list[dict] = []
    start_epoch, best, best_epoch, stale = 0, math.inf, -1, 0
    prior_config = dataclasses.asdict(prior.config)

    last = out_dir / "last.pt"
    # rank 0 reads last.pt and sends it to every rank (out_dir need not be shared by nodes)
    state = safe_torch_load(last) if main and last.exists() else None
    state = D.broadcast_object(state)
    if state is not None:
        try:  # compare configs as objects: a field added later with a default still matches
            stored = type(prior.config)(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in state["prior_config"].items()})
        except TypeError:
            stored = None
        if state["prior_name"] != prior.name or stored != prior.config:
            raise ValueError(f"{last}: belongs to another prior/config; use a new output folder")
        prior.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        noise_states = state.get("noise_generators") or [state["noise_generator"]]
        if len(noise_states) == launch.world_size:
            noise_gen.set_state(noise_states[launch.rank].to(noise_gen.get_state().device))
        else:  # resumed with another number of processes: fresh noise streams, same order
            noise_gen.manual_seed(config.seed + 1 + 1000 * launch.rank + 7919 * state["epoch"])
        history = state["history"]
        start_epoch, best, best_epoch, stale = (state["epoch"] + 1, state["best"],
                                                state["best_epoch"], state["stale"])
        if progress:
            print(f"resuming from {last} at epoch {start_epoch}")

    log_path = out_dir / "log.csv"
    fields = ["epoch", "beta", "lr", "train_loss", "train_is", "train_kl", "val_loss", "val_is",
              "val_kl", "seconds"]
    if main:  # rewrite the log from the restored history so it matches last.pt exactly
        with open(log_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows([{k: r.get(k, "") for k in fields} for r in history])

    n_batches = len(train_sampler)
    if config.max_batches_per_epoch:
        n_batches = min(n_batches, config.max_batches_per_epoch)
    n_segments = len(train_sampler.starts)
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            break
        t0 = time.perf_counter()
        beta = config.beta
        if config.kl_warmup_epochs:
            beta = config.beta * min(1.0, (epoch + 1) / config.kl_warmup_epochs)
        prior.train()
        tot = {"loss": 0.0, "is": 0.0, "kl": 0.0}
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}", disable=not progress or not sys.stderr.isatty(), leave=False)
        batches = train_sampler.batches(gen, rank=launch.rank, world_size=launch.world_size)
        for i, power in enumerate(batches):
            if i >= n_batches:
                break
            out = model(power.to(device), beta=beta, generator=noise_gen)
            loss = out["loss"]
            weight = 1.0
            if launch.distributed:
                # the losses are means over each rank's frames and DDP averages gradients
                # over ranks: weighting by this rank's share of the batch makes the
                # gradient that of the mean over the whole batch, even when shards differ
                n_global = min(config.batch_size, n_segments - i * config.batch_size)
                weight = power.shape[0] / n_global
                loss = loss * (weight * launch.world_size)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(prior.parameters(), config.grad_clip)
            opt.step()
            for k in tot:
                tot[k] += float(out[k].detach()) * weight
            bar.update()
        bar.close()
        if launch.distributed:
            tot = dict(zip(tot, D.all_reduce_sum(list(tot.values()))))
        val = evaluate_prior(prior, val_sampler, beta=config.beta, seed=config.seed,
                             device=device, launch=launch)
        if sched is not None and beta >= config.beta:
            sched.step(val["loss"])
        row = {"epoch": epoch, "beta": beta, "lr": opt.param_groups[0]["lr"],
               "train_loss": tot["loss"] / n_batches, "train_is": tot["is"] / n_batches,
               "train_kl": tot["kl"] / n_batches, "val_loss": val["loss"],
               "val_is": val["is"], "val_kl": val["kl"],
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        improved = val["loss"] < best
        if improved:
            best, best_epoch, stale = val["loss"], epoch, 0
        elif beta >= config.beta:  # patience only counts once the KL warm-up is over
            stale += 1
        noise_states = D.all_gather_objects(noise_gen.get_state().cpu())
        if main:
            if improved:
                meta = dict(metadata or {})
                meta.update(epochs_trained=epoch + 1, best_epoch=epoch, val_loss_per_frame=best,
                            train_config=dataclasses.asdict(config))
                if launch.distributed:
                    meta.update(world_size=launch.world_size)
                save_prior(prior, out_dir / "best.pt", meta)
            state = {"prior_name": prior.name, "prior_config": prior_config,
                     "model": prior.state_dict(), "optimizer": opt.state_dict(),
                     "generator": gen.get_state(),
                     "noise_generator": noise_states[0], "history": history,
                     "scheduler": sched.state_dict() if sched is not None else None,
                     "epoch": epoch, "best": best, "best_epoch": best_epoch,
                     "stale": stale}
            if launch.distributed:
                state["noise_generators"] = noise_states
            atomic_torch_save(state, last)
            with open(log_path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=fields).writerow(row)
        D.barrier()  # the epoch's files are complete before any rank goes on (or returns)
        if progress:
            print(f"epoch {epoch:4d}  train {row['train_loss']:.2f}  val {val['loss']:.2f} "
                  f"(IS {val['is']:.2f}, KL {val['kl']:.2f})  best {best:.2f}@{best_epoch}  "
                  f"{row['seconds']:.1f}s", flush=True)
    return {"best_epoch": best_epoch, "best_val_loss": best, "epochs_run": len(history),
            "best_path": str(out_dir / "best.pt")}
