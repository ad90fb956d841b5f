#!/usr/bin/env python3
"""Learn the speech dictionary of the `nmf` evaluation baseline (IS-NMF on clean speech).

Usage:
    python recipes/nmf/train_dictionary.py [--data-root ../shared/data] [--rank 32]
        [--frames 5000] [--files 200] [--iterations 200] [--seed 0]
        [--out speechvae/pretrained/nmf/speech_dictionary.pt]

Draws `--files` random files of the corpus' training splits (train, train_extra, train_more;
never dev speakers), keeps their non-silent frames (within 40 dB of each file's loudest
frame), draws `--frames` of them at random and fits `W (513, rank)` by Itakura-Saito NMF
(multiplicative updates) on their power spectrograms, with the toolkit's STFT (16 kHz,
1024-sample sine window, hop 256). Writes the dictionary and its model card (`.md`) beside
it. Takes well under a minute on one CPU core.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT, TRAIN_SPLITS, read_manifest

from speechvae.audio import load_audio
from speechvae.evaluation.baselines import (
    SHIPPED_DICTIONARY,
    SpeechDictionary,
    learn_dictionary,
    save_dictionary,
)
from speechvae.stft import DEFAULT_STFT, power_spectrogram

SILENCE_DB = 40.0


def speech_frames(path: Path) -> torch.Tensor:
    """Power spectrogram frames ``(freq, frames)`` of a file within 40 dB of its loudest
    frame (the waveform is peak-normalised first)."""
    x, _ = load_audio(path, DEFAULT_STFT.sample_rate)
    x = torch.from_numpy(x / np.max(np.abs(x))).double()
    p = power_spectrogram(x, DEFAULT_STFT)
    energy = p.sum(0)
    keep = 10 * torch.log10(energy / energy.max()) > -SILENCE_DB
    return p[:, keep]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=SHIPPED_DICTIONARY)
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = [r for r in read_manifest(a.data_root) if r["split"] in TRAIN_SPLITS]
    rng = random.Random(a.seed)
    files = sorted(rng.sample(rows, min(a.files, len(rows))), key=lambda r: r["path"])
    frames = torch.cat([speech_frames(a.data_root / r["path"]) for r in files], dim=1)
    gen = torch.Generator().manual_seed(a.seed)
    pick = torch.randperm(frames.shape[1], generator=gen)[: a.frames].sort().values
    power = frames[:, pick]
    costs: list[float] = []
    W = learn_dictionary(power, a.rank, a.iterations, a.seed, costs)
    seconds = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    per_frame = costs[-1] / power.shape[1]
    splits = sorted({r["split"] for r in files})
    meta = {"recipe": "recipes/nmf/train_dictionary.py", "commit": commit or "unknown",
            "command": " ".join(["python", "recipes/nmf/train_dictionary.py", *sys.argv[1:]]),
            "splits": splits, "files": len(files), "frames": int(power.shape[1]),
            "frames_available": int(frames.shape[1]), "rank": a.rank,
            "iterations": a.iterations, "seed": a.seed, "silence_db": SILENCE_DB,
            "is_divergence_per_frame": per_frame, "seconds": round(seconds, 1)}
    save_dictionary(SpeechDictionary(W.float(), DEFAULT_STFT, meta), a.out)
    card = [
        "# Model card: NMF speech dictionary (`nmf` evaluation baseline)",
        "",
        ("Fixed speech dictionary of the semi-supervised NMF baseline of `speechvae evaluate` "
         "(Mysore & Smaragdis 2011; the NMF baseline of Leglaive, Girin & Horaud, MLSP 2018): "
         "at test time the noisy power spectrogram is modelled as `W_s H_s + W_n H_n` with "
         "this `W_s` fixed and a rank-8 noise NMF learned on the file, then Wiener-filtered."),
        "",
        "| | |",
        "|---|---|",
        f"| shape | `W` ({W.shape[0]}, {W.shape[1]}), float32, columns summing to one |",
        (f"| STFT | {DEFAULT_STFT.sample_rate} Hz, n_fft {DEFAULT_STFT.n_fft}, hop "
         f"{DEFAULT_STFT.hop_length}, {DEFAULT_STFT.window} window; waveform peak-normalised |"),
        (f"| data | ../shared/data speech splits {', '.join(splits)}: {len(files)} random files "
         f"(seed {a.seed}), {power.shape[1]} random frames out of {frames.shape[1]} non-silent "
         f"ones (within {SILENCE_DB:g} dB of each file's loudest frame). Licences: "
         "LibriSpeech CC BY 4.0, MS-SNSD clean speech (PTDB-TUG ODbL 1.0, VCTK CC BY 4.0), "
         "speechocean762 CC BY 4.0 |"),
        (f"| training | Itakura-Saito NMF, multiplicative updates (exponent 1/2), "
         f"{a.iterations} passes; final IS divergence {per_frame:.1f} per frame |"),
        (f"| recipe | `recipes/nmf/train_dictionary.py` at commit {commit or 'unknown'}, "
         f"{seconds:.0f} s on CPU |"),
        f"| command | `{meta['command']}` |",
        "",
    ]
    a.out.with_suffix(".md").write_text("\n".join(card))
    print(f"wrote {a.out} ({power.shape[1]} frames from {len(files)} files, rank {a.rank}, "
          f"IS {per_frame:.1f}/frame, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
