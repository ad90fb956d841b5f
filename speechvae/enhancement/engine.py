"""From waveforms and files to enhanced waveforms: segmentation, normalisation, STFT, inference.

The inference algorithm is chosen by name from the registry of
:mod:`speechvae.enhancement.algorithms` (``"vem"`` by default; ``"mcem"``, ``"mala"``,
``"bando"``), each with its own config dataclass.

Long signals are processed in segments (``segment_s`` seconds, default 30 s) that overlap by
``overlap_s`` seconds and are cross-faded linearly, so memory stays bounded whatever the
file's duration; a file is read and written block by block. Signals no longer than one
segment are processed in one piece. Each segment is peak-normalised before analysis
(DESIGN §2) and scaled back afterwards, so the output keeps the input's level.

Batching (:func:`enhance_files` with ``batch_size > 1``, ``speechvae enhance --batch-size``):
files are sorted by duration and taken ``batch_size`` at a time; the segments of the files of
one group are enhanced in lockstep, the k-th segments of all of them in one batch of the
algorithm's batched runner (zero-padded to the longest, masked). Each file keeps its own
random generator, seeded as in a one-file run, so its output equals (up to float rounding)
the one-file output. ``batch_size = 1`` is exactly the one-file path.
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
    audio_info,
    check_waveform,
    resample,
    stream_audio,
)
from ..priors import Prior, load_prior
from ..stft import istft, stft
from .algorithms import get_algorithm

__all__ = ["EnhanceResult", "enhance", "enhance_file", "enhance_files", "enhance_segment",
           "enhance_segments"]


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


def enhance_segments(prior: Prior, segments: list[np.ndarray], config,
                     generators: list[torch.Generator], device="cpu",
                     algorithm: str = "vem") -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Enhance several segments in one batch; entry ``i`` is what :func:`enhance_segment`
    gives for ``segments[i]`` with ``generators[i]`` (up to float rounding).

    Each segment is peak-normalised and analysed alone; the STFTs are zero-padded to the
    longest and run through the algorithm's batched runner with their frame counts. Silent
    segments are skipped (zeros, their generator untouched), as in :func:`enhance_segment`.

    Args:
        prior: the speech prior.
        segments: waveforms ``(time_i,)`` at the prior's rate, of any lengths (each at least
            one STFT frame).
        config: the algorithm's config (None: its defaults).
        generators: one random generator per segment.
        device: torch device.
        algorithm: registered algorithm name with a batched runner.

    Returns:
        ``(speech, noise, iterations)`` per segment, float32 ``(time_i,)``.

    Raises:
        ValueError: the algorithm has no batched runner, or ``generators`` has the wrong size.
        KeyError: unknown algorithm.
        TypeError: ``config`` of another algorithm.
    """
    alg = get_algorithm(algorithm)
    config = alg.check_config(config)
    if alg.run_batch is None:
        raise ValueError(f"algorithm {algorithm!r} has no batched path; use a batch size of 1")
    if len(generators) != len(segments):
        raise ValueError(f"need one generator per segment ({len(segments)}), "
                         f"got {len(generators)}")
    out: list = [None] * len(segments)
    todo = []
    for i, segment in enumerate(segments):
        peak = float(np.max(np.abs(segment)))
        if peak == 0.0:
            out[i] = (np.zeros_like(segment), np.zeros_like(segment), 0)
            continue
        x = torch.from_numpy(segment / peak).to(device=device, dtype=torch.float32)
        todo.append((i, stft(x, prior.stft_config), peak))
    if todo:
        lengths = [spec.shape[-1] for _, spec, _ in todo]
        n_frames = max(lengths)
        batch = torch.stack([torch.nn.functional.pad(spec, (0, n_frames - spec.shape[-1]))
                             for _, spec, _ in todo])
        results = alg.run_batch(prior, batch, lengths, config, [generators[i] for i, _, _ in todo])
        for (i, _, peak), res in zip(todo, results):
            n = segments[i].shape[0]
            s = istft(res.speech[0], n, prior.stft_config).cpu().numpy() * peak
            b = istft(res.noise[0], n, prior.stft_config).cpu().numpy() * peak
            out[i] = (s.astype(np.float32), b.astype(np.float32), res.iterations)
    return out


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


class _Stitcher:
    """Cross-fades the outputs of consecutive overlapping segments of one stream.

    :meth:`add` takes a segment's output and returns the block that is final (the overlap
    with the next segment is held back); :meth:`finish` returns what is still held when the
    stream ends exactly on a segment boundary.
    """

    def __init__(self, seg: int, overlap: int):
        self.seg, self.overlap = seg, overlap
        self.fade = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
        self.tail_s = self.tail_n = None

    def add(self, size: int, s: np.ndarray, b: np.ndarray, iters: int):
        overlap = self.overlap
        if self.tail_s is not None:
            fade = self.fade
            s[:overlap] = self.tail_s * (1 - fade) + s[:overlap] * fade
            b[:overlap] = self.tail_n * (1 - fade) + b[:overlap] * fade
        # hold back the overlap for the cross-fade with the next segment
        if overlap and size == self.seg:
            self.tail_s, self.tail_n = s[-overlap:].copy(), b[-overlap:].copy()
            return s[:-overlap], b[:-overlap], iters
        self.tail_s = self.tail_n = None
        return s, b, iters

    def finish(self):
        return None if self.tail_s is None else (self.tail_s, self.tail_n, 0)


def _segment_sizes(prior: Prior, segment_s: float, overlap_s: float) -> tuple[int, int]:
    sr = prior.stft_config.sample_rate
    seg, overlap = int(segment_s * sr), int(overlap_s * sr)
    if not 0 <= overlap < seg:
        raise ValueError("need 0 <= overlap_s < segment_s")
    return seg, overlap


def _check_first(prior: Prior, segment: np.ndarray) -> None:
    if segment.size < prior.stft_config.n_fft:
        raise AudioError(f"signal has {segment.size} samples, shorter than one STFT frame "
                         f"({prior.stft_config.n_fft} samples at "
                         f"{prior.stft_config.sample_rate} Hz)")


def _enhance_stream(prior: Prior, blocks: Iterable[np.ndarray], config, seed: int,
                    device, segment_s: float, overlap_s: float, progress=None,
                    algorithm: str = "vem"):
    """Yield (speech, noise) output blocks for a stream of input blocks at the prior's rate."""
    sr = prior.stft_config.sample_rate
    seg, overlap = _segment_sizes(prior, segment_s, overlap_s)
    gen = torch.Generator(device=device).manual_seed(seed)
    stitcher = _Stitcher(seg, overlap)
    first = True
    for segment in _rechunk(blocks, seg, overlap, min_last=prior.stft_config.n_fft):
        if first:
            _check_first(prior, segment)
        s, b, iters = enhance_segment(prior, segment, config, gen, device, algorithm)
        if progress is not None:
            progress(segment.size / sr, iters)
        first = False
        yield stitcher.add(segment.size, s, b, iters)
    tail = stitcher.finish()
    if tail is not None:  # stream ended exactly on a segment boundary
        yield tail


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
    _check_paths(input_path, output_path, noise_path)
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


class _OpenFile:
    """One file of a batched group: its input stream, generator, stitcher and writers."""

    def __init__(self, index: int, job, prior: Prior, seed: int, device, seg: int,
                 overlap: int, overwrite: bool):
        self.index = index
        self.input, self.output, self.noise_path = (Path(job[0]), Path(job[1]),
                                                    None if job[2] is None else Path(job[2]))
        _check_paths(self.input, self.output, self.noise_path)
        sr = prior.stft_config.sample_rate
        self.segments = _rechunk(stream_audio(self.input, sr), seg, overlap,
                                 min_last=prior.stft_config.n_fft)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.stitcher = _Stitcher(seg, overlap)
        self.first = True
        self.samples, self.iterations = 0, []
        self.writer = AtomicAudioWriter(self.output, sr, overwrite=overwrite)
        self.noise_writer = None
        try:
            if self.noise_path is not None:
                self.noise_writer = AtomicAudioWriter(self.noise_path, sr, overwrite=overwrite)
        except BaseException:
            self.writer.abort()
            raise

    def write(self, block) -> None:
        s, b, it = block
        self.writer.write(s)
        if self.noise_writer is not None:
            self.noise_writer.write(b)
        self.samples += s.size
        if it:
            self.iterations.append(it)

    def abort(self) -> None:
        for w in (self.writer, self.noise_writer):
            if w is not None:
                w.abort()

    def commit(self, sample_rate: int) -> dict:
        self.writer.commit()
        if self.noise_writer is not None:
            self.noise_writer.commit()
        return {"input": str(self.input), "output": str(self.output),
                "duration_s": self.samples / sample_rate, "iterations": self.iterations}


def _check_paths(input_path: Path, output_path: Path, noise_path: Path | None) -> None:
    if noise_path is not None and Path(noise_path).resolve() == output_path.resolve():
        raise AudioError(f"{noise_path}: noise output and speech output are the same file")
    for out in filter(None, [output_path, noise_path]):
        if Path(out).resolve() == input_path.resolve():
            raise AudioError(f"{out}: output would overwrite the input")


def enhance_files(jobs: list, prior: Prior | str | None = None, config=None, seed: int = 0,
                  device="cpu", overwrite: bool = False, segment_s: float = 30.0,
                  overlap_s: float = 1.0, batch_size: int = 1, progress=None,
                  algorithm: str = "vem", durations: list[float] | None = None,
                  ) -> Iterator[tuple[int, dict | Exception]]:
    """Enhance many files, ``batch_size`` at a time on the algorithm's batched path.

    ``batch_size = 1`` runs :func:`enhance_file` on each file in order (today's path, the
    same outputs bit for bit). With ``batch_size > 1`` the files are sorted by duration
    (``durations``, or read from the headers) to limit padding and taken ``batch_size`` at
    a time; the files of a group are read, segmented (``segment_s``) and enhanced in
    lockstep, their k-th segments in one batch (:func:`enhance_segments`), and each output is
    written atomically once its file is complete. Every file uses a generator seeded with
    ``seed``, as alone, so its output equals the one-file output up to float rounding. A
    failing file (unreadable, too short, output exists, ...) is reported and left out of its
    group; the others go on.

    Args:
        jobs: ``(input_path, output_path, noise_path or None)`` per file.
        prior, config, seed, device, overwrite, segment_s, overlap_s, algorithm: as
            :func:`enhance_file`.
        batch_size: files per batch, ``>= 1``.
        progress: optional callable ``(job_index, seconds_done, iterations)`` per segment.
        durations: optional durations in seconds per job (for the sort).

    Yields:
        ``(job_index, info)`` as each file completes, ``info`` being :func:`enhance_file`'s
        dict, or ``(job_index, exception)`` when that file failed (with ``batch_size > 1``,
        in the order files complete, which is not the order of ``jobs``).

    Raises:
        ValueError: ``batch_size < 1``, or ``batch_size > 1`` with an algorithm that has no
            batched runner (checked before anything is read).
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    alg = get_algorithm(algorithm)
    config = alg.check_config(config)
    if batch_size > 1 and alg.run_batch is None:
        raise ValueError(f"batch_size {batch_size}: algorithm {algorithm!r} has no batched "
                         "path; use batch_size 1")
    prior = _resolve_prior(prior, device)
    if batch_size == 1:
        for i, (inp, out, noise) in enumerate(jobs):
            def one(seconds, iterations, i=i):
                if progress is not None:
                    progress(i, seconds, iterations)
            try:
                info = enhance_file(inp, out, prior=prior, config=config, seed=seed,
                                    device=device, overwrite=overwrite, noise_path=noise,
                                    segment_s=segment_s, overlap_s=overlap_s, progress=one,
                                    algorithm=algorithm)
            except Exception as exc:  # noqa: BLE001 -- reported per file to the caller
                yield i, exc
                continue
            yield i, info
        return
    if alg.batch_supports is not None and not alg.batch_supports(prior):
        warnings.warn(f"algorithm {algorithm!r} has no batched path for prior "
                      f"{prior.name!r}: files are enhanced one by one", stacklevel=2)
    if durations is None:
        durations = []
        for inp, _, _ in jobs:
            try:
                info = audio_info(inp)
                durations.append(info.frames / info.samplerate)
            except Exception:  # noqa: BLE001 -- the error is reported when the file is opened
                durations.append(0.0)
    order = sorted(range(len(jobs)), key=lambda i: durations[i])
    seg, overlap = _segment_sizes(prior, segment_s, overlap_s)
    sr = prior.stft_config.sample_rate
    for start in range(0, len(order), batch_size):
        group: list[_OpenFile] = []
        try:
            for i in order[start:start + batch_size]:
                try:
                    group.append(_OpenFile(i, jobs[i], prior, seed, device, seg, overlap,
                                           overwrite))
                except Exception as exc:  # noqa: BLE001
                    yield i, exc
            while group:
                # the next segment of every file of the group (files that end are committed)
                batch, done = [], []
                for f in group:
                    try:
                        segment = next(f.segments, None)
                        if segment is None:
                            tail = f.stitcher.finish()
                            if tail is not None:
                                f.write(tail)
                            done.append((f, f.commit(sr)))
                            continue
                        if f.first:
                            _check_first(prior, segment)
                            f.first = False
                        batch.append((f, segment))
                    except Exception as exc:  # noqa: BLE001
                        f.abort()
                        done.append((f, exc))
                for f, result in done:
                    group.remove(f)
                    yield f.index, result
                if not batch:
                    continue
                outs = enhance_segments(prior, [x for _, x in batch], config,
                                        [f.generator for f, _ in batch], device, algorithm)
                for (f, segment), (s, b, iters) in zip(batch, outs):
                    if progress is not None:
                        progress(f.index, segment.size / sr, iters)
                    try:
                        f.write(f.stitcher.add(segment.size, s, b, iters))
                    except Exception as exc:  # noqa: BLE001 -- e.g. a full disk
                        f.abort()
                        group.remove(f)
                        yield f.index, exc
        except BaseException:
            for f in group:
                f.abort()
            raise
