"""``speechvae train``: train a prior on folders of clean speech."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sys
from pathlib import Path

import click

from ._common import (
    CLIError,
    emit,
    format_seconds,
    one_line,
    print_json,
    resolve_device,
    set_threads,
    warn,
)


def read_config(path: Path) -> dict:
    """Read and check a recipe YAML (``prior: {name, config}``, ``train: {...}``, optional
    ``data: {val_fraction, trim_top_db}``; other keys are ignored).

    Raises:
        FileNotFoundError: no such file.
        CLIError: not YAML, or not of the expected structure.
    """
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        conf = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or one_line(str(exc))
        raise CLIError(f"{path}: not valid YAML ({where}{problem})") from None
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a text (YAML) file") from None
    if not isinstance(conf, dict):
        raise CLIError(f"{path}: expected a mapping with 'prior' and 'train' sections")
    prior = conf.get("prior")
    if not isinstance(prior, dict) or not isinstance(prior.get("name"), str):
        raise CLIError(f"{path}: missing 'prior: name: ...' (one of the registered priors, "
                       "see 'speechvae priors')")
    for section, holder in (("prior.config", prior.get("config", {})),
                            ("train", conf.get("train", {})), ("data", conf.get("data", {}))):
        if holder is not None and not isinstance(holder, dict):
            raise CLIError(f"{path}: '{section}' must be a mapping")
    return conf


def split_files(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded random split of files (not speakers: they are unknown) into train and
    validation; at least one file each.

    Raises:
        CLIError: fewer than two files.
    """
    if len(files) < 2:
        raise CLIError(f"need at least 2 training files to split off a validation set, got "
                       f"{len(files)}; add files or give --val-dir")
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    val = set(random.Random(seed).sample(sorted(files), n_val))
    return [f for f in files if f not in val], sorted(val)


def _build(conf: dict, config_path: Path, epochs: int | None, seed: int | None):
    """The prior (seeded) and TrainConfig described by a recipe."""
    import torch

    from speechvae.priors import get_prior_class
    from speechvae.training import TrainConfig

    tconf = dict(conf.get("train") or {})
    if epochs is not None:
        tconf["epochs"] = epochs
    if seed is not None:
        tconf["seed"] = seed
    try:
        train_config = TrainConfig(**tconf)
    except TypeError as exc:
        raise CLIError(f"{config_path}: train: {exc} (see speechvae.training.TrainConfig)")
    cls = get_prior_class(conf["prior"]["name"])
    pconf = {k: tuple(v) if isinstance(v, list) else v
             for k, v in (conf["prior"].get("config") or {}).items()}
    try:
        prior_config = cls.config_class(**pconf)
    except TypeError as exc:
        raise CLIError(f"{config_path}: prior.config: {exc} "
                       f"(see {cls.config_class.__module__}.{cls.config_class.__name__})")
    torch.manual_seed(train_config.seed)
    return cls(prior_config), train_config


@click.command(no_args_is_help=True,
               short_help="Train a prior on folders of clean speech.")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Recipe YAML, e.g. recipes/vae/conf.yaml (sections prior, train, data).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: best.pt, last.pt, log.csv, files.json. Starting again with the "
                   "same folder resumes the run.")
@click.option("--train-dir", "train_dirs", multiple=True, required=True,
              type=click.Path(path_type=Path),
              help="Folder (or file) of clean speech, searched recursively; repeatable.")
@click.option("--val-dir", "val_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Validation folder (or file); repeatable. Default: a random fraction of the "
                   "training files.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              metavar="F", help="Fraction of training files held out for validation when no "
                                "--val-dir is given [default: data.val_fraction of the config, "
                                "else 0.05].")
@click.option("--epochs", type=click.IntRange(min=1), metavar="N",
              help="Override train.epochs of the config.")
@click.option("--seed", type=int, help="Override train.seed (weights, split, batch order).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where spectrogram caches go [default: OUT/cache].")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda[:N]",
              help="Torch device.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads used by torch [default: torch's choice].")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary on stdout (per-epoch lines go to stderr).")
def train(config_path, out_dir, train_dirs, val_dirs, val_fraction, epochs, seed, cache_dir,
          device, threads, as_json):
    """Train a clean-speech prior on your own folders of clean speech.

    The prior type and its architecture come from the config's 'prior' section (a registered
    prior, see 'speechvae priors'), the optimisation settings from its 'train' section
    (speechvae.training.TrainConfig). Audio is read as mono 16 kHz, peak-normalised, and
    leading/trailing silence below data.trim_top_db (default 40 dB) is trimmed; power
    spectrograms are cached under --cache-dir. The best model (lowest validation loss) is
    OUT/best.pt, usable as 'speechvae enhance --prior OUT/best.pt'.

    Under torchrun (e.g. 'torchrun --nproc-per-node 4 -m speechvae train ...') the run is
    data-parallel: each batch is split over the processes, --device cuda means one GPU per
    process, and only rank 0 prints and writes OUT (see docs/distributed.md).

    \b
    Example:
      speechvae train --config recipes/vae/conf.yaml --out runs/my_vae \\
          --train-dir speech/train --val-dir speech/dev --epochs 50
    """
    from speechvae import __version__
    from speechvae import distributed as D
    from speechvae.audio import list_audio_files
    from speechvae.training import build_cache, train_prior

    conf = read_config(config_path)
    device = resolve_device(device)
    launch = D.init_distributed(device)  # no-op unless started by torchrun
    device = D.local_device(device, launch)
    if threads is None and launch.distributed and not device.startswith("cuda"):
        threads = max(1, (os.cpu_count() or 1) // launch.local_world_size)
    set_threads(threads)
    data = conf.get("data") or {}
    prior, train_config = _build(conf, config_path, epochs, seed)

    train_files = list_audio_files(train_dirs)
    if val_dirs:
        if val_fraction is not None:
            raise click.UsageError("--val-fraction is only used without --val-dir")
        val_files = list_audio_files(val_dirs)
        both = {f.resolve() for f in train_files} & {f.resolve() for f in val_files}
        if both:
            raise CLIError(f"{len(both)} file(s) are in both the training and the validation "
                           f"set (e.g. {min(both)}); use separate folders")
        fraction = None
    else:
        fraction = val_fraction if val_fraction is not None else data.get("val_fraction", 0.05)
        if not 0 < float(fraction) < 1:
            raise CLIError(f"{config_path}: data.val_fraction must be in (0, 1), got {fraction}")
        train_files, val_files = split_files(train_files, float(fraction), train_config.seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    main = launch.is_main
    split = {"train": [str(f) for f in train_files], "val": [str(f) for f in val_files],
             "val_fraction": fraction, "seed": train_config.seed}
    split_path = out_dir / "files.json"
    if main and (out_dir / "last.pt").exists() and split_path.exists():
        try:
            before = json.loads(split_path.read_text())
        except (OSError, ValueError):
            before = {}
        if (before.get("train"), before.get("val")) != (split["train"], split["val"]):
            warn(f"resuming {out_dir} with other training/validation files than its "
                 f"{split_path.name} lists; validation losses are not comparable")
    if main:
        split_path.write_text(json.dumps(split, indent=1))
        emit(f"{len(train_files)} training and {len(val_files)} validation files; prior "
             f"{prior.name} {dataclasses.asdict(prior.config)}"
             + (f"; {launch.world_size} processes" if launch.distributed else ""),
             err=as_json)

    log = sys.stderr if as_json else sys.stdout
    top_db = float(data.get("trim_top_db", 40.0))
    cache_dir = cache_dir if cache_dir is not None else out_dir / "cache"
    bars = sys.stderr.isatty() and main
    train_cache = build_cache(train_files, cache_dir, stft=prior.stft_config, top_db=top_db,
                              progress=bars)
    val_cache = build_cache(val_files, cache_dir, stft=prior.stft_config, top_db=top_db,
                            progress=bars)
    meta = {"recipe": str(config_path), "train_dirs": [str(d) for d in train_dirs],
            "val_dirs": [str(d) for d in val_dirs], "train_files": len(train_files),
            "val_files": len(val_files), "val_fraction": fraction,
            "train_frames": train_cache.num_frames, "val_frames": val_cache.num_frames,
            "trim_top_db": top_db, "speechvae": __version__,
            "command": " ".join(["speechvae", *sys.argv[1:]])}
    with contextlib.redirect_stdout(log):  # the trainer prints one line per epoch
        summary = train_prior(prior, train_cache, val_cache, train_config, out_dir,
                              device=device, metadata=meta)
    summary["train_config"] = dataclasses.asdict(train_config)
    summary["train_frames"] = train_cache.num_frames
    summary["val_frames"] = val_cache.num_frames
    if not main:
        return
    if launch.distributed:
        summary["world_size"] = launch.world_size
    if as_json:
        print_json(summary)
    else:
        seconds = sum(float(r["seconds"]) for r in _history(out_dir))
        emit(f"best validation loss {summary['best_val_loss']:.3f} per frame at epoch "
             f"{summary['best_epoch']} ({summary['epochs_run']} epochs, "
             f"{format_seconds(seconds)}); checkpoint {summary['best_path']}")


def _history(out_dir: Path) -> list[dict]:
    import csv

    try:
        with open(out_dir / "log.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []
