#!/usr/bin/env python3
"""Pitch-edit benchmark: set f0 to 100–300 Hz with the VAE editor, WORLD and PSOLA.

Usage:
    OMP_NUM_THREADS=1 python recipes/editing/benchmark.py [--data-root ../shared/data]
        [--limit N] [--fda-limit N] [--fda-check-limit N] [--method ours|world|psola ...]
        [--target HZ ...] [--prior NAME] [--no-control] [--max-seconds S] [--figure FILE]
        [--figure-target HZ] [--json-out FILE] [--threads 1] [--envelope auto|dap|cheaptrick|lpc|...]

Corpora: the dev speech of ../shared/data (LibriSpeech, 24 files; the first ``--limit`` in
manifest order) and FDA (``pitch/fda``, 2 speakers; ``--fda-limit`` files taken alternately
from the male and the female speaker). Every file is shifted to each target (default 100,
150, 200, 250, 300 Hz) by each method; ``ours`` calls ``speechvae.editing.load_editor(prior)
.shift_f0``, ``world`` and ``psola`` the baselines of ``speechvae.editing.baselines``.

Measured on each output, against the input (none of the methods uses pyin internally; PSOLA
does use Praat's periodicity analysis, so the Praat column is not independent for it):

* f0 error: median relative error (%) of the pyin f0 against the target, on frames voiced in
  the output; the same with Praat's autocorrelation pitch as a cross-check; and the share of
  gross errors (> 20 %, pyin);
* voicing agreement (%) of the output's pyin decisions with the input's;
* F1–F3 drift (%): median relative change of the Praat Burg formants on frames voiced in both
  (formant ceiling 5000 Hz for male, 5500 Hz for female speakers).

Each value is computed per file and averaged over files. The ``±0 st`` control rows resynthesise
without a pitch change (``semitones=0``): their f0 error is against the input's own track, and
their drift is the floor of method plus measurement (the analysis–resynthesis of each method:
WORLD analysis and synthesis, PSOLA without modification, ours re-generating the harmonics at
the input's f0). The ``resynth`` rows are the VAE editor's ``Editor.reconstruct`` (encode,
decode, no edit; with the relative method the input itself). ``input`` rows score the unmodified input
against each target. Before the edits, the FDA laryngograph f0 is compared with pyin and Praat
on the unmodified FDA files (the frame offset of the reference is estimated).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import DEFAULT_DATA_ROOT, read_manifest

from speechvae.audio import load_audio
from speechvae.editing.baselines import F0_SHIFTERS
from speechvae.evaluation.report import machine_info, require_plotting
from speechvae.metrics import (
    f0_error,
    f0_track,
    formant_drift,
    formant_tracks,
    resample_track,
    voicing_agreement,
)

SR = 16000
METHODS = ("ours", "world", "psola", "ours-latent", "ours-envedit")
DEFAULT_METHODS = ("ours", "world", "psola")
#: variants of the VAE editor: EditConfig settings
OURS = {"ours": {}, "ours-latent": {"method": "latent"},
        "ours-envedit": {"f0_envelope": "edit"}}
TARGETS = (100.0, 150.0, 200.0, 250.0, 300.0)
FMIN, FMAX = 60.0, 500.0
FDA_HOP_S = 0.015  # one laryngograph value per 15 ms
COLUMNS = ("f0 err pyin (%)", "f0 err Praat (%)", "gross pyin (%)", "voicing agr. (%)",
           "voiced kept (%)", "F1 drift (%)", "F2 drift (%)", "F3 drift (%)", "RTF")


# -- corpus ----------------------------------------------------------------------------------

def dev_files(data_root: Path, limit: int | None) -> list[dict]:
    rows = [r for r in read_manifest(data_root) if r["split"] == "dev"]
    return [{"path": data_root / r["path"], "gender": r["gender"], "name": Path(r["path"]).stem}
            for r in rows[:limit]]


def fda_files(data_root: Path, limit: int | None) -> list[dict]:
    """FDA files alternately from the male (rl) and the female (sb) speaker."""
    rows = [r for r in read_manifest(data_root) if r["path"].startswith("pitch/fda/")]
    by_speaker = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"]].append(r)
    interleaved = [r for group in zip(*(by_speaker[s] for s in sorted(by_speaker)))
                   for r in group]
    return [{"path": data_root / r["path"], "gender": r["gender"], "name": Path(r["path"]).stem,
             "ref": data_root / r["ref_path"]} for r in interleaved[:limit]]


# -- measurement -----------------------------------------------------------------------------

def analyse(x: np.ndarray, gender: str) -> dict:
    t_py, f_py = f0_track(x, SR, "pyin", FMIN, FMAX)
    t_pr, f_pr = f0_track(x, SR, "praat", FMIN, FMAX)
    t_fm, fm = formant_tracks(x, SR, max_formant=5000.0 if gender == "M" else 5500.0)
    return {"t_pyin": t_py, "pyin": f_py, "t_praat": t_pr, "praat": f_pr, "t_fm": t_fm,
            "formants": fm}


def compare(inp: dict, out: dict, target) -> dict:
    """Scores of one output against the input; ``target`` in Hz, or None for the input's
    own tracks (the no-change control)."""
    e_py = f0_error(out["pyin"], inp["pyin"] if target is None else target)
    e_pr = f0_error(out["praat"], inp["praat"] if target is None else target)
    voiced_in = resample_track(inp["t_pyin"], inp["pyin"], inp["t_fm"])
    voiced_out = resample_track(out["t_pyin"], out["pyin"], out["t_fm"])
    mask = np.isfinite(voiced_in) & np.isfinite(voiced_out)
    drift = formant_drift(inp["formants"], out["formants"], mask)
    n = min(inp["pyin"].size, out["pyin"].size)  # outputs are cut to the input's length
    v_in, v_out = np.isfinite(inp["pyin"][:n]), np.isfinite(out["pyin"][:n])
    return {"f0 err pyin (%)": e_py["median_pct"], "f0 err Praat (%)": e_pr["median_pct"],
            "gross pyin (%)": e_py["gross_pct"],
            "voicing agr. (%)": 100 * voicing_agreement(inp["pyin"], out["pyin"]),
            "voiced kept (%)": 100 * float(v_out[v_in].mean()) if v_in.any() else np.nan,
            "F1 drift (%)": drift["F1"], "F2 drift (%)": drift["F2"],
            "F3 drift (%)": drift["F3"]}


def fit(y, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def make_shifters(methods: list[str], prior: str | None, envelope: str | None = None) -> dict:
    """The f0 shifters of ``methods``; ``envelope`` sets ``EditConfig.envelope`` of the VAE
    editors (default: the editor's default)."""
    shifters = {}
    for m in methods:
        if m in OURS:
            try:
                from speechvae.editing import EditConfig, load_editor
            except ImportError as exc:
                sys.exit(f"error: method {m!r} needs speechvae.editing.load_editor ({exc}); "
                         "run with --method world --method psola")
            extra = {} if envelope is None else {"envelope": envelope}
            editor = load_editor(prior, config=EditConfig(**OURS[m], **extra))
            shifters[m] = editor.shift_f0
        else:
            shifters[m] = F0_SHIFTERS[m]
    return shifters


# -- FDA reference check ---------------------------------------------------------------------

def fda_reference_check(files: list[dict]) -> tuple[dict, list[dict]]:
    """pyin and Praat against the laryngograph f0 on the unmodified FDA files.

    The reference frame k is read at ``k * 15 ms + offset``; the offset (-30..+30 ms) that
    gives the lowest pooled median pyin error is kept and reported.
    """
    tracks = []
    for f in files:
        x, _ = load_audio(f["path"], SR)
        ref = np.loadtxt(f["ref"], dtype=np.float64).reshape(-1)
        ref[ref <= 0] = np.nan
        tracks.append((f, ref, *f0_track(x, SR, "pyin", FMIN, FMAX),
                       *f0_track(x, SR, "praat", FMIN, FMAX)))
    offsets = np.round(np.arange(-0.030, 0.0301, 0.0025), 4)

    def pooled(offset, which):
        rel, agree = [], []
        for _, ref, t_py, f_py, t_pr, f_pr in tracks:
            t_ref = np.arange(ref.size) * FDA_HOP_S + offset
            t, f = (t_py, f_py) if which == "pyin" else (t_pr, f_pr)
            est = resample_track(t, f, t_ref)
            inside = (t_ref >= t[0] - 0.005) & (t_ref <= t[-1] + 0.005)
            ok = inside & np.isfinite(est) & np.isfinite(ref)
            rel.append(np.abs(est[ok] - ref[ok]) / ref[ok])
            agree.append(np.isfinite(est[inside]) == np.isfinite(ref[inside]))
        rel, agree = np.concatenate(rel), np.concatenate(agree)
        return {"median_pct": 100 * float(np.median(rel)) if rel.size else np.nan,
                "gross_pct": 100 * float(np.mean(rel > 0.2)) if rel.size else np.nan,
                "voicing_agr_pct": 100 * float(np.mean(agree)), "frames": int(rel.size)}

    scan = {float(o): pooled(o, "pyin")["median_pct"] for o in offsets}
    best = min(scan, key=scan.get)
    result = {"offset_s": best, "files": len(files), "scan_median_pct": scan,
              "pyin": pooled(best, "pyin"), "praat": pooled(best, "praat"),
              "pyin_at_0": pooled(0.0, "pyin")}
    return result, [{"name": t[0]["name"]} for t in tracks]


# -- tables and figure -----------------------------------------------------------------------

def _fmt(v: float, col: str) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.3f}" if col == "RTF" else f"{v:.2f}"


def corpus_table(rows: list[dict], methods: list[str], targets: list, control: bool) -> str:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["target"], r["method"])].append(r)
    keys = [(f"{t:g} Hz", m) for t in targets for m in ["input", *methods]]
    if control:
        keys += [("±0 st", m) for m in methods] + [("resynth", m) for m in methods]
    keys += [("all targets", m) for m in ["input", *methods]]
    for t in targets:
        for m in ["input", *methods]:
            groups[("all targets", m)].extend(groups[(f"{t:g} Hz", m)])
    head = "| target | method | n | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for key in keys:
        sel = groups.get(key, [])
        if not sel:
            continue
        vals = []
        for col in COLUMNS:
            if col == "RTF":
                v = (sum(r["time_s"] for r in sel) / sum(r["duration_s"] for r in sel)
                     if key[1] != "input" else np.nan)
            else:
                v = float(np.nanmean([r[col] for r in sel])) if any(
                    np.isfinite(r[col]) for r in sel) else np.nan
            vals.append(_fmt(v, col))
        n = len({r["file"] for r in sel})
        lines.append(f"| {key[0]} | {key[1]} | {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot_example(path: Path, name: str, x: np.ndarray, outputs: dict, analyses: dict,
                 target: float) -> None:
    Figure = require_plotting()
    rows = ["input", *outputs]
    fig = Figure(figsize=(12, 2.4 * len(rows)), constrained_layout=True)
    axes = fig.subplots(len(rows), 2, squeeze=False, gridspec_kw={"width_ratios": [3, 2]})
    for i, m in enumerate(rows):
        y = x if m == "input" else outputs[m]
        a = analyses[m]
        ax = axes[i, 0]
        with np.errstate(divide="ignore"):  # digital silence: log10(0) shows as the floor
            ax.specgram(y, NFFT=512, Fs=SR, noverlap=384, cmap="magma", vmin=-130)
        voiced = np.isfinite(resample_track(a["t_pyin"], a["pyin"], a["t_fm"]))
        fm = np.where(voiced, a["formants"], np.nan)  # formants on voiced frames only
        for k in range(fm.shape[0]):
            ax.plot(a["t_fm"], fm[k], ".", ms=1.5, color="w")
        ax.set_ylim(0, 5000)
        ax.set_xlim(0, y.size / SR)
        ax.set_ylabel(f"{m}\nfrequency (Hz)")
        ax = axes[i, 1]
        ax.plot(analyses["input"]["t_pyin"], analyses["input"]["pyin"], color="0.6",
                label="input (pyin)")
        if m != "input":
            ax.plot(a["t_pyin"], a["pyin"], color="C0", label=f"{m} (pyin)")
            ax.plot(a["t_praat"], a["praat"], ".", ms=2, color="C1", label=f"{m} (Praat)")
        ax.axhline(target, ls="--", color="k", lw=0.8, label=f"target {target:g} Hz")
        ax.set_ylim(FMIN, FMAX)
        ax.set_xlim(0, y.size / SR)
        ax.set_ylabel("f0 (Hz)")
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (s)")
    fig.suptitle(f"{name}: f0 set to {target:g} Hz "
                 "(spectrogram with Burg F1–F3 on voiced frames; f0 tracks)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# -- main ------------------------------------------------------------------------------------

def run_corpus(name: str, files: list[dict], shifters: dict, targets: list, control: bool,
               figure: tuple | None, max_seconds: float | None = None) -> list[dict]:
    rows = []
    for i, f in enumerate(files):
        x, _ = load_audio(f["path"], SR)
        if max_seconds:
            x = x[: int(max_seconds * SR)]
        dur = x.size / SR
        inp = analyse(x, f["gender"])
        for t in targets:
            rows.append({"corpus": name, "file": f["name"], "target": f"{t:g} Hz",
                         "method": "input", "time_s": 0.0, "duration_s": dur,
                         **compare(inp, inp, t)})
        jobs = [(f"{t:g} Hz", {"target_hz": float(t)}, t) for t in targets]
        if control:
            jobs.append(("±0 st", {"semitones": 0.0}, None))
            jobs.append(("resynth", None, None))
        fig_out, fig_an = {}, {"input": inp}
        for label, kwargs, t in jobs:
            for m, shift in shifters.items():
                editor = getattr(shift, "__self__", None)  # the VAE editors: an Editor
                if kwargs is None and not hasattr(editor, "reconstruct"):
                    continue  # "resynth": Editor.reconstruct, ours only
                t0 = time.perf_counter()
                y = fit(editor.reconstruct(x, SR) if kwargs is None else shift(x, SR, **kwargs),
                        x.size)
                dt = time.perf_counter() - t0
                out = analyse(y, f["gender"])
                rows.append({"corpus": name, "file": f["name"], "target": label, "method": m,
                             "time_s": dt, "duration_s": dur, **compare(inp, out, t)})
                if figure and i == 0 and t == figure[1]:
                    fig_out[m], fig_an[m] = y, out
        if figure and i == 0:
            plot_example(figure[0], f"{name}/{f['name']}", x, fig_out, fig_an, figure[1])
        last = [r for r in rows if r["file"] == f["name"] and r["method"] != "input"
                and r["target"] not in ("±0 st", "resynth")]
        print(f"[{name} {i + 1}/{len(files)}] {f['name']} ({dur:.1f} s): f0 err pyin "
              + ", ".join(f"{m} {np.nanmean([r['f0 err pyin (%)'] for r in last if r['method'] == m]):.2f} %"
                          for m in shifters), flush=True)
    return rows


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--limit", type=int, default=None, help="first N dev files (default all)")
    ap.add_argument("--fda-limit", type=int, default=10,
                    help="N FDA files, alternately male and female (0 skips FDA)")
    ap.add_argument("--fda-check-limit", type=int, default=None,
                    help="FDA files of the laryngograph check (default: --fda-limit)")
    ap.add_argument("--method", action="append", choices=METHODS,
                    help="repeatable; default: ours, world, psola (ours-latent: the earlier "
                         "decoder-only editor; ours-envedit: ours with the latent edit's "
                         "envelope change)")
    ap.add_argument("--target", action="append", type=float,
                    help="target f0 in Hz, repeatable; default 100 150 200 250 300")
    ap.add_argument("--prior", default=None,
                    help="prior of the 'ours' editor (name or checkpoint; default: the "
                         "editor's shipped editing prior)")
    ap.add_argument("--no-control", action="store_true", help="skip the ±0 st rows")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="use only the first S seconds of each file (quick subset runs)")
    ap.add_argument("--figure", type=Path, help="PNG: spectrograms and f0 of the first file")
    ap.add_argument("--figure-target", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (method 'ours')")
    ap.add_argument("--envelope", choices=("auto", "lpc", "true", "dap", "cepstrum",
                                           "cheaptrick"),
                    help="EditConfig.envelope of the VAE editors (default: the editor's, auto)")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args(argv)
    if not (a.data_root / "manifest.csv").exists():
        sys.exit(f"error: {a.data_root}/manifest.csv not found (give --data-root)")
    methods = list(dict.fromkeys(a.method or DEFAULT_METHODS))
    targets = list(dict.fromkeys(a.target or TARGETS))
    if a.figure and a.figure_target not in targets:
        sys.exit(f"error: --figure-target {a.figure_target:g} is not among the targets")
    if any(m in OURS for m in methods):
        import torch

        torch.set_num_threads(a.threads)
    shifters = make_shifters(methods, a.prior, a.envelope)
    # warm-up: first calls pay for lazy initialisation (numba for pyin, torch)
    warm = np.sin(2 * np.pi * 150 * np.arange(SR // 2) / SR).astype(np.float32)
    f0_track(warm, SR, "pyin")
    for shift in shifters.values():
        shift(warm, SR, target_hz=200.0)

    out = {"methods": methods, "targets": targets, "rows": []}
    fda = fda_files(a.data_root, a.fda_limit) if a.fda_limit else []
    check = None
    n_check = a.fda_limit if a.fda_check_limit is None else a.fda_check_limit
    if n_check:
        check, _ = fda_reference_check(fda_files(a.data_root, n_check))
        out["fda_reference"] = check
    corpora = [("dev", dev_files(a.data_root, a.limit)), ("fda", fda)]
    figure = (a.figure, a.figure_target) if a.figure else None
    for name, files in corpora:
        if files:
            out["rows"] += run_corpus(name, files, shifters, targets, not a.no_control,
                                      figure if name == "dev" else None, a.max_seconds)

    m = machine_info()
    versions = []
    for mod in ("librosa", "parselmouth", "pyworld"):
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    print()
    print(f"machine: {m['machine']}, {m['cores']} cores; threads: {a.threads} "
          f"(OMP_NUM_THREADS as set); {', '.join(versions)}; commit {m['commit']}")
    print(f"methods: {', '.join(methods)}; targets (Hz): {', '.join(f'{t:g}' for t in targets)};"
          f" pyin and Praat f0 {FMIN:g}–{FMAX:g} Hz, 10 ms hop")
    if check:
        print()
        print(f"FDA laryngograph reference vs. trackers ({check['files']} unmodified files; "
              f"reference frame k read at k·15 ms + {1000 * check['offset_s']:+.1f} ms, "
              f"the offset with the lowest pyin error):")
        print()
        print("| tracker | frames | median rel. error (%) | gross > 20 % (%) | "
              "voicing agr. (%) |")
        print("|---|---|---|---|---|")
        for k, label in (("pyin", "pyin"), ("praat", "Praat ac"),
                         ("pyin_at_0", "pyin, offset 0")):
            c = check[k]
            print(f"| {label} | {c['frames']} | {c['median_pct']:.2f} | {c['gross_pct']:.2f} | "
                  f"{c['voicing_agr_pct']:.1f} |")
    for name, files in corpora:
        rows = [r for r in out["rows"] if r["corpus"] == name]
        if rows:
            total = sum({r["file"]: r["duration_s"] for r in rows}.values())
            print()
            print(f"{name}: {len(files)} files, {total:.1f} s")
            print()
            print(corpus_table(rows, methods, targets, not a.no_control))
    if a.figure:
        print(f"\nfigure: {a.figure}")
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
