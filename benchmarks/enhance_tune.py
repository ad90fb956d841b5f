#!/usr/bin/env python3
"""Compare enhancement variants on a rendered noisy/clean set, interleaved file by file.

Every variant enhances the same file one after the other (so a background load slows them
alike and the time ratios stay meaningful), with the same seed, through the public
``speechvae.enhance``; each output is scored against the clean reference (SI-SDR, PESQ-WB,
ESTOI). Prints per-SNR, per-noise-type and overall tables and each variant's real-time factor
and time ratio to the first variant.

A variant is ``NAME:KEY=VALUE,KEY=VALUE...``; ``alg=NAME`` picks the algorithm (default
``vem``), every other key is a field of its config (values parsed as Python literals, else
strings; ``none`` is None for a field whose default is None, else the string); ``prior=NAME_OR_PATH`` runs the variant with another prior than
``--prior``. ``NAME`` alone is the default config of ``vem``.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/enhance_tune.py --set runs/tuning \\
        --variant base --variant global:gain=global --variant r16:nmf_rank=16 [--threads 1]
        [--every 1] [--offset 0] [--json-out FILE]
    python benchmarks/enhance_tune.py --tables-from part0.json part1.json

``--tables-from`` joins the files by pair name: parts of a set split with ``--every`` and
``--offset`` add rows, runs of other variants on the same pairs add columns (the time ratio
is then between runs, not interleaved); only pairs that every variant has are tabulated.

The set is a folder with ``list.csv`` (``name,clean,noisy,snr_db``) as written by the
corpus' ``make_mixtures.py``; the noise type of a pair is the folder of its noise file, read
from the first ``*.csv`` of the folder (or ``--noise-info``) that has ``name`` and ``noise``
columns.
"""
from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import speechvae
from speechvae.audio import load_audio
from speechvae.enhancement import get_algorithm
from speechvae.metrics import estoi, pesq_wb, si_sdr

METRICS = ("SI-SDR", "PESQ-WB", "ESTOI")


def parse_variant(spec: str, default_prior: str = "vae"):
    """``NAME:k=v,...`` -> ``(name, algorithm, config, prior)``.

    Raises:
        SystemExit: an unknown config field (one line naming the variant and the field).
    """
    name, _, rest = spec.partition(":")
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if value.lower() == "none":
            fields[key] = "none"  # None where the field's default is None (below)
            continue
        try:
            fields[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fields[key] = value
    alg = fields.pop("alg", "vem")
    prior = str(fields.pop("prior", default_prior))
    cls = get_algorithm(alg).config_class
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(fields) - known)
    if bad:
        sys.exit(f"error: variant {name!r}: {cls.__name__} has no field(s) {', '.join(bad)}")
    for f in dataclasses.fields(cls):
        if fields.get(f.name) == "none" and f.default is None:
            fields[f.name] = None
    return name, alg, cls(**fields), prior


def join_parts(parts: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows of several ``--json-out`` files joined by pair name (parts with other files add
    rows, parts with other variants add columns) and the variant names in order."""
    names = list(dict.fromkeys(v.partition(":")[0] for part in parts
                               for v in part["variants"]))
    rows: dict[str, dict] = {}
    for part in parts:
        for r in part["rows"]:
            rows.setdefault(r["name"], {}).update(r)
    return list(rows.values()), names


def noise_types(set_dir: Path, noise_info: Path | None) -> dict[str, str]:
    candidates = [noise_info] if noise_info else sorted(set_dir.glob("*.csv"))
    for path in candidates:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "noise" in rows[0] and "name" in rows[0]:
            return {r["name"]: Path(r["noise"]).parent.name for r in rows}
    return {}


def table(rows: list[dict], names: list[str], key: str) -> str:
    groups = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
        groups["all"].append(r)
    head = f"| {key} | method | n | " + " | ".join(METRICS) + " | RTF | time ratio |"
    lines = [head, "|---|---|---:|" + "---:|" * (len(METRICS) + 2)]
    for k in [*sorted((k for k in groups if k != "all"), key=str), "all"]:
        sel = groups[k]
        dur = sum(r["duration_s"] for r in sel)
        t0 = sum(r[f"{names[0]}/time_s"] for r in sel)
        for m in ["noisy", *names]:
            vals = [np.nanmean([r[f"{m}/{x}"] for r in sel]) for x in METRICS]
            if m == "noisy":
                rtf, ratio = "–", "–"
            else:
                t = sum(r[f"{m}/time_s"] for r in sel)
                rtf, ratio = f"{t / dur:.3f}", f"{t / t0:.2f}"
            lines.append(f"| {k} | {m} | {len(sel)} | {vals[0]:.2f} | {vals[1]:.3f} | "
                         f"{vals[2]:.3f} | {rtf} | {ratio} |")
    return "\n".join(lines)


def scores(clean, est, sr) -> dict:
    out = {"SI-SDR": si_sdr(clean, est), "ESTOI": estoi(clean, est, sr)}
    try:
        out["PESQ-WB"] = pesq_wb(clean, est, sr)
    except Exception:  # noqa: BLE001 -- pesq's NoUtterancesError and friends
        out["PESQ-WB"] = float("nan")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=Path("runs/tuning"))
    ap.add_argument("--noise-info", type=Path)
    ap.add_argument("--variant", action="append")
    ap.add_argument("--tables-from", type=Path, nargs="+",
                    help="print the tables of earlier --json-out files (e.g. the parts of a "
                         "set split with --every/--offset) instead of running")
    ap.add_argument("--prior", default="vae")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args()
    if a.tables_from:
        rows, names = join_parts([json.loads(p.read_text()) for p in a.tables_from])
        rows = [r for r in rows if all(f"{n}/time_s" in r for n in names)]
        for key in ("snr", "noise type"):
            print(table(rows, names, key) + "\n")
        return
    if not a.variant:
        sys.exit("error: give at least one --variant (or --tables-from)")
    torch.set_num_threads(a.threads)
    lst = a.set / "list.csv"
    if not lst.exists():
        sys.exit(f"error: {lst}: not found (render the set first)")
    variants = [parse_variant(v, a.prior) for v in a.variant]
    names = [v[0] for v in variants]
    priors = {p: speechvae.load_prior(p) for p in dict.fromkeys(v[3] for v in variants)}
    types = noise_types(a.set, a.noise_info)
    with open(lst, newline="") as f:
        pairs = list(csv.DictReader(f))[a.offset::a.every]
    x, sr = load_audio(a.set / pairs[0]["noisy"])
    for _, alg, cfg, prior in variants:  # warm-up: first calls pay for lazy initialisation
        speechvae.enhance(x[:sr], sr, prior=priors[prior], algorithm=alg,
                          config=dataclasses.replace(cfg, iterations=2))
    rows = []
    for i, p in enumerate(pairs):
        clean, sr = load_audio(a.set / p["clean"])
        noisy, _ = load_audio(a.set / p["noisy"])
        row = {"name": p["name"], "snr": f"{float(p['snr_db']):+g} dB",
               "noise type": types.get(p["name"], "unknown"), "duration_s": len(noisy) / sr}
        row.update({f"noisy/{k}": v for k, v in scores(clean, noisy, sr).items()})
        for name, alg, cfg, prior in variants:
            t0 = time.perf_counter()
            out = speechvae.enhance(noisy, sr, prior=priors[prior], algorithm=alg, config=cfg,
                                    seed=a.seed)
            row[f"{name}/time_s"] = time.perf_counter() - t0
            row.update({f"{name}/{k}": v for k, v in scores(clean, out.waveform, sr).items()})
        rows.append(row)
        print(f"[{i + 1}/{len(pairs)}] {p['name']}: SI-SDR/PESQ-WB/ESTOI "
              + " ".join(f"{n}={row[f'{n}/SI-SDR']:.2f}/{row[f'{n}/PESQ-WB']:.2f}/"
                         f"{row[f'{n}/ESTOI']:.3f}" for n in ["noisy", *names]), flush=True)
        if a.json_out:  # after every file, so an interrupted run keeps what it measured
            a.json_out.write_text(json.dumps({"variants": a.variant, "rows": rows}))
    print()
    for name, alg, cfg, prior in variants:
        print(f"{name}: {alg} prior={prior} {dataclasses.asdict(cfg)}")
    print(f"set {a.set}, every {a.every} from {a.offset}, seed {a.seed}, threads {a.threads}")
    for key in ("snr", "noise type"):
        print()
        print(table(rows, names, key))


if __name__ == "__main__":
    main()
