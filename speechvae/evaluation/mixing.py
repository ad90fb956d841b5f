"""Noisy/clean test sets: the corpus' mixing rule, seeded mixture plans and their rendering.

The rule is the one of ``../shared/data/make_mixtures.py`` (the corpus' dev-set renderer), so
that a set made here and the dev set are built alike:

* the noise is rolled by ``noise_offset`` samples and looped when shorter than the speech;
* the SNR is computed over the whole utterance (mean power of speech / mean power of noise);
* when the mixture would exceed 0.99 full scale, clean and noisy are scaled by the same
  factor (the SNR is kept).

A rendered set is a folder with ``clean/NAME.wav``, ``noisy/NAME.wav`` (16 kHz, 16-bit PCM)
and ``list.csv`` with the corpus' columns ``name, clean, noisy, snr_db, speaker, gender``
followed by ``noise, noise_offset, noise_type`` (what produced the pair; readers of the
corpus format ignore them). The same plan (same seed) always gives byte-identical files.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import AudioError, _warn, audio_info, list_audio_files, resample

__all__ = [
    "LIST_COLUMNS",
    "SAMPLE_RATE",
    "Mixture",
    "mix",
    "noise_type_of",
    "plan_mixtures",
    "read_mixture_list",
    "render_mixtures",
    "snr_db_of",
]

SAMPLE_RATE = 16000
#: list.csv columns: the six of make_mixtures.py, then what produced each pair
LIST_COLUMNS = ("name", "clean", "noisy", "snr_db", "speaker", "gender", "noise",
                "noise_offset", "noise_type")
PEAK = 0.99  # joint rescaling threshold of the corpus rule


def mix(clean: np.ndarray, noise: np.ndarray, offset: int, snr_db: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Mix speech and noise at a given SNR with the corpus' rule.

    Args:
        clean: speech, ``(time,)``.
        noise: noise recording, ``(noise_time,)``, any length (looped when shorter).
        offset: the noise starts at this sample (the recording is rolled, so any integer
            works).
        snr_db: SNR over the whole utterance, in dB.

    Returns:
        ``(clean, noisy)``, both ``(time,)`` float64; ``clean`` is the input unless both were
        scaled down to keep the mixture peak at 0.99.

    Shape:
        The outputs have the length of ``clean``.

    References:
        ``../shared/data/make_mixtures.py`` (``mix``), which this reproduces exactly.
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    n = np.resize(np.roll(noise, -offset), clean.shape)  # loop the noise if it is too short
    p_s = np.mean(clean**2)
    p_n = np.mean(n**2) + 1e-12
    noisy = clean + n * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    peak = np.max(np.abs(noisy))
    if peak > PEAK:
        clean, noisy = clean * PEAK / peak, noisy * PEAK / peak
    return clean, noisy


def snr_db_of(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of a pair over the whole signal: ``10 log10(|s|^2 / |y - s|^2)``."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean**2) / np.sum(noise**2)))


def noise_type_of(noise_path: str | os.PathLike | None) -> str:
    """Noise type named by the folder of a noise file (``noise/home/x.flac`` -> ``home``);
    ``"unknown"`` for a missing path or one without a folder."""
    if not noise_path:
        return "unknown"
    return Path(noise_path).parent.name or "unknown"


@dataclass(frozen=True)
class Mixture:
    """One noisy/clean pair to render.

    Attributes:
        name: file stem of the outputs (``clean/NAME.wav``, ``noisy/NAME.wav``).
        clean: speech file.
        noise: noise file.
        noise_offset: first noise sample, in samples at 16 kHz.
        snr_db: SNR over the utterance in dB.
        speaker, gender: copied to list.csv (may be empty).
        noise_type: copied to list.csv (default: the noise file's folder name).
    """

    name: str
    clean: str
    noise: str
    noise_offset: int
    snr_db: float
    speaker: str = ""
    gender: str = ""
    noise_type: str = ""


def _read(path: Path) -> np.ndarray:
    """A file as mono float64 at 16 kHz (read as the corpus script reads it; other rates are
    resampled, several channels averaged).

    Raises:
        AudioError: unreadable, empty, non-finite or silent.
    """
    info = audio_info(path)
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    if x.shape[0] == 0:
        raise AudioError(f"{path}: empty audio file (0 samples)")
    if info.channels > 1:
        _warn(f"{path}: {info.channels} channels averaged to mono")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if not np.any(x):
        raise AudioError(f"{path}: signal is silent (all samples are zero)")
    if sr != SAMPLE_RATE:
        _warn(f"{path}: resampled from {sr} Hz to {SAMPLE_RATE} Hz")
        x = resample(x, sr, SAMPLE_RATE).astype(np.float64)
    return x


def _names(files: Sequence[Path], root: Path) -> list[str]:
    """Output name stems: the file stem, or its path below ``root`` joined by ``_`` when two
    files share a stem."""
    stems = [f.stem for f in files]
    out = []
    for f, stem in zip(files, stems):
        if stems.count(stem) > 1:
            rel = f.relative_to(root) if f.is_relative_to(root) else f
            stem = "_".join(rel.with_suffix("").parts)
        out.append(stem)
    return out


def _snr_label(snr_db: float) -> str:
    return f"snr{snr_db:+g}"  # snr-5, snr+0, snr+10: the corpus' dev-set names


def plan_mixtures(clean_dir: str | os.PathLike, noise_dir: str | os.PathLike,
                  snrs_db: Iterable[float], seed: int = 0, per_file: int | None = None
                  ) -> list[Mixture]:
    """Draw a reproducible list of mixtures from folders of speech and noise.

    Each clean file (folders searched recursively, sorted) gives ``per_file`` mixtures; the
    k-th mixture of the i-th file has SNR ``snrs_db[(i * per_file + k) % len(snrs_db)]``, so
    by default (``per_file = len(snrs_db)``) every file appears once at every SNR and with
    fewer per file the SNRs stay balanced over the set. Noise file and offset are drawn
    uniformly with ``numpy.random.default_rng(seed)``.

    Args:
        clean_dir: folder (or file) of clean speech; the speaker of a file is the name of
            its folder below ``clean_dir`` (empty when directly inside).
        noise_dir: folder (or file) of noise recordings; the noise type is the name of the
            noise file's folder.
        snrs_db: SNRs in dB (duplicates removed, order kept).
        seed: seed of the draws; the same seed gives the same plan.
        per_file: mixtures per clean file (default: one per SNR).

    Returns:
        The mixtures, named ``STEM_snr-5``, ``STEM_snr+0`` ... (``_2``, ``_3`` appended when a
        file has several mixtures at one SNR).

    Raises:
        AudioError: a folder without audio files.
        ValueError: no SNR, a non-finite SNR, or ``per_file < 1``.
    """
    snrs = list(dict.fromkeys(float(s) for s in snrs_db))
    if not snrs:
        raise ValueError("give at least one SNR")
    if not all(np.isfinite(snrs)):
        raise ValueError(f"SNRs must be finite numbers of dB, got {snrs}")
    per_file = len(snrs) if per_file is None else int(per_file)
    if per_file < 1:
        raise ValueError(f"per_file must be at least 1, got {per_file}")
    clean_root, noise_root = Path(clean_dir), Path(noise_dir)
    cleans = list_audio_files([clean_root])
    noises = list_audio_files([noise_root])
    noise_frames = []
    for p in noises:
        info = audio_info(p)
        noise_frames.append(max(1, round(info.frames * SAMPLE_RATE / info.samplerate)))
    rng = np.random.default_rng(seed)
    plan = []
    for i, (path, stem) in enumerate(zip(cleans, _names(cleans, clean_root))):
        rel = path.relative_to(clean_root) if clean_root.is_dir() else Path(path.name)
        speaker = rel.parent.name
        seen: dict[float, int] = {}
        for k in range(per_file):
            snr = snrs[(i * per_file + k) % len(snrs)]
            seen[snr] = seen.get(snr, 0) + 1
            j = int(rng.integers(len(noises)))
            offset = int(rng.integers(noise_frames[j]))
            name = f"{stem}_{_snr_label(snr)}" + (f"_{seen[snr]}" if seen[snr] > 1 else "")
            plan.append(Mixture(name=name, clean=str(path.resolve()),
                                noise=str(noises[j].resolve()),
                                noise_offset=offset, snr_db=snr, speaker=speaker,
                                noise_type=noise_type_of(noises[j])))
    return plan


def read_mixture_list(list_csv: str | os.PathLike, root: str | os.PathLike | None = None
                      ) -> list[Mixture]:
    """Read a list in the corpus' format (``name, clean, noise, noise_offset, snr_db`` and
    optionally ``speaker, gender, noise_type``), e.g. ``../shared/data/devset.csv``.

    Args:
        list_csv: the list.
        root: folder the paths are relative to (default: the folder of ``list_csv``).

    Raises:
        ValueError: a missing column or a bad number.
    """
    list_csv = Path(list_csv)
    root = Path(root) if root is not None else list_csv.parent
    with open(list_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"name", "clean", "noise", "noise_offset", "snr_db"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{list_csv}: expected columns {', '.join(sorted(need))}")
    out = []
    for line, r in enumerate(rows, start=2):
        try:
            offset, snr = int(r["noise_offset"]), float(r["snr_db"])
        except ValueError as exc:
            raise ValueError(f"{list_csv}, line {line}: {exc}") from None
        out.append(Mixture(name=r["name"], clean=str((root / r["clean"]).resolve()),
                           noise=str((root / r["noise"]).resolve()), noise_offset=offset,
                           snr_db=snr,
                           speaker=r.get("speaker") or "", gender=r.get("gender") or "",
                           noise_type=r.get("noise_type") or noise_type_of(r["noise"])))
    return out


def _write_wav(path: Path, x: np.ndarray) -> None:
    """16-bit PCM WAV written to a temporary file and renamed (float64 samples are quantised
    by libsndfile exactly as the corpus script does)."""
    tmp = path.with_name(f".{path.name}.part.wav")
    try:
        sf.write(str(tmp), x, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fmt_snr(snr_db: float) -> str:
    return f"{snr_db:g}"


def render_mixtures(mixtures: Sequence[Mixture], out_dir: str | os.PathLike,
                    progress: bool | None = False) -> Path:
    """Write ``clean/NAME.wav``, ``noisy/NAME.wav`` and ``list.csv`` into ``out_dir``.

    Files are read as mono float64 at 16 kHz (other rates resampled, with a warning), mixed
    with :func:`mix` and written as 16-bit PCM, each atomically; ``list.csv`` is written last,
    so its presence means the set is complete.

    Args:
        mixtures: the plan (:func:`plan_mixtures` or :func:`read_mixture_list`).
        out_dir: destination folder (created).
        progress: tqdm progress bar (None: only on a terminal).

    Returns:
        The path of ``list.csv``.

    Raises:
        ValueError: two mixtures with the same name.
        AudioError: an unreadable, empty or silent input.
    """
    from tqdm import tqdm

    names = [m.name for m in mixtures]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"mixture names must be unique; repeated: {', '.join(dup[:5])}")
    out = Path(out_dir)
    (out / "clean").mkdir(parents=True, exist_ok=True)
    (out / "noisy").mkdir(parents=True, exist_ok=True)
    cache: dict[str, np.ndarray] = {}  # noise recordings are reused across mixtures
    for m in tqdm(mixtures, desc="mix", unit="pair", leave=False,
                  disable=None if progress is None else not progress):
        clean = _read(Path(m.clean))
        if m.noise not in cache:
            cache[m.noise] = _read(Path(m.noise))
        c, y = mix(clean, cache[m.noise], m.noise_offset, m.snr_db)
        _write_wav(out / "clean" / f"{m.name}.wav", c)
        _write_wav(out / "noisy" / f"{m.name}.wav", y)
    list_csv = out / "list.csv"
    tmp = out / ".list.csv.part"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(LIST_COLUMNS))
        w.writeheader()
        for m in mixtures:
            d = asdict(m)
            w.writerow({"name": m.name, "clean": f"clean/{m.name}.wav",
                        "noisy": f"noisy/{m.name}.wav", "snr_db": _fmt_snr(m.snr_db),
                        "speaker": d["speaker"], "gender": d["gender"], "noise": m.noise,
                        "noise_offset": m.noise_offset,
                        "noise_type": m.noise_type or noise_type_of(m.noise)})
    os.replace(tmp, list_csv)
    return list_csv
