"""``speechvae score``: objective measures of estimates against clean references."""
from __future__ import annotations

import math
from pathlib import Path

import click

from ._common import CLIError, emit, print_json, warn

#: Suffixes that ``speechvae enhance`` appends to output stems; an estimate ``x_enhanced.wav``
#: matches the reference ``x.wav``.
ESTIMATE_SUFFIXES = ("_enhanced",)
SAMPLE_RATE = 16000
#: length difference (samples at 16 kHz) above which a pair is reported as suspicious
LENGTH_TOLERANCE = 160


def _key(path: Path, root: Path, strip_suffixes: bool) -> tuple[str, str]:
    """(relative path without extension, bare stem) used to match files, posix style."""
    rel = path.relative_to(root).with_suffix("")
    stem = rel.name
    if strip_suffixes:
        for suffix in ESTIMATE_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
    return (rel.parent / stem).as_posix(), stem


def match_files(reference_dir: Path, estimate_dir: Path
                ) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Pair the audio files of two folders (searched recursively).

    An estimate matches the reference with the same relative path and stem, ignoring the
    extension and an ``_enhanced`` suffix of the estimate (``sub/x_enhanced.wav`` matches
    ``sub/x.flac``); failing that, the reference with the same stem if that stem is unique
    among the references.

    Returns:
        ``(pairs, unmatched_references, unmatched_estimates)``; pairs sorted by reference.

    Raises:
        AudioError: a folder is missing or holds no audio file.
        CLIError: two estimates match the same reference.
    """
    from speechvae.audio import list_audio_files

    refs = list_audio_files([reference_dir])
    ests = list_audio_files([estimate_dir])
    by_rel: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for r in refs:
        rel, stem = _key(r, reference_dir, strip_suffixes=False)
        by_rel[rel] = r
        by_stem.setdefault(stem, []).append(r)
    pairs: dict[Path, Path] = {}
    unmatched_est = []
    for e in ests:
        ref = None
        for strip in (False, True):  # an exact stem match wins over stripping "_enhanced"
            rel, stem = _key(e, estimate_dir, strip_suffixes=strip)
            ref = by_rel.get(rel)
            if ref is None and len(by_stem.get(stem, [])) == 1:
                ref = by_stem[stem][0]
            if ref is not None:
                break
        if ref is None:
            unmatched_est.append(e)
        elif ref in pairs:
            raise CLIError(f"{pairs[ref]} and {e} both match the reference {ref}")
        else:
            pairs[ref] = e
    unmatched_ref = [r for r in refs if r not in pairs]
    return sorted(pairs.items()), unmatched_ref, unmatched_est


def score_pair(reference: Path, estimate: Path) -> dict[str, float]:
    """All metrics of :data:`speechvae.metrics.METRICS` for one pair of files (16 kHz)."""
    from speechvae.audio import load_audio
    from speechvae.metrics import score

    ref, _ = load_audio(reference, SAMPLE_RATE)
    est, _ = load_audio(estimate, SAMPLE_RATE)
    if abs(ref.size - est.size) > LENGTH_TOLERANCE:
        warn(f"{estimate}: {est.size / SAMPLE_RATE:.2f} s long, reference {reference} is "
             f"{ref.size / SAMPLE_RATE:.2f} s; scored on the first "
             f"{min(ref.size, est.size) / SAMPLE_RATE:.2f} s")
    return score(ref, est, SAMPLE_RATE)


def _mean(values: list[float]) -> float:
    """Mean over the values that could be computed (NaN left out); inf if any is inf."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _fmt(name: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3f}" if name in ("STOI", "ESTOI") else f"{value:.2f}"


def format_table(rows: list[tuple[str, dict[str, float]]], metrics) -> str:
    """A plain text table: one row per (label, scores), columns aligned."""
    header = ["file", *(f"{m} (dB)" if m == "SI-SDR" else m for m in metrics)]
    body = [[label, *(_fmt(m, s[m]) for m in metrics)] for label, s in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for r in [header, *body]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


@click.command(no_args_is_help=True,
               short_help="SI-SDR, PESQ, STOI and ESTOI of estimates against references.")
@click.argument("reference", required=False, type=click.Path(path_type=Path))
@click.argument("estimate", required=False, type=click.Path(path_type=Path))
@click.option("--reference-dir", type=click.Path(path_type=Path),
              help="Folder of clean references (with --estimate-dir).")
@click.option("--estimate-dir", type=click.Path(path_type=Path),
              help="Folder of estimates, e.g. the --output-dir of 'speechvae enhance'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
def score(reference, estimate, reference_dir, estimate_dir, as_json):
    """Score ESTIMATE against the clean REFERENCE, or every file of two folders.

    Measures (speechvae.metrics): SI-SDR in dB, PESQ-WB and PESQ-NB (MOS-LQO), STOI and
    ESTOI (0 to 1). Files are read as mono at 16 kHz (other rates are resampled, with a
    warning); a pair of different lengths is cut to the shorter. A PESQ value that cannot
    be computed is nan (null in JSON); a perfect estimate has SI-SDR inf ("inf" in JSON).

    In folder mode files are matched by relative path and stem, ignoring the extension and
    an '_enhanced' suffix of the estimate (x_enhanced.wav matches x.wav); unmatched files
    are reported as warnings, and the last row is the mean over the pairs (NaN values left
    out). REFERENCE and ESTIMATE may also be two folders.

    \b
    Examples:
      speechvae score clean.wav noisy_enhanced.wav
      speechvae score --reference-dir clean/ --estimate-dir enhanced/ --json
    """
    from speechvae.metrics import METRICS

    if reference_dir is not None or estimate_dir is not None:
        if reference is not None or estimate is not None:
            raise click.UsageError("give either REFERENCE ESTIMATE or --reference-dir and "
                                   "--estimate-dir, not both")
        if reference_dir is None or estimate_dir is None:
            raise click.UsageError("--reference-dir and --estimate-dir go together")
        folder_mode = True
    elif reference is None or estimate is None:
        raise click.UsageError("expected REFERENCE and ESTIMATE (two files or two folders)")
    else:
        reference_dir, estimate_dir = reference, estimate
        folder_mode = reference.is_dir() and estimate.is_dir()
        if reference.is_dir() != estimate.is_dir() and reference.exists() and estimate.exists():
            raise click.UsageError("REFERENCE and ESTIMATE must be two files or two folders")

    if folder_mode:
        pairs, missing_est, missing_ref = match_files(reference_dir, estimate_dir)
        for r in missing_est:
            warn(f"{r}: reference has no matching estimate in {estimate_dir}")
        for e in missing_ref:
            warn(f"{e}: estimate has no matching reference in {reference_dir}")
        if not pairs:
            raise CLIError(f"no estimate in {estimate_dir} matches a reference in "
                           f"{reference_dir} (files are matched by stem)")
    else:
        pairs = [(reference, estimate)]

    from tqdm import tqdm

    rows = []
    for ref, est in tqdm(pairs, desc="score", unit="file", leave=False,
                         disable=None if len(pairs) > 1 else True):
        rows.append((ref, est, score_pair(ref, est)))

    labels = [str(e.relative_to(estimate_dir)) if folder_mode else str(e) for _, e, _ in rows]
    mean = {m: _mean([s[m] for _, _, s in rows]) for m in METRICS}
    if as_json:
        payload = {"metrics": list(METRICS),
                   "files": [{"reference": str(r), "estimate": str(e), **s} for r, e, s in rows]}
        if folder_mode:
            payload["mean"] = mean
            payload["count"] = len(rows)
            payload["unmatched_references"] = [str(p) for p in missing_est]
            payload["unmatched_estimates"] = [str(p) for p in missing_ref]
        print_json(payload)
        return
    table = [(label, s) for label, (_, _, s) in zip(labels, rows)]
    if folder_mode:
        table.append((f"mean ({len(rows)} files)", mean))
    emit(format_table(table, METRICS))
