"""Tables, figures and the HTML page of an evaluation (see :func:`.evaluate.evaluate`).

Written into the output folder:

* ``table.md``: a header (set, methods and their settings, machine, threads, device,
  commit) and three Markdown tables of mean scores: overall, per input SNR, per noise type;
  each row a (group, method) with the number of files and the real-time factor
  (processing time / audio duration); the best value of a group in bold.
* ``table.csv``: the same numbers at full precision (columns ``group_by, group, method, n,
  SI-SDR, PESQ-WB, PESQ-NB, STOI, ESTOI, RTF``).
* ``figures/scores.png``: mean scores per method (one bar chart per measure);
  ``figures/spectrograms_<name>.png``: noisy, each method's output and clean, for a few files.
* ``index.html``: all of the above, and one row per file with an ``<audio>`` player for the
  clean, noisy and enhanced signals (relative links).

Means leave out values that could not be computed (NaN PESQ). Figures use matplotlib's Agg
renderer through ``matplotlib.figure.Figure`` (no pyplot state, no display needed).
"""
from __future__ import annotations

import csv
import html
import math
import os
import platform
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..metrics import METRICS

__all__ = [
    "GROUPINGS",
    "machine_info",
    "markdown_report",
    "plot_scores",
    "plot_spectrograms",
    "require_plotting",
    "summarise",
    "table_cells",
    "threads_label",
    "write_report",
]

#: table groupings, in report order: (key, column title)
GROUPINGS = (("overall", ""), ("SNR", "SNR"), ("noise type", "noise type"))
TABLE_COLUMNS = ("group_by", "group", "method", "n", *METRICS, "RTF", "threads")
SAMPLE_RATE = 16000


def require_plotting():
    """Import matplotlib's Agg canvas.

    Raises:
        ImportError: matplotlib is missing (the message says ``pip install speechvae[eval]``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the 'matplotlib' package is needed for the evaluation figures: "
                          "pip install speechvae[eval] (or pip install matplotlib)") from None
    return Figure


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    """CPU model, cores, versions and the git commit of the speechvae source (``+dirty``
    when tracked files differ from it; ``unknown`` outside a git checkout)."""
    import torch

    from .. import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if commit != "unknown" and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return {"machine": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "speechvae": __version__, "commit": commit}


# -- tables ----------------------------------------------------------------------------------

def _mean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _snr_label(snr: float) -> str:
    return "unknown" if math.isnan(snr) else f"{snr:g} dB"


def threads_label(rows: list[dict]) -> str:
    """The torch thread counts the rows ran with: ``"2"``, or ``"mixed: 1, 2"`` (``?``: a
    row of an earlier version that did not record it)."""
    counts = sorted({r.get("threads") for r in rows}, key=lambda t: (t is None, t or 0))
    text = ", ".join("?" if t is None else str(t) for t in counts)
    return text if len(counts) <= 1 else f"mixed: {text}"


def summarise(rows: list[dict], methods: list[str]) -> list[dict]:
    """Mean scores per (grouping, group, method).

    Args:
        rows: per-file results (:data:`~.evaluate.RESULT_COLUMNS`).
        methods: method names in table order.

    Returns:
        dicts with the keys of ``TABLE_COLUMNS``: ``group_by`` (``overall``, ``SNR``,
        ``noise type``), ``group`` (``all``, ``-5 dB``, ``home`` ...), ``method``, ``n``, the
        mean of each metric, ``RTF`` (total processing time / total audio duration) and
        ``threads`` (:func:`threads_label` of the rows).
    """
    out = []
    snrs = sorted({r["snr_db"] for r in rows}, key=lambda s: (math.isnan(s), s))
    types = sorted({r["noise_type"] for r in rows}, key=lambda t: (t == "unknown", t))
    groups = {"overall": [("all", lambda r: True)],
              "SNR": [(_snr_label(s), lambda r, s=s: r["snr_db"] == s
                       or (math.isnan(s) and math.isnan(r["snr_db"]))) for s in snrs],
              "noise type": [(t, lambda r, t=t: r["noise_type"] == t) for t in types]}
    for key, _ in GROUPINGS:
        for label, keep in groups[key]:
            for m in methods:
                sel = [r for r in rows if r["method"] == m and keep(r)]
                if not sel:
                    continue
                duration = math.fsum(r["duration_s"] for r in sel)
                out.append({"group_by": key, "group": label, "method": m, "n": len(sel),
                            **{k: _mean([r[k] for r in sel]) for k in METRICS},
                            "RTF": math.fsum(r["seconds"] for r in sel) / duration,
                            "threads": threads_label(sel)})
    return out


def _fmt(name: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3f}" if name in ("STOI", "ESTOI", "RTF") else f"{value:.2f}"


def _best(summary: list[dict]) -> dict:
    """(group_by, group, metric) -> best mean (all metrics: higher is better)."""
    best: dict = {}
    for r in summary:
        for k in METRICS:
            v = r[k]
            if not math.isnan(v):
                key = (r["group_by"], r["group"], k)
                best[key] = max(best.get(key, -math.inf), v)
    return best


def _header_name(metric: str) -> str:
    return "SI-SDR (dB)" if metric == "SI-SDR" else metric


def _describe(settings: dict) -> str:
    """``k=v`` list of a method's settings, nested dicts flattened."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif v is not None:
                yield f"{prefix}{k}={v}"

    return ", ".join(flat(settings))


def header_lines(info: dict) -> list[str]:
    """The facts printed above the tables, one Markdown list item each."""
    minutes = info.get("audio_s", 0) / 60
    lines = [f"- set: `{info['set']}`: {info['pairs']} pairs, {minutes:.1f} min of audio"]
    lines += [f"- `{m}`: {_describe(s)}" for m, s in info["methods"].items()]
    threads = str(info["threads"])
    if threads.startswith("mixed"):
        threads += (" (rows run with different thread counts, e.g. a run resumed with another "
                    "--threads: an RTF cell that mixes them shows its counts; results.csv has "
                    "each row's)")
    lines.append(f"- machine: {info['machine']}, {info['cores']} cores; threads: "
                 f"{threads}; device: {info['device']}; torch {info['torch']}; "
                 f"python {info['python']}; speechvae {info['speechvae']}; "
                 f"commit {info['commit']}")
    lines.append("- means over files (NaN left out); SI-SDR in dB; PESQ-WB (ITU-T P.862.2) "
                 "and PESQ-NB (P.862 + P.862.1) in MOS-LQO; STOI and ESTOI in [0, 1]; RTF = "
                 "processing time / audio duration (I/O and scoring excluded); best of each "
                 "group in bold")
    return lines


def table_cells(summary: list[dict], group_by: str, title: str) -> list[list[str]]:
    """One grouping of :func:`summarise` as text cells: a header row, then one row per
    (group, method); the best mean of each group and metric in ``**bold**``. ``title`` is
    the group column's header (empty: no group column, for the overall table)."""
    best = _best(summary)
    head = ([title] if title else []) + ["method", "n", *map(_header_name, METRICS), "RTF"]
    body = []
    for r in summary:
        if r["group_by"] != group_by:
            continue
        cells = [r["group"]] if title else []
        cells += [r["method"], str(r["n"])]
        for k in METRICS:
            text = _fmt(k, r[k])
            if best.get((group_by, r["group"], k)) == r[k] and len(
                    {x["method"] for x in summary if x["group_by"] == group_by}) > 1:
                text = f"**{text}**"
            cells.append(text)
        rtf = _fmt("RTF", r["RTF"])
        if str(r.get("threads", "")).startswith("mixed"):
            rtf += f" ({r['threads']} threads)"
        cells.append(rtf)
        body.append(cells)
    return [head, *body]


SECTION_TITLES = {"overall": "Overall", "SNR": "Per input SNR", "noise type": "Per noise type"}


def markdown_report(summary: list[dict], info: dict) -> str:
    """The Markdown text of ``table.md``."""
    name = Path(info["set"]).name
    out = [f"# speechvae evaluation: {name}", "", *header_lines(info), ""]
    for key, title in GROUPINGS:
        table = table_cells(summary, key, title)
        out += [f"## {SECTION_TITLES[key]}", "", "| " + " | ".join(table[0]) + " |",
                "|" + "|".join("---" if i < (2 if title else 1) else "---:"
                               for i in range(len(table[0]))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in table[1:]]
        out.append("")
    return "\n".join(out)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_table_csv(summary: list[dict], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(TABLE_COLUMNS))
        w.writeheader()
        for r in summary:
            w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
    os.replace(tmp, path)


# -- figures ---------------------------------------------------------------------------------

def plot_scores(summary: list[dict], path: str | os.PathLike) -> Path:
    """Bar charts of the overall mean of each metric per method, saved as PNG."""
    Figure = require_plotting()
    overall = [r for r in summary if r["group_by"] == "overall"]
    methods = [r["method"] for r in overall]
    fig = Figure(figsize=(2.6 * len(METRICS), 3.4))
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.24, top=0.84, wspace=0.3)
    axes = fig.subplots(1, len(METRICS))
    colors = [f"C{i % 10}" for i in range(len(methods))]
    for ax, k in zip(np.atleast_1d(axes), METRICS):
        vals = [r[k] for r in overall]
        shown = [0.0 if not math.isfinite(v) else v for v in vals]
        bars = ax.bar(range(len(methods)), shown, color=colors)
        for b, v in zip(bars, vals):
            ax.annotate(_fmt(k, v), (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom" if b.get_height() >= 0 else "top",
                        fontsize=8)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(_header_name(k), fontsize=10)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.margins(y=0.15)
    fig.suptitle(f"mean scores ({overall[0]['n'] if overall else 0} files)", fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _db_spectrogram(x: np.ndarray) -> np.ndarray:
    import torch

    from ..stft import DEFAULT_STFT, power_spectrogram

    p = power_spectrogram(torch.from_numpy(np.asarray(x, dtype=np.float32)), DEFAULT_STFT)
    return 10 * np.log10(p.numpy() + 1e-10)


def plot_spectrograms(signals: list[tuple[str, np.ndarray]], path: str | os.PathLike,
                      title: str = "", sample_rate: int = SAMPLE_RATE) -> Path:
    """Log-power spectrograms (dB, one colour scale: 80 dB below the loudest bin of all)
    stacked vertically, one per ``(label, waveform (time,))``, saved as PNG."""
    Figure = require_plotting()
    specs = [(label, _db_spectrogram(x)) for label, x in signals]
    top = max(float(s.max()) for _, s in specs)
    height = 1.7 * len(specs) + 1.0
    fig = Figure(figsize=(9, height))
    fig.subplots_adjust(left=0.07, right=0.87, bottom=0.5 / height, top=1 - 0.6 / height,
                        hspace=0.45)
    axes = np.atleast_1d(fig.subplots(len(specs), 1, sharex=True))
    image = None
    for ax, (label, s), (_, x) in zip(axes, specs, signals):
        extent = (0, x.size / sample_rate, 0, sample_rate / 2000)
        image = ax.imshow(s, origin="lower", aspect="auto", extent=extent, vmin=top - 80,
                          vmax=top, cmap="magma", interpolation="nearest")
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("time (s)", fontsize=8)
    fig.colorbar(image, cax=fig.add_axes((0.9, 0.25, 0.02, 0.5)), label="dB")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=90)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def _pick(pairs: list, n: int) -> list:
    """``n`` pairs spread from the lowest to the highest input SNR."""
    if n <= 0 or not pairs:
        return []
    order = sorted(pairs, key=lambda p: (math.isnan(p.snr_db), p.snr_db, p.index))
    idx = sorted({round(i) for i in np.linspace(0, len(order) - 1, min(n, len(order)))})
    return [order[i] for i in idx]


def _label(method: str, row: dict | None) -> str:
    if row is None:
        return method
    return (f"{method}: SI-SDR {_fmt('SI-SDR', row['SI-SDR'])} dB, PESQ-WB "
            f"{_fmt('PESQ-WB', row['PESQ-WB'])}, ESTOI {_fmt('ESTOI', row['ESTOI'])}")


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.info { font-size: 0.85em; color: #444; } ul.info code { font-size: 0.95em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
table.files td { vertical-align: top; } table.files audio { width: 170px; height: 32px; }
tr.first td { border-top: 2px solid #999; }
.sc { font-size: 0.8em; color: #555; } div.wide { overflow-x: auto; }
"""


def _md_inline(text: str) -> str:
    """Escape text, then render the Markdown bits the tables use (``code``, **bold**)."""
    text = html.escape(text)
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", text)


def _html_table(table: list[list[str]], n_text: int, grouped: bool) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = []
    for k, r in enumerate(table[1:]):
        cells = [f"<td{' class=num' if i >= n_text else ''}>{_md_inline(c)}</td>"
                 for i, c in enumerate(r)]
        first = grouped and k > 0 and r[0] != table[k][0]  # a new group starts here
        body.append(f"<tr{' class=first' if first else ''}>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"


def _href(target: Path, base: Path) -> str:
    rel = os.path.relpath(Path(target).resolve(), Path(base).resolve())
    return html.escape(quote(Path(rel).as_posix()))


def _audio(href: str) -> str:
    return f'<audio controls preload="none" src="{href}"></audio>'


def html_page(result, summary: list[dict], output_dir: Path, figures: dict) -> str:
    """The text of ``index.html``."""
    info = result.info
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>speechvae evaluation: {html.escape(Path(info['set']).name)}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>speechvae evaluation: {html.escape(Path(info['set']).name)}</h1>",
           '<ul class="info">']
    out += [f"<li>{_md_inline(line[2:])}</li>" for line in header_lines(info)]
    out.append("</ul>")
    if "scores" in figures:
        out.append(f'<img src="{_href(figures["scores"], output_dir)}" alt="mean scores">')
    for key, title in GROUPINGS:
        out.append(f"<h2>{SECTION_TITLES[key]}</h2>")
        out.append(_html_table(table_cells(summary, key, title), 3 if title else 2, bool(title)))
    spectrograms = figures.get("spectrograms", {})
    if spectrograms:
        out.append("<h2>Spectrograms</h2>")
        for name, path in spectrograms.items():
            out.append(f'<img src="{_href(path, output_dir)}" alt="spectrograms of '
                       f'{html.escape(name)}">')
    by_key = {(r["name"], r["method"]): r for r in result.rows}
    shown = [m for m in result.methods if m != "noisy"]
    out.append("<h2>Files</h2>")
    out.append('<div class="wide"><table class="files"><tr><th>file</th><th>clean</th><th>noisy</th>'
               + "".join(f"<th>{html.escape(m)}</th>" for m in shown) + "</tr>")
    for p in result.pairs:
        def cell(href: str, row: dict | None) -> str:
            sc = "" if row is None else (
                f'<div class="sc">SI-SDR {_fmt("SI-SDR", row["SI-SDR"])} dB · PESQ-WB '
                f'{_fmt("PESQ-WB", row["PESQ-WB"])} · ESTOI {_fmt("ESTOI", row["ESTOI"])}'
                "</div>")
            return f"<td>{_audio(href)}{sc}</td>"

        desc = (f"<b>{html.escape(p.name)}</b><div class=sc>{html.escape(_snr_label(p.snr_db))}"
                f", {html.escape(p.noise_type)}</div>")
        cells = [f"<td>{desc}</td>", cell(_href(p.clean, output_dir), None),
                 cell(_href(p.noisy, output_dir), by_key.get((p.name, "noisy")))]
        for m in shown:
            row = by_key[(p.name, m)]
            cells.append(cell(_href(output_dir / row["output"], output_dir), row))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</table></div>", "</body></html>", ""]
    return "\n".join(out)


def write_report(result, output_dir: str | os.PathLike, figure_files: int = 2,
                 figures: bool = True) -> dict:
    """Write table.md, table.csv, the figures and index.html for an evaluation result.

    Args:
        result: :class:`~speechvae.evaluation.evaluate.EvaluationResult`.
        output_dir: the evaluation folder (outputs' paths are relative to it).
        figure_files: number of files shown as spectrograms.
        figures: draw the figures (matplotlib); False: tables and the HTML page only
            (matplotlib is not imported).

    Returns:
        ``result.files``, updated with the paths written.
    """
    from ..audio import AudioWarning, load_audio

    output_dir = Path(output_dir)
    summary = summarise(result.rows, result.methods)
    result.summary = summary
    files = result.files
    files["table_md"] = output_dir / "table.md"
    files["table_csv"] = output_dir / "table.csv"
    _write_text(files["table_md"], markdown_report(summary, result.info))
    _write_table_csv(summary, files["table_csv"])

    files["html"] = output_dir / "index.html"
    if not figures:
        files["figures"] = []
        _write_text(files["html"], html_page(result, summary, output_dir, {}))
        return files
    fig_dir = output_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures: dict = {"scores": plot_scores(summary, fig_dir / "scores.png"), "spectrograms": {}}
    by_key = {(r["name"], r["method"]): r for r in result.rows}
    import warnings

    for p in _pick(result.pairs, figure_files):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AudioWarning)
            noisy = load_audio(p.noisy, SAMPLE_RATE)[0]
            signals = [(_label("noisy", by_key.get((p.name, "noisy"))), noisy)]
            for m in result.methods:
                if m != "noisy":
                    row = by_key[(p.name, m)]
                    x = load_audio(output_dir / row["output"], SAMPLE_RATE, allow_silent=True)[0]
                    signals.append((_label(m, row), x))
            signals.append(("clean", load_audio(p.clean, SAMPLE_RATE)[0]))
        title = f"{p.name} ({_snr_label(p.snr_db)}, {p.noise_type})"
        figures["spectrograms"][p.name] = plot_spectrograms(
            signals, fig_dir / f"spectrograms_{_safe(p.name)}.png", title)
    files["figures"] = [figures["scores"], *figures["spectrograms"].values()]
    files["html"] = output_dir / "index.html"
    _write_text(files["html"], html_page(result, summary, output_dir, figures))
    return files
