"""Formant-edit accuracy of the latent editor: ``edit-formant`` on real speech.

For each dev utterance and each target (F1 400/600/800 Hz, F2 1200/1600/2000 Hz), the editor
sets that formant on voiced frames; Praat's Burg formants of the output (a measurement the
editor does not use) give the achieved value. Reported per target, as means over files:
the median relative error (%) of the edited formant against the target on frames voiced
(pyin) in both input and output, the same error of the unedited input (how far the target
was), the drift of the other two formants and of f0 (pyin) against the input.

The editor (``method="relative"``, the default) measures the formant it reached and warns
when it is more than 5 % from the target; "warned" is the share of files with that warning
and "ok or warned" the share that either reached the target within 5 % (median Burg value
over frames voiced in both, this script's measurement) or warned.

    OMP_NUM_THREADS=1 python recipes/editing/formants.py --limit 8 [--method latent]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import SR, analyse, dev_files

from speechvae.audio import load_audio
from speechvae.editing import EDIT_METHODS, EditConfig, load_editor
from speechvae.evaluation.report import machine_info
from speechvae.metrics import f0_error, resample_track

TARGETS = {1: (400.0, 600.0, 800.0), 2: (1200.0, 1600.0, 2000.0)}


def formant_error(fm: np.ndarray, mask: np.ndarray, target: float) -> float:
    values = fm[mask]
    values = values[np.isfinite(values)]
    return float(np.median(np.abs(values / target - 1)) * 100) if values.size else float("nan")


def drift(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> float:
    ok = mask & np.isfinite(before) & np.isfinite(after)
    return (float(np.median(np.abs(after[ok] / before[ok] - 1)) * 100) if ok.any()
            else float("nan"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path,
                    default=Path(__file__).resolve().parents[2].parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", choices=EDIT_METHODS, default=EDIT_METHODS[0])
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="use only the first S seconds of each file (quick subset runs)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    editor = load_editor(config=EditConfig(method=a.method))
    rows = []
    t0 = time.perf_counter()
    for f in dev_files(a.data_root, a.limit):
        x, _ = load_audio(f["path"], SR)
        if a.max_seconds:
            x = x[: int(a.max_seconds * SR)]
        inp = analyse(x, f["gender"])
        for formant, targets in TARGETS.items():
            for target in targets:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    y = editor.edit_formant(x, SR, formant, target)
                warned = any(f"F{formant} reached" in str(w.message) for w in caught)
                out = analyse(y, f["gender"])
                mask = (np.isfinite(resample_track(inp["t_pyin"], inp["pyin"], inp["t_fm"]))
                        & np.isfinite(resample_track(out["t_pyin"], out["pyin"], out["t_fm"])))
                others = [k for k in (1, 2, 3) if k != formant]
                reached = out["formants"][formant - 1][mask]
                reached = (float(np.median(reached[np.isfinite(reached)]))
                           if np.isfinite(reached).any() else float("nan"))
                ok = abs(reached / target - 1) <= 0.05
                rows.append({
                    "reached (Hz)": reached,
                    "warned": 100.0 * warned,
                    "ok or warned": 100.0 * (ok or warned),
                    "target": f"F{formant} {target:.0f} Hz",
                    "error": formant_error(out["formants"][formant - 1], mask, target),
                    "input error": formant_error(inp["formants"][formant - 1], mask, target),
                    **{f"F{k} drift": drift(inp["formants"][k - 1], out["formants"][k - 1],
                                            mask) for k in others},
                    "f0 drift": f0_error(out["pyin"], inp["pyin"])["median_pct"],
                })
        print(f"{f['name']} done", file=sys.stderr, flush=True)
    m = machine_info()
    print(f"machine: {m['machine']}, {m['cores']} cores; threads {a.threads}; commit {m['commit']}; torch {m['torch']}; "
          f"{a.limit} dev files (first {a.max_seconds or 'all'} s); method {a.method}; "
          f"{time.perf_counter() - t0:.0f} s\n")
    cols = ("error", "input error", "reached (Hz)", "F1 drift", "F2 drift", "F3 drift",
            "f0 drift", "warned", "ok or warned")
    print("| target | n | " + " | ".join(c if "Hz" in c else f"{c} (%)" for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for target in dict.fromkeys(r["target"] for r in rows):
        sel = [r for r in rows if r["target"] == target]
        cells = []
        for c in cols:
            v = [r[c] for r in sel if c in r]
            cells.append(f"{np.nanmean(v):.1f}" if v else "–")
        print(f"| {target} | {len(sel)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
