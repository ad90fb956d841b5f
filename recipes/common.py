"""Corpus helpers shared by the recipes (paths and quirks of ../shared/data live here)."""
from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_SPLITS = ("train", "train_extra", "train_more")


def read_manifest(data_root: Path) -> list[dict]:
    with open(Path(data_root) / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def speaker_split(data_root: Path, val_fraction: float = 0.05, seed: int = 0,
                  splits=TRAIN_SPLITS) -> tuple[list[Path], list[Path], dict]:
    """Training and validation files with disjoint speakers.

    Speakers of `train` (LibriSpeech) and `train_more` (speechocean762) are drawn into the
    validation set with a fixed seed; `train_extra` (MS-SNSD) has no speaker labels, so all of
    it stays in training (it can therefore not leak a validation speaker, since its speakers
    are PTDB-TUG/VCTK ones, absent from the other two corpora).
    """
    rows = [r for r in read_manifest(data_root) if r["split"] in splits]
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    unlabelled: list[Path] = []
    for r in rows:
        path = Path(data_root) / r["path"]
        if r["split"] == "train_extra" or not r["speaker"]:
            unlabelled.append(path)
        else:
            by_speaker[f"{r['split']}:{r['speaker']}"].append(path)
    speakers = sorted(by_speaker)
    rng = random.Random(seed)
    n_val = max(1, round(val_fraction * len(speakers)))
    val_speakers = set(rng.sample(speakers, n_val))
    train = sorted(unlabelled + [p for s in speakers if s not in val_speakers
                                 for p in by_speaker[s]])
    val = sorted(p for s in val_speakers for p in by_speaker[s])
    info = {"train_files": len(train), "val_files": len(val),
            "train_speakers": len(speakers) - n_val, "val_speakers": n_val,
            "unlabelled_files": len(unlabelled), "splits": list(splits), "seed": seed}
    return train, val, info
