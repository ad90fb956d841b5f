"""From waveforms and files to enhanced waveforms: segmentation, normalisation, STFT, inference.

The inference algorithm is chosen by name from the registry of
:mod:`speechvae.enhancement.algorithms` (``"vem"`` by default; ``"mcem"``, ``"mala"``,
``"bando"``), each with its own config dataclass.

Long signals are processed in segments (``segment_s`` seconds, default 30 s) that overlap by
``overlap_s`` seconds and are cross-faded linearly, so memory stays bounded whatever the
file's duration; a file is read and written block by block. Signals no longer than one
segment are processed in one piece. Each segment is peak-normalised before analysis
(DESIGN §2) and scaled back afterwards, so the output keeps the input's level.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import (
    AtomicAudioWriter,
    AudioError,
    AudioWarning,
    check_waveform,
    resample,
    stream_audio,
)
from ..priors import Prior, load_prior
from ..stft import istft, stft
from .algorithms import get_algorithm

__all__ = ["EnhanceResult", "enhance", "enhance_file", "enhance_segment"]


@dataclass
class EnhanceResult:
    """Enhanced speech and the estimated noise.

    Attributes:
        waveform: speech estimate, ``(time,)`` float32 at ``sample_rate``.
        noise: noise estimate, ``(time,)`` float32 (``waveform + noise`` ~ the input).
        sample_rate: Hz (the prior's rate, 16 kHz for the shipped priors).
        iterations: iterations run (EM iterations, or Gibbs sweeps for ``bando``), one
            entry per segment.
    """

    waveform: np.ndarray
    noise: np.ndarray
    sample_rate: int
    iterations: list[int] = field(default_factory=list)


def _resolve_prior(prior, device) -> Prior:
    if prior is None:
        prior = "vae"
    if isinstance(prior, (str, os.PathLike)):
        prior = load_prior(str(prior), device=device)
    return prior.to(device)


def enhance_segment(prior: Prior, segment: np.ndarray, config, generator: torch.Generator,
                    device="cpu", algorithm: str = "vem") -> tuple[np.ndarray, np.ndarray, int]:
    """Enhance one segment ``(time,)`` at the prior's rate; returns (speech, noise, iters).

    Args:
        prior: the speech prior.
        segment: waveform ``(time,)`` at the prior's rate.
        config: the algorithm's config (None: its defaults).
        generator: random generator of every draw.
        device: torch device.
        algorithm: registered algorithm name (see :func:`available_algorithms`).

    Raises:
        KeyError: unknown algorithm.
        TypeError: ``config`` of another algorithm.
    """
    alg = get_algorithm(algorithm)
    config = alg.check_config(config)
    peak = float(np.max(np.abs(segment)))
    if peak == 0.0:  # digital silence inside a longer file: nothing to enhance
        return np.zeros_like(segment), np.zeros_like(segment), 0
    x = torch.from_numpy(segment / peak).to(device=device, dtype=torch.float32)
    spec = stft(x, prior.stft_config)[None]
    res = alg.run(prior, spec, config, generator)
    n = segment.shape[0]
    s = istft(res.speech[0], n, prior.stft_config).cpu().numpy() * peak
    b = istft(res.noise[0], n, prior.stft_config).cpu().numpy() * peak
    return s.astype(np.float32), b.astype(np.float32), res.iterations


def _rechunk(blocks: Iterable[np.ndarray], seg: int, overlap: int,
             min_last: int = 0) -> Iterator[np.ndarray]:
    """Segments of ``seg`` samples, consecutive ones sharing ``overlap`` samples; the last
    one holds whatever is left (at least ``max(overlap, min_last)`` samples when there are
    several)."""
    buf = np.zeros(0, np.float32)
    for b in blocks:
        buf = np.concatenate([buf, b])
        # keep enough back for a last segment of at least one STFT frame
        while buf.size >= seg + max(overlap, min_last):
            yield buf[:seg]
            buf = buf[seg - overlap:]
    if buf.size:
        yield buf


def _enhance_stream(prior: Prior, blocks: Iterable[np.ndarray], config, seed: int,
                    device, segment_s: float, overlap_s: float, progress=None,
                    algorithm: str = "vem"):
    """Yield (speech, noise) output blocks for a stream of input blocks at the prior's rate."""
    sr = prior.stft_config.sample_rate
    seg, overlap = int(segment_s * sr), int(overlap_s * sr)
    if not 0 <= overlap < seg:
        raise ValueError("need 0 <= overlap_s < segment_s")
    gen = torch.Generator(device=device).manual_seed(seed)
    fade = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    tail_s = tail_n = None
    first = True
    for segment in _rechunk(blocks, seg, overlap, min_last=prior.stft_config.n_fft):
        if first and segment.size < prior.stft_config.n_fft:
            raise AudioError(f"signal has {segment.size} samples, shorter than one STFT frame "
                             f"({prior.stft_config.n_fft} samples at {sr} Hz)")
        s, b, iters = enhance_segment(prior, segment, config, gen, device, algorithm)
        if progress is not None:
            progress(segment.size / sr, iters)
        if tail_s is not None:
            k = overlap
            s[:k] = tail_s * (1 - fade) + s[:k] * fade
            b[:k] = tail_n * (1 - fade) + b[:k] * fade
        first = False
        # hold back the overlap for the cross-fade with the next segment
        if overlap and segment.size == seg:
            tail_s, tail_n = s[-overlap:].copy(), b[-overlap:].copy()
            yield s[:-overlap], b[:-overlap], iters
        else:
            tail_s = tail_n = None
            yield s, b, iters
    if tail_s is not None:  # stream ended exactly on a segment boundary
        yield tail_s, tail_n, 0


def enhance(waveform, sample_rate: int, prior: Prior | str | None = None,
            config=None, seed: int = 0, device="cpu",
            segment_s: float = 30.0, overlap_s: float = 1.0,
            algorithm: str = "vem") -> EnhanceResult:
    """Enhance a noisy speech waveform with a clean-speech prior and an NMF noise model.

    Args:
        waveform: noisy signal, array-like ``(time,)`` (``(channels, time)`` is averaged
            to mono with a warning).
        sample_rate: its rate in Hz; other rates than the prior's are resampled (soxr) with
            a warning, and the output is at the prior's rate.
        prior: a :class:`~speechvae.priors.Prior`, a shipped name (``"vae"``) or a checkpoint
            path; default the shipped ``"vae"``.
        config: settings of the algorithm (its config dataclass: :class:`VEMConfig`,
            :class:`MCEMConfig`, :class:`MALAConfig`, :class:`BandoConfig`); default its
            defaults.
        seed: seed of every random draw; the same seed gives the same output.
        device: ``"cpu"`` or ``"cuda"``.
        segment_s, overlap_s: segmentation of long signals (seconds).
        algorithm: inference algorithm, a name of the registry (:func:`available_algorithms`):
            ``"vem"`` (default), ``"mcem"``, ``"mala"`` or ``"bando"``.

    Returns:
        :class:`EnhanceResult`.

    Raises:
        AudioError: empty, silent, NaN/inf, or shorter than one STFT frame.
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm.

    References:
        Leglaive et al., ICASSP 2020; Bie et al., TASLP 2022 (VEM); Leglaive et al., MLSP 2018
        (MCEM); Roberts & Tweedie 1996 (MALA); Bando et al., ICASSP 2018.
    """
    config = get_algorithm(algorithm).check_config(config)
    prior = _resolve_prior(prior, device)
    x = check_waveform(waveform)
    sr = prior.stft_config.sample_rate
    if sample_rate != sr:
        warnings.warn(f"input resampled from {sample_rate} Hz to {sr} Hz; output is at {sr} Hz",
                      AudioWarning, stacklevel=2)
        x = resample(x, sample_rate, sr)
    speech, noise, iters = [], [], []
    for s, b, it in _enhance_stream(prior, [x], config, seed, device, segment_s, overlap_s,
                                    algorithm=algorithm):
        speech.append(s)
        noise.append(b)
        iters.append(it)
    return EnhanceResult(np.concatenate(speech), np.concatenate(noise), sr,
                         [i for i in iters if i])


def enhance_file(input_path: str | os.PathLike, output_path: str | os.PathLike,
                 prior: Prior | str | None = None, config=None,
                 seed: int = 0, device="cpu", overwrite: bool = False,
                 noise_path: str | os.PathLike | None = None, segment_s: float = 30.0,
                 overlap_s: float = 1.0, progress=None, algorithm: str = "vem") -> dict:
    """Enhance an audio file into ``output_path`` (16-bit PCM at the prior's rate).

    Reads and writes block by block (bounded memory for any duration). The output is written
    to a temporary file and renamed once complete: on any error no output is left behind.

    Args:
        input_path: any file soundfile reads (multichannel is averaged, other rates resampled,
            both with a warning).
        output_path: destination (.wav, .flac or .ogg); must differ from the input.
        prior: as :func:`enhance`.
        config: settings of the algorithm (default: its defaults).
        noise_path: optionally also write the noise estimate there.
        overwrite: replace existing outputs.
        progress: optional callable ``(seconds_done, iterations)`` called per segment.
        algorithm: inference algorithm name (see :func:`enhance`).

    Returns:
        dict with ``input``, ``output``, ``duration_s``, ``iterations``.

    Raises:
        AudioError: unreadable/empty/silent/NaN input, too short, or output == input.
        FileExistsError: an output exists and ``overwrite`` is false.
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if noise_path is not None and Path(noise_path).resolve() == output_path.resolve():
        raise AudioError(f"{noise_path}: noise output and speech output are the same file")
    for out in filter(None, [output_path, noise_path]):
        if Path(out).resolve() == input_path.resolve():
            raise AudioError(f"{out}: output would overwrite the input")
    config = get_algorithm(algorithm).check_config(config)
    prior = _resolve_prior(prior, device)
    sr = prior.stft_config.sample_rate
    blocks = stream_audio(input_path, sr)
    writer = AtomicAudioWriter(output_path, sr, overwrite=overwrite)
    noise_writer = None
    try:
        if noise_path is not None:
            noise_writer = AtomicAudioWriter(noise_path, sr, overwrite=overwrite)
        n, iters = 0, []
        for s, b, it in _enhance_stream(prior, blocks, config, seed, device, segment_s,
                                        overlap_s, progress, algorithm):
            writer.write(s)
            if noise_writer is not None:
                noise_writer.write(b)
            n += s.size
            if it:
                iters.append(it)
    except BaseException:
        writer.abort()
        if noise_writer is not None:
            noise_writer.abort()
        raise
    writer.commit()
    if noise_writer is not None:
        noise_writer.commit()
    return {"input": str(input_path), "output": str(output_path), "duration_s": n / sr,
            "iterations": iters}
