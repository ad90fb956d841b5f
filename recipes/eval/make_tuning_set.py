#!/usr/bin/env python3
"""A tuning set disjoint from the dev set, for choosing algorithm settings.

Clean speech: the prior's validation speakers (recipes/common.speaker_split, LibriSpeech and
speechocean762 speakers never seen in training nor in the dev set). Noise: files of
../shared/data/noise that the dev set does not use. SNRs -5, 0, 5, 10 dB, fixed seed. Writes
a list in the devset.csv format and renders it with the corpus' make_mixtures.py.

Usage: python recipes/eval/make_tuning_set.py [--data-root DIR] [--out runs/tuning] [--n 24]
"""
import argparse
import csv
import random
import subprocess
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT, read_manifest, speaker_split


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--out", type=Path, default=Path("runs/tuning"))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    root = a.data_root
    _, val, _ = speaker_split(root)
    val = [p for p in val if sf.info(str(p)).duration >= 4.0]
    with open(root / "devset.csv", newline="") as f:
        used = {r["noise"] for r in csv.DictReader(f)}
    noises = [r["path"] for r in read_manifest(root)
              if r["split"] == "noise" and r["path"] not in used]
    rng = random.Random(a.seed)
    rows = []
    for i, clean in enumerate(rng.sample(val, min(a.n, len(val)))):
        noise = rng.choice(noises)
        n_len = sf.info(str(root / noise)).frames
        snr = (-5, 0, 5, 10)[i % 4]
        rows.append({"name": f"tune{i:02d}_snr{snr:+d}",
                     "clean": str(clean.relative_to(root)), "noise": noise,
                     "noise_offset": rng.randrange(max(1, n_len - 16000)), "snr_db": snr,
                     "speaker": clean.parent.name, "gender": ""})
    a.out.mkdir(parents=True, exist_ok=True)
    lst = a.out / "tuning.csv"
    with open(lst, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subprocess.run([sys.executable, str(root / "make_mixtures.py"), str(lst), str(a.out),
                    "--root", str(root)], check=True)


if __name__ == "__main__":
    main()
