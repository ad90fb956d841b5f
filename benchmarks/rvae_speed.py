#!/usr/bin/env python3
"""Speed of VEM with the dynamical priors (RVAE causal / non-causal, DKF) on CPU (or GPU).

Times :func:`speechvae.enhancement.vem` on a generated signal (harmonic "speech" with a
syllable envelope plus white noise; ``--seconds`` long, 10 s by default) with randomly
initialised priors of the default (paper-sized) architectures: no trained weights are needed,
since the cost does not depend on the weights. Each thread count runs in its own process with
``OMP_NUM_THREADS`` and ``torch.set_num_threads`` set.

For every prior and recurrence implementation (``fast``: :mod:`speechvae.priors.recurrence`;
``reference``: the modules stepped in Python under autograd) it runs a warm-up, then VEM with
``--short`` and with ``--iterations`` iterations:

* seconds per iteration = (time(iterations) - time(short)) / (iterations - short), the
  marginal cost of one E-step (encoder draw, decoder, backward, Adam) plus one M-step;
* RTF = time(iterations) / signal duration (the whole call: set-up, iterations and the final
  Wiener filter with 16 posterior draws);
* RTF@300 = the same extrapolated to 300 iterations (the setting of the authors' RVAE code).

Prints a Markdown table (machine, threads, device, commit, prior, recurrence, iterations,
s/iteration, RTF, RTF@300).

    python benchmarks/rvae_speed.py                        # 1 and 2 threads, 50 iterations
    python benchmarks/rvae_speed.py --threads 2 --priors rvae-causal --recurrence fast
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from signals import speech_like  # benchmarks/signals.py (the script folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SR = 16000
PRIORS = ("rvae-causal", "rvae-noncausal", "dkf", "tcvae", "vae")



def _build(name: str):
    import torch

    from speechvae.priors import DKF, RVAE, TCVAE, VAE, RVAEConfig

    torch.manual_seed(0)
    return {"rvae-causal": lambda: RVAE(RVAEConfig(causal=True)),
            "rvae-noncausal": lambda: RVAE(RVAEConfig(causal=False)),
            "dkf": DKF, "tcvae": TCVAE, "vae": VAE}[name]().eval()


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()

    c = git("rev-parse", "--short", "HEAD")
    return f"{c}+dirty" if c and git("status", "--porcelain", "--untracked-files=no") else c


def worker(a) -> None:
    """Time every (prior, recurrence) in this process; print one JSON line per row."""
    import numpy as np
    import torch

    torch.set_num_threads(a.threads[0])
    from speechvae.enhancement import VEMConfig, vem
    from speechvae.stft import stft

    x = speech_like(a.seconds, 0)
    spec = stft(torch.from_numpy(x / np.max(np.abs(x))))[None].to(a.device)

    def timed(prior, iterations):
        t0 = time.perf_counter()
        vem(prior, spec, VEMConfig(iterations=iterations), torch.Generator(a.device).manual_seed(0))
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for name in a.priors:
        prior = _build(name).to(a.device)
        for rec in a.recurrence:
            if rec != "fast" and not hasattr(prior, "recurrence"):
                continue  # the frame-wise VAE has no sequential encoder
            if hasattr(prior, "recurrence"):
                prior.recurrence = rec
            timed(prior, 2)  # warm-up
            t_short = min(timed(prior, a.short) for _ in range(a.repeats))
            t_long = min(timed(prior, a.iterations) for _ in range(a.repeats))
            per_it = (t_long - t_short) / (a.iterations - a.short)
            print(json.dumps({
                "prior": name, "recurrence": rec if hasattr(prior, "recurrence") else "-",
                "iterations": a.iterations, "s_per_iteration": per_it,
                "rtf": t_long / a.seconds,
                "rtf_300": (t_long + (300 - a.iterations) * per_it) / a.seconds}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--short", type=int, default=10,
                    help="iterations of the shorter run (for the marginal cost per iteration)")
    ap.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    ap.add_argument("--priors", nargs="+", choices=PRIORS, default=list(PRIORS))
    ap.add_argument("--recurrence", nargs="+", choices=("fast", "reference"),
                    default=["fast", "reference"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.short < a.iterations:
        ap.error("--short must be smaller than --iterations")
    if a.worker:
        worker(a)
        return
    machine, commit = _machine(), _commit()
    print(f"signal: {a.seconds:g} s generated, 16 kHz; VEM defaults otherwise "
          f"(1 draw per E-step, 16 Wiener draws); randomly initialised priors")
    print("| machine | threads | device | commit | prior | recurrence | iterations | "
          "s / iteration | RTF | RTF@300 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in a.threads:
        cmd = [sys.executable, __file__, "--worker", "--threads", str(n), "--seconds",
               str(a.seconds), "--iterations", str(a.iterations), "--short", str(a.short),
               "--repeats", str(a.repeats), "--device", a.device, "--priors", *a.priors,
               "--recurrence", *a.recurrence]
        env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
        for line in proc.stdout:
            r = json.loads(line)
            print(f"| {machine} | {n} | {a.device} | {commit} | {r['prior']} | "
                  f"{r['recurrence']} | {r['iterations']} | {r['s_per_iteration']:.3f} | "
                  f"{r['rtf']:.2f} | {r['rtf_300']:.2f} |", flush=True)
        if proc.wait():
            raise SystemExit(f"error: worker for {n} thread(s) failed")


if __name__ == "__main__":
    main()
