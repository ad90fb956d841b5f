#!/usr/bin/env python3
"""Folder throughput of ``speechvae enhance``, quiet and with busy cores: old default vs new.

Enhances a folder of ``--files`` noisy dev files (the first rows of
``../shared/data/devset.csv``, rendered with the corpus' ``make_mixtures.py`` into a
temporary folder, or ``--noisy DIR``) with the command line, as a user would, under each of:

* ``old``: today's former default, one process with torch's default thread count
  (``--jobs 1 --threads T``, T = what torch picks in a fresh process);
* ``new``: the current default (no ``--jobs``/``--threads``: one process per available core,
  one torch thread each);

first on a quiet machine, then with ``--busy`` other processes each spinning on a core (a
Python busy loop started and stopped by this script). Each run is a fresh ``python -m
speechvae enhance DIR --output-dir ...`` whose wall time (start-up included) is measured;
``OMP_NUM_THREADS`` is removed from its environment so torch picks its own default. Prints a
Markdown table with the machine, cores, threads, device, torch and commit.

    python benchmarks/jobs.py                       # 32 files, quiet and 1 busy core
    python benchmarks/jobs.py --files 4 --iterations 10  # a quick check that it works
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=False).stdout.strip()


def _commit() -> str:
    c = _git("rev-parse", "--short", "HEAD") or "unknown"
    return c + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _env() -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # let torch choose, as on a user's machine
    env.pop("MKL_NUM_THREADS", None)
    return env


def _torch_default_threads() -> tuple[int, str]:
    code = "import torch; print(torch.get_num_threads(), torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), check=True).stdout.split()
    return int(out[0]), out[1]


def render_devset(n: int, out_dir: Path, data: Path = DATA) -> Path:
    """The first ``n`` rows of devset.csv rendered to ``out_dir/noisy`` (make_mixtures.py)."""
    with open(data / "devset.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    if len(rows) < n:
        raise SystemExit(f"devset.csv has only {len(rows)} rows")
    listing = out_dir / "list.csv"
    with open(listing, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subprocess.run([sys.executable, str(data / "make_mixtures.py"), str(listing),
                    str(out_dir / "set"), "--root", str(data)], check=True,
                   stdout=subprocess.DEVNULL)
    return out_dir / "set" / "noisy"


def run_enhance(noisy: Path, out: Path, flags: list[str], iterations: int | None) -> dict:
    """One ``speechvae enhance`` run; its JSON summary plus the measured wall time."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "speechvae", "enhance", str(noisy), "--output-dir", str(out),
           "--json", "--no-progress", *flags]
    if iterations is not None:
        cmd += ["--iterations", str(iterations)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads(proc.stdout)
    summary["wall"] = wall
    return summary


class Busy:
    """``n`` processes spinning on a core each (a Python busy loop), stopped on exit."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.n)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=32, help="dev files in the folder")
    ap.add_argument("--noisy", type=Path, help="a folder of noisy files instead of the dev set")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="the corpus folder with devset.csv [default: ../shared/data]")
    ap.add_argument("--busy", type=int, default=1, help="busy cores in the busy condition")
    ap.add_argument("--iterations", type=int, help="VEM iterations [default: VEMConfig's]")
    ap.add_argument("--settings", default="old,new", help="comma-separated: old, new")
    args = ap.parse_args()

    default_threads, torch_version = _torch_default_threads()
    settings = {"old": ["--jobs", "1", "--threads", str(default_threads)], "new": []}
    chosen = [s.strip() for s in args.settings.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="speechvae-jobs-") as tmp:
        tmp = Path(tmp)
        noisy = args.noisy or render_devset(args.files, tmp, args.data)
        rows = []
        for condition in ("quiet", f"{args.busy} busy core{'s' if args.busy > 1 else ''}"):
            for name in chosen:
                busy = Busy(args.busy if condition != "quiet" else 0)
                with busy:
                    r = run_enhance(noisy, tmp / f"out_{name}", settings[name], args.iterations)
                rows.append((condition, name, r))
                print(f"{condition:>12} {name}: {r['wall']:.1f} s "
                      f"({r['jobs']} x {r['threads']})", file=sys.stderr, flush=True)
    quiet = {name: r["wall"] for c, name, r in rows if c == "quiet"}
    audio = rows[0][2]["duration_s"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Machine: {_cpu_model()}, {cores} cores available; device cpu; torch "
          f"{torch_version}; torch default threads {default_threads}; commit {_commit()}; "
          f"{len(rows[0][2]['files'])} files, {audio:.1f} s of audio; VEM iterations "
          f"{rows[0][2]['config']['iterations']}; wall time of the whole command "
          "(start-up included).\n")
    print("| condition | setting | processes x threads | wall (s) | RTF | vs quiet |")
    print("|---|---|---|---:|---:|---:|")
    for condition, name, r in rows:
        label = {"old": "old default (`--jobs 1`, torch threads)", "new": "new default"}[name]
        print(f"| {condition} | {label} | {r['jobs']} x {r['threads']} | {r['wall']:.1f} | "
              f"{r['wall'] / audio:.3f} | {r['wall'] / quiet[name]:.1f}x |")


if __name__ == "__main__":
    main()
