#!/usr/bin/env python3
"""Dev-set benchmark: noisy input vs. prior(s) + inference algorithm(s), per input SNR and overall.

Usage:
    python recipes/eval/run.py [--data-root ../shared/data] [--prior vae] [--prior PATH ...]
        [--threads 2] [--algorithm vem] [--algorithm mcem ...] [--iterations N]
        [--nmf-rank K] [--lr LR] [--atten-lim-db DB] [--limit N] [--json-out FILE]

``--prior`` (repeatable; default ``vae``) and ``--algorithm NAME`` (repeatable; default
``vem`` only) add one table row per prior and algorithm, named ``<prior>-<algorithm>``
(``vae-vem``, ``vae-mcem``, ``rvae-noncausal-vem``, ...), each with its own real-time factor.
A prior given by path is named after the file's stem (``runs/dkf/best.pt`` -> ``best``), or
``NAME=PATH`` names it: ``--prior dkf=runs/dkf/best.pt``. ``--iterations``, ``--nmf-rank``,
``--lr``, ``--tol`` and ``--atten-lim-db`` apply to every algorithm whose config has that field.

Renders ../shared/data/devset.csv with the corpus' own make_mixtures.py (once, into
--work-dir), enhances every noisy file, scores noisy and enhanced against the clean reference
(SI-SDR, PESQ-WB, PESQ-NB, STOI, ESTOI) and prints a Markdown table with the real-time factor
(enhancement time / audio duration, scoring excluded), threads, device, machine and commit.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT

import speechvae
from speechvae.audio import load_audio
from speechvae.enhancement import available_algorithms, get_algorithm
from speechvae.evaluation.report import machine_info
from speechvae.metrics import METRICS, score


def render_devset(data_root: Path, work_dir: Path) -> Path:
    out = work_dir / "devset"
    if not (out / "list.csv").exists():
        subprocess.run([sys.executable, str(data_root / "make_mixtures.py"),
                        str(data_root / "devset.csv"), str(out)], check=True)
    return out


def machine_line(threads: int, device: str) -> str:
    m = machine_info()
    return (f"machine: {m['machine']}, {m['cores']} cores; threads: {threads}; device: {device}; "
            f"torch {m['torch']}; commit {m['commit']}")


def table(rows: list[dict], methods: list[str]) -> str:
    groups = defaultdict(list)
    for r in rows:
        groups[f"{float(r['snr_db']):+g} dB"].append(r)
        groups["all"].append(r)
    keys = sorted((k for k in groups if k != "all"), key=lambda k: float(k.split()[0]))
    keys.append("all")
    head = "| SNR | method | n | " + " | ".join(METRICS) + " | RTF |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for k in keys:
        for m in methods:
            sel = groups[k]
            vals = [np.nanmean([r[f"{m}/{name}"] for r in sel]) for name in METRICS]
            rtf = ("–" if m == "noisy" else
                   f"{sum(r[f'{m}/time_s'] for r in sel) / sum(r['duration_s'] for r in sel):.3f}")
            fmt = [f"{vals[0]:.2f}"] + [f"{v:.3f}" for v in vals[1:]]
            lines.append(f"| {k} | {m} | {len(sel)} | " + " | ".join(fmt) + f" | {rtf} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--work-dir", type=Path, default=Path("runs/eval"))
    ap.add_argument("--prior", action="append",
                    help="shipped prior name, checkpoint path or NAME=PATH; repeatable: "
                         "rows for each (default: vae)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--algorithm", action="append", choices=available_algorithms(),
                    help="inference algorithm, repeatable: one row each (default: vem)")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--nmf-rank", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--tol", type=float)
    ap.add_argument("--atten-lim-db", type=float,
                    help="suppression limit: the largest attenuation (dB) of the Wiener gain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N pairs only (quick look)")
    ap.add_argument("--every", type=int, default=1, help="every k-th pair only")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not (a.data_root / "devset.csv").exists():
        sys.exit(f"error: {a.data_root}/devset.csv not found (give --data-root)")
    dev = render_devset(a.data_root, a.work_dir)
    with open(dev / "list.csv", newline="") as f:
        pairs = list(csv.DictReader(f))[::a.every][: a.limit]
    over = {k: v for k, v in {"iterations": a.iterations, "nmf_rank": a.nmf_rank, "lr": a.lr,
                              "tol": a.tol, "atten_lim_db": a.atten_lim_db}.items()
            if v is not None}
    algorithms = list(dict.fromkeys(a.algorithm or ["vem"]))  # in order, without repeats
    configs = {}
    for alg in algorithms:
        cls = get_algorithm(alg).config_class
        names = {f.name for f in dataclasses.fields(cls)}
        configs[alg] = dataclasses.replace(cls(), **{k: v for k, v in over.items()
                                                     if k in names})
    priors = {}
    for spec in dict.fromkeys(a.prior or ["vae"]):
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).stem, "", spec)
        priors[name] = speechvae.load_prior(path, device=a.device)
    # method name -> (prior, algorithm)
    methods = {f"{pn}-{alg}": (p, alg) for pn, p in priors.items() for alg in algorithms}
    rows = []
    # warm-up runs (first calls pay for lazy initialisation)
    x, sr = load_audio(dev / pairs[0]["noisy"])
    for prior, alg in methods.values():
        speechvae.enhance(x[:sr], sr, prior=prior, algorithm=alg,
                          config=dataclasses.replace(configs[alg], iterations=2),
                          device=a.device)
    for i, p in enumerate(pairs):
        clean, sr = load_audio(dev / p["clean"])
        noisy, _ = load_audio(dev / p["noisy"])
        row = {"name": p["name"], "snr_db": p["snr_db"], "duration_s": len(noisy) / sr}
        for k, v in score(clean, noisy, sr).items():
            row[f"noisy/{k}"] = v
        times = []
        for method, (prior, alg) in methods.items():
            t0 = time.perf_counter()
            out = speechvae.enhance(noisy, sr, prior=prior, algorithm=alg,
                                    config=configs[alg], seed=a.seed, device=a.device)
            dt = time.perf_counter() - t0
            times.append(dt)
            row[f"{method}/time_s"] = dt
            for k, v in score(clean, out.waveform, sr).items():
                row[f"{method}/{k}"] = v
        rows.append(row)
        print(f"[{i + 1}/{len(pairs)}] {p['name']}: SI-SDR {row['noisy/SI-SDR']:.2f} -> "
              + " / ".join(f"{row[f'{m}/SI-SDR']:.2f}" for m in methods)
              + " dB, PESQ-WB " + f"{row['noisy/PESQ-WB']:.2f} -> "
              + " / ".join(f"{row[f'{m}/PESQ-WB']:.2f}" for m in methods)
              + ", " + " / ".join(f"{dt:.2f}s" for dt in times), flush=True)
    print()
    for alg, config in configs.items():
        print(f"{alg.upper()} config: {dataclasses.asdict(config)}; seed {a.seed}")
    for pn, p in priors.items():
        print(f"prior {pn}: {p.name} {p.config}")
    print(machine_line(a.threads, a.device))
    print()
    print(table(rows, ["noisy", *methods]))
    if a.json_out:
        first = dataclasses.asdict(configs[algorithms[0]])
        a.json_out.write_text(json.dumps(
            {"config": first, "configs": {alg: dataclasses.asdict(c)
                                          for alg, c in configs.items()},
             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
