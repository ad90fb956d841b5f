#!/usr/bin/env python3
"""Benchmark ``speechvae enhance`` on one long file: wall time, real-time factor, peak memory.

Builds a noisy file of ``--minutes`` minutes (default one hour), 16 kHz mono 16-bit WAV,
written block by block: the dev utterances of ../shared/data (``speech/dev/*/*.flac``)
concatenated over and over, with the home noises (``noise/home/*.flac``) added at 5 dB SNR
per utterance; without the corpus, a synthetic harmonic "speech" signal in white noise at
5 dB. Then runs ``python -m speechvae enhance`` on it in a child process (with the shipped
default prior unless ``--prior``) and prints a Markdown table: duration, wall time (the
whole command, start-up included), real-time factor, peak resident memory of the command,
threads, machine, device, torch version and git commit.

    python benchmarks/long_file.py                     # one hour, --prior vae, 2 threads
    python benchmarks/long_file.py --minutes 2 --prior tiny.pt --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf

from speechvae.evaluation.report import machine_info

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
SR = 16000
SNR_DB = 5.0
LEVEL = 0.5  # speech is scaled by this before mixing (headroom for the noise)

# Runs the command in a child process, then prints the child's peak RSS (Linux: KiB).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], check=False)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(r.returncode)\n"
)


def _read_mono(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SR:
        raise SystemExit(f"error: {path}: {sr} Hz, expected {SR} Hz")
    return x.mean(axis=1)


def _mix(speech: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``speech`` plus ``noise`` scaled to SNR_DB, scaled down if it would clip."""
    ps = float(np.mean(np.square(speech))) + 1e-12
    pn = float(np.mean(np.square(noise))) + 1e-12
    x = speech + noise * np.sqrt(ps / pn * 10 ** (-SNR_DB / 10))
    peak = float(np.max(np.abs(x)))
    return x / peak * 0.99 if peak > 0.99 else x


def corpus_blocks(data_root: Path) -> Iterator[np.ndarray]:
    """Endless noisy utterances: dev speech in a loop, each with the next stretch of the
    (looped) home noises. Holds one utterance and the home noises (2.6 min) in memory."""
    speech_files = sorted(data_root.glob("speech/dev/*/*.flac"))
    noise_files = sorted(data_root.glob("noise/home/*.flac"))
    if not speech_files or not noise_files:
        raise SystemExit(f"error: {data_root}: no speech/dev/*/*.flac or noise/home/*.flac")
    tape = np.concatenate([_read_mono(p) for p in noise_files])
    pos = 0
    while True:
        for path in speech_files:
            s = LEVEL * _read_mono(path)
            idx = (pos + np.arange(s.size)) % tape.size
            pos = (pos + s.size) % tape.size
            yield _mix(s, tape[idx]).astype(np.float32)


def synthetic_blocks(seed: int = 0) -> Iterator[np.ndarray]:
    """Endless 10 s blocks of a harmonic signal with gliding pitch and a syllable-rate
    envelope, each with its own pitch and noise, in white noise at SNR_DB."""
    rng = np.random.default_rng(seed)
    t = np.arange(10 * SR) / SR
    i = 0
    while True:
        f0 = 110.0 + 60.0 * (0.5 + 0.5 * np.sin(0.61 * i))
        pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SR
        s = sum(np.sin(k * phase) / k for k in range(1, 10))
        s *= 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
        s = LEVEL * s / np.max(np.abs(s))
        yield _mix(s, rng.standard_normal(t.size)).astype(np.float32)
        i += 1


def write_noisy(path: Path, seconds: float, blocks: Iterator[np.ndarray]) -> int:
    """Write the first ``seconds`` of ``blocks`` to ``path`` (16-bit WAV), block by block;
    returns the number of samples."""
    total = round(seconds * SR)
    done = 0
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for block in blocks:
            block = block[: total - done]
            f.write(block)
            done += block.size
            if done >= total:
                break
    return done


def cpu_model() -> str:
    return machine_info()["machine"]


def git_commit() -> str:
    return machine_info()["commit"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="duration (default 60)")
    ap.add_argument("--prior", default="vae",
                    help="shipped prior name or checkpoint path (default vae)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    ap.add_argument("--iterations", type=int, help="VEM iterations (default: the CLI's)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                    help="corpus with speech/dev and noise/home (default ../shared/data); "
                         "synthetic signals when it is missing")
    ap.add_argument("--synthetic", action="store_true", help="synthetic even with a corpus")
    ap.add_argument("--work-dir", type=Path,
                    help="where the files go (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the noisy and enhanced files (default: removed)")
    a = ap.parse_args(argv)
    if a.minutes <= 0 or a.threads < 1:
        ap.error("--minutes must be positive and --threads at least 1")

    work = a.work_dir or Path(tempfile.mkdtemp(prefix="speechvae-long-file-"))
    work.mkdir(parents=True, exist_ok=True)
    noisy, enhanced = work / "long_noisy.wav", work / "long_noisy_enhanced.wav"
    try:
        real = not a.synthetic and (a.data_root / "speech" / "dev").is_dir()
        source = (f"dev speech + home noise, {SNR_DB:g} dB SNR" if real
                  else f"synthetic harmonic signal + white noise, {SNR_DB:g} dB SNR")
        print(f"writing {a.minutes:g} min ({source}) to {noisy}", file=sys.stderr, flush=True)
        frames = write_noisy(noisy, a.minutes * 60,
                             corpus_blocks(a.data_root) if real else synthetic_blocks())

        cmd = [sys.executable, "-m", "speechvae", "enhance", str(noisy), "-o", str(enhanced),
               "--prior", str(a.prior), "--threads", str(a.threads), "--device", a.device,
               "--overwrite", "--no-progress", "--json"]
        if a.iterations is not None:
            cmd += ["--iterations", str(a.iterations)]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        print("running " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True,
                              text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            print(f"error: speechvae enhance exited with {proc.returncode}", file=sys.stderr)
            return 1
        peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
        processing = json.loads(proc.stdout)["seconds"]
        out_frames = sf.info(str(enhanced)).frames
        if abs(out_frames - frames) > 256:
            print(f"warning: output has {out_frames} samples, input {frames}", file=sys.stderr)
    finally:
        if not a.keep:
            for p in (noisy, enhanced):
                p.unlink(missing_ok=True)
            if a.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)

    duration = frames / SR
    rows = [
        ("input", f"{duration / 60:g} min ({source})"),
        ("prior", str(a.prior)),
        ("wall time", f"{wall:.1f} s (enhancement alone {processing:.1f} s)"),
        ("real-time factor", (f"{wall / duration:.4f} (enhancement alone "
                              f"{processing / duration:.4f})")),
        ("peak RSS", f"{peak_mb:.0f} MB"),
        ("threads", str(a.threads)),
        ("machine", f"{cpu_model()}, {os.cpu_count()} cores"),
        ("device", a.device),
        ("torch", metadata.version("torch")),
        ("commit", git_commit()),
    ]
    print("| | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if a.keep:
        print(f"\nfiles kept: {noisy}, {enhanced}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
