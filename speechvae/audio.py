"""Audio input and output: reading, checking, downmixing, resampling and atomic writing.

Everything the toolkit reads goes through :func:`load_audio` (whole file) or
:func:`stream_audio` (bounded memory, block by block); both apply the same checks and
conversions:

* any format soundfile (libsndfile) reads; anything else raises :class:`AudioError`;
* several channels are averaged to mono, with a warning;
* any sample rate is resampled to the target rate (16 kHz by default) with soxr, with a
  warning;
* empty files, all-zero (silent) signals and NaN/inf samples raise :class:`AudioError`;
* clipped input (more than 0.1 % of the samples at full scale, i.e. with magnitude in
  [0.999, 1.001]) gives a warning: enhancement cannot restore the clipped peaks. Float
  signals beyond full scale (a float file peaking at 2.4) are not clipped and not called
  clipped;
* in-memory integer arrays (int16 ...) are scaled to full scale 1 (int16: by 1/32768), with
  a warning; :func:`float_to_dtype` converts back.

Outputs are written with :func:`write_audio` / :class:`AtomicAudioWriter`: to a temporary
file in the destination folder, renamed into place only once complete, never over an input.
A PCM output clips samples beyond full scale, with a warning; a float output keeps them.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .checkpoint import temp_beside

__all__ = [
    "AUDIO_EXTENSIONS",
    "AtomicAudioWriter",
    "AudioError",
    "AudioWarning",
    "audio_info",
    "check_waveform",
    "float_to_dtype",
    "list_audio_files",
    "load_audio",
    "stream_audio",
    "write_audio",
]

#: File name extensions collected when a folder is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


class AudioError(ValueError):
    """An input that cannot be used as audio; the message is one line naming the problem."""


class AudioWarning(UserWarning):
    """A documented conversion was applied to an input (downmix, resampling, clipping)."""


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """Header information of an audio file (rate, channels, frames) without reading it.

    Raises:
        AudioError: missing file, a folder, or a file libsndfile cannot read.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        return sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 -- libsndfile raises several types; all mean unreadable
        raise AudioError(f"{path}: not an audio file that soundfile can read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


def _check_block(block: np.ndarray, path) -> None:
    if not np.all(np.isfinite(block)):
        raise AudioError(f"{path}: contains NaN or infinite samples")


CLIP_LEVEL = 0.999  # |sample| in [CLIP_LEVEL, 1 / CLIP_LEVEL] counts as full scale
CLIP_FRACTION = 1e-3  # warn when more than this share of samples is at full scale


def _clipped_count(x: np.ndarray) -> int:
    """Samples at full scale (magnitude within 0.1 % of 1). A float signal that goes beyond
    full scale only passes through that band, a clipped one sits in it."""
    a = np.abs(x)
    return int(np.count_nonzero((a >= CLIP_LEVEL) & (a <= 1.0 / CLIP_LEVEL)))


def _clip_fraction(x: np.ndarray) -> float:
    """Fraction of samples at full scale: a cheap detector of clipped recordings."""
    return _clipped_count(x) / x.size if x.size else 0.0


def _int_scale(dtype: np.dtype) -> tuple[float, float]:
    """``(full_scale, offset)`` of an integer dtype: float = (int - offset) / full_scale."""
    info = np.iinfo(dtype)
    if info.min == 0:  # unsigned, e.g. 8-bit WAV's uint8 around 128
        half = (int(info.max) + 1) / 2
        return half, half
    return float(-int(info.min)), 0.0


def float_to_dtype(x: np.ndarray, dtype) -> np.ndarray:
    """Bring a float signal at full scale 1 back to ``dtype``'s convention.

    Integer dtypes: scaled to their full scale (int16: by 32768), rounded and clipped to
    their range (the inverse of :func:`check_waveform`'s conversion). Anything else: float32,
    unchanged.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=np.float32)
    scale, offset = _int_scale(dtype)
    info = np.iinfo(dtype)
    y = np.rint(np.asarray(x, dtype=np.float64) * scale + offset)
    return np.clip(y, info.min, info.max).astype(dtype)


def _warn(msg: str) -> None:
    warnings.warn(msg, AudioWarning, stacklevel=3)


def stream_audio(path: str | os.PathLike, sample_rate: int = 16000,
                 block_s: float = 10.0, allow_silent: bool = False) -> Iterator[np.ndarray]:
    """Read a file block by block as mono float32 at ``sample_rate`` (bounded memory).

    Args:
        path: audio file.
        sample_rate: output rate in Hz; other rates are resampled with soxr (streaming).
        block_s: input block duration in seconds.
        allow_silent: accept an all-zero signal (e.g. an estimate to be scored).

    Yields:
        float32 arrays of shape ``(samples,)``, in order; together they form the file.

    Raises:
        AudioError: missing/unreadable/empty file, NaN or inf samples, or an all-zero signal
        (raised once the end of the file shows that every sample was zero).
    """
    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(f"{path}: empty audio file (0 samples)")
    if info.channels > 1:
        _warn(f"{path}: {info.channels} channels averaged to mono")
    resampler = None
    if info.samplerate != sample_rate:
        _warn(f"{path}: resampled from {info.samplerate} Hz to {sample_rate} Hz")
        resampler = soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32",
                                        quality="HQ")
    blocksize = max(1, int(block_s * info.samplerate))
    peak = 0.0
    clipped = 0
    total = 0
    try:
        blocks = sf.blocks(str(path), blocksize=blocksize, dtype="float32", always_2d=True)
        for block in blocks:
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            _check_block(mono, path)
            bpeak = float(np.max(np.abs(mono))) if mono.size else 0.0
            peak = max(peak, bpeak)
            clipped += _clipped_count(mono) if bpeak >= CLIP_LEVEL else 0
            total += mono.size
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield tail.astype(np.float32)
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        raise AudioError(f"{path}: unreadable audio ({exc})")
    if peak == 0.0 and not allow_silent:
        raise AudioError(f"{path}: signal is silent (all samples are zero)")
    if total and clipped / total > CLIP_FRACTION:
        _warn(f"{path}: input looks clipped ({100 * clipped / total:.2f} % of samples at full "
              "scale); clipped peaks cannot be restored")


def load_audio(path: str | os.PathLike, sample_rate: int = 16000,
               allow_silent: bool = False) -> tuple[np.ndarray, int]:
    """Read a whole file as mono float32 at ``sample_rate``.

    Returns:
        ``(waveform, sample_rate)``, waveform of shape ``(time,)`` in [-1, 1] full scale.

    Raises:
        AudioError: as :func:`stream_audio`.
    """
    blocks = list(stream_audio(path, sample_rate, allow_silent=allow_silent))
    return np.concatenate(blocks), sample_rate


def check_waveform(waveform: np.ndarray, name: str = "waveform") -> np.ndarray:
    """Validate an in-memory waveform: 1-D (or 2-D ``(channels, time)`` / ``(time, channels)``
    as soundfile returns it, averaged over the shorter axis with a warning), finite, not empty
    and not all-zero. Returns a float32 ``(time,)`` array.

    Float samples are taken as they are (full scale 1; values beyond it are kept). Integer
    samples are scaled to full scale 1 by their dtype's range (int16: by 1/32768, uint8:
    ``(x - 128) / 128``), with a warning; :func:`float_to_dtype` is the inverse.

    Raises:
        AudioError: empty, NaN/inf, silent, of more than two dimensions, or not numeric.
    """
    x = np.asarray(waveform)
    if np.issubdtype(x.dtype, np.integer):
        scale, offset = _int_scale(x.dtype)
        _warn(f"{name}: {x.dtype} samples scaled by 1/{scale:g} to full scale 1 (results come "
              f"back as {x.dtype})")
        x = (x.astype(np.float64) - offset) / scale
    elif not (np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise AudioError(f"{name}: expected numeric samples, got dtype {x.dtype}")
    if x.ndim == 2:
        # (channels, time) or soundfile's (time, channels): the shorter axis holds channels
        axis = 0 if x.shape[0] <= x.shape[1] else 1
        _warn(f"{name}: {x.shape[axis]} channels averaged to mono (expected shape (time,))")
        x = x.mean(axis=axis)
    if x.ndim != 1:
        raise AudioError(f"{name}: expected shape (time,), got {tuple(np.shape(waveform))}")
    if x.size == 0:
        raise AudioError(f"{name}: empty signal (0 samples)")
    x = x.astype(np.float32, copy=False)
    _check_block(x, name)
    if not np.any(x):
        raise AudioError(f"{name}: signal is silent (all samples are zero)")
    if _clip_fraction(x) > CLIP_FRACTION:
        _warn(f"{name}: input looks clipped; clipped peaks cannot be restored")
    return x


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a ``(time,)`` waveform with soxr (high quality). Returns float32."""
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    return soxr.resample(waveform.astype(np.float32), orig_sr, target_sr,
                         quality="HQ").astype(np.float32)


class AtomicAudioWriter:
    """Write an audio file block by block, atomically.

    Samples go to a hidden temporary file in the destination folder, which is renamed to
    ``path`` by :meth:`commit`; on error (or :meth:`abort`) the temporary file is removed, so
    no partial output is ever left behind. Use as a context manager: leaving the block
    without an exception commits.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, overwrite: bool = False,
                 subtype: str | None = None):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path}: output exists (pass overwrite=True to replace "
                                  "it)")
        ext = self.path.suffix.lower().lstrip(".")
        file_format = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext)
        if file_format is None:
            raise AudioError(f"{self.path}: unsupported output extension; use .wav, .flac or .ogg")
        if subtype is None:
            subtype = "PCM_16" if file_format in ("WAV", "FLAC") else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.subtype = subtype
        self._tmp = temp_beside(self.path, ".part" + self.path.suffix)
        try:
            self._file = sf.SoundFile(str(self._tmp), "w", samplerate=sample_rate, channels=1,
                                      format=file_format, subtype=subtype)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self.peak = 0.0
        self.clipped = 0
        self._float = subtype in ("FLOAT", "DOUBLE")

    def write(self, block: np.ndarray) -> None:
        """Append samples ``(time,)``; beyond full scale they are clipped unless the file is
        float (counted in :attr:`clipped`, warned about by :meth:`commit`)."""
        block = np.asarray(block, dtype=np.float32)
        if block.size:
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        if self._float:
            self._file.write(block)
            return
        if self.peak > 1.0:
            self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
        self._file.write(np.clip(block, -1.0, 1.0))

    def commit(self) -> Path:
        """Close and rename into place; warns (:class:`AudioWarning`) if samples were
        clipped."""
        self._file.close()
        os.replace(self._tmp, self.path)
        if self.clipped:
            warnings.warn(f"{self.path}: {self.clipped} samples beyond full scale were clipped "
                          f"(peak {self.peak:.2f}); a float WAV output keeps them",
                          AudioWarning, stacklevel=2)
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicAudioWriter:  # noqa: PYI034 -- typing.Self needs 3.11
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int,
                overwrite: bool = False) -> Path:
    """Write a ``(time,)`` waveform atomically (16-bit PCM for WAV/FLAC).

    Samples beyond [-1, 1] are clipped, with a warning. Raises FileExistsError if ``path``
    exists and ``overwrite`` is false.
    """
    with AtomicAudioWriter(path, sample_rate, overwrite=overwrite) as w:
        w.write(waveform)
    return Path(path)


def list_audio_files(paths) -> list[Path]:
    """Expand files and folders (searched recursively) into a sorted list of audio files.

    Raises:
        AudioError: a path does not exist, or a folder holds no audio file.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise AudioError(f"{p}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in AUDIO_EXTENSIONS
                           and not f.name.startswith("."))
            if not found:
                raise AudioError(f"{p}: folder holds no audio file "
                                 f"({', '.join(AUDIO_EXTENSIONS)})")
            out.extend(found)
        else:
            out.append(p)
    return out
