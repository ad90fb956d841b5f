"""From waveforms and files to enhanced waveforms: segmentation, normalisation, STFT, inference.

The inference algorithm is the registered one of the config object
(:func:`~speechvae.enhancement.algorithms.algorithm_for_config`: a :class:`MCEMConfig` runs
``"mcem"``), or the one named by ``algorithm=`` (``"vem"`` when neither is given; giving
both, they must agree).

Sample rates. The priors work at 16 kHz. By default the output (speech and noise estimates)
is at the *input's* rate and has the input's duration: each segment is resampled to 16 kHz
(soxr), enhanced, and resampled back. For inputs above 16 kHz the band above 8 kHz, which
the prior cannot see, is the input's own high band (the input minus its 16-kHz-band-limited
version) multiplied frame by frame by the amplitude gain of the top enhanced band
(7–8 kHz): ``g_t = sqrt(sum_f |S_ft|^2 / sum_f |X_ft|^2)`` over the bins of 7–8 kHz, linearly
interpolated between frames, in [0, 1]; the noise estimate gets ``1 - g_t`` of it, so speech
plus noise still add up to the input. (For inputs below 16 kHz, what resampling up and down
loses near their Nyquist frequency goes to the noise estimate.) ``output_rate=16000`` (the prior's rate) gives the
16-kHz estimate itself, as in earlier versions; any other ``output_rate`` resamples the
input-rate output.

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

Worker processes (:func:`enhance_files` with ``workers > 1``, ``speechvae enhance --jobs``):
the files are shared out to a pool of processes (:mod:`speechvae.parallel`), each with
``threads`` torch threads and its own copy of the prior; every file is seeded as alone, so
with the same thread count the outputs are those of one process, bit for bit.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from ..audio import (
    AtomicAudioWriter,
    AudioError,
    audio_info,
    check_waveform,
    resample,
    stream_audio,
)
from ..priors import Prior, load_prior
from ..stft import istft, stft
from .algorithms import algorithm_for_config, get_algorithm

__all__ = ["EnhanceResult", "enhance", "enhance_file", "enhance_files", "enhance_segment",
           "enhance_segments"]

#: Lower edge (Hz) of the top band whose gain is applied above 8 kHz (see the module doc).
TOP_BAND_HZ = 7000.0


@dataclass
class EnhanceResult:
    """Enhanced speech and the estimated noise.

    Attributes:
        waveform: speech estimate, ``(time,)`` at ``sample_rate``, in the input's convention:
            float32 at the input's scale for a float input, the input's integer dtype at its
            full scale (e.g. int16, clipped to its range) for an integer input.
        noise: noise estimate, same shape and dtype (``waveform + noise`` ~ the input).
        sample_rate: Hz; the input's rate unless ``output_rate`` asked for another.
        iterations: iterations run (EM iterations, or Gibbs sweeps for ``bando``), one
            entry per segment.
    """

    waveform: np.ndarray
    noise: np.ndarray
    sample_rate: int
    iterations: list[int] = field(default_factory=list)


def resolve_prior(prior, device) -> Prior:
    """The prior to use: a :class:`Prior` as it is, a shipped name or checkpoint path loaded
    (None: ``"vae"``), on ``device``."""
    if prior is None:
        prior = "vae"
    if isinstance(prior, (str, os.PathLike)):
        prior = load_prior(str(prior), device=device)
    return prior.to(device)


def _resolve_algorithm(algorithm: str | None, config):
    """``(Algorithm, config)``: the algorithm named, or else the one of ``config``, else vem.

    Raises:
        KeyError: unknown algorithm name.
        TypeError: ``config`` of no registered algorithm, or of another one than
            ``algorithm``.
    """
    if algorithm is None:
        alg = get_algorithm("vem") if config is None else algorithm_for_config(config)
        return alg, config if config is not None else alg.default_config()
    alg = get_algorithm(algorithm)
    if config is not None and not isinstance(config, alg.config_class):
        try:
            other = f" (the config of {algorithm_for_config(config).name!r})"
        except TypeError:
            other = ""
        raise TypeError(f"algorithm={algorithm!r} takes a {alg.config_class.__name__}, but "
                        f"config is a {type(config).__name__}{other}; pass the config alone "
                        "(it says which algorithm runs) or a matching algorithm")
    return alg, alg.check_config(config)


def enhance_segment(prior: Prior, segment: np.ndarray, config, generator: torch.Generator,
                    device="cpu", algorithm: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """Enhance one segment ``(time,)`` at the prior's rate; returns (speech, noise, iters).

    Args:
        prior: the speech prior.
        segment: waveform ``(time,)`` at the prior's rate.
        config: the algorithm's config (None: its defaults).
        generator: random generator of every draw.
        device: torch device.
        algorithm: registered algorithm name (see :func:`available_algorithms`); None: the
            algorithm of ``config`` (``"vem"`` when ``config`` is None too).

    Raises:
        KeyError: unknown algorithm.
        TypeError: ``config`` of another algorithm.
    """
    alg, config = _resolve_algorithm(algorithm, config)
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
                     algorithm: str | None = None) -> list[tuple[np.ndarray, np.ndarray, int]]:
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
        algorithm: registered algorithm name with a batched runner (None: the algorithm of
            ``config``, as :func:`enhance_segment`).

    Returns:
        ``(speech, noise, iterations)`` per segment, float32 ``(time_i,)``.

    Raises:
        ValueError: the algorithm has no batched runner, or ``generators`` has the wrong size.
        KeyError: unknown algorithm.
        TypeError: ``config`` of another algorithm.
    """
    alg, config = _resolve_algorithm(algorithm, config)
    if alg.run_batch is None:
        raise ValueError(f"algorithm {alg.name!r} has no batched path; use a batch size of 1")
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


def _segment_sizes(rate: int, segment_s: float, overlap_s: float) -> tuple[int, int]:
    seg, overlap = int(segment_s * rate), int(overlap_s * rate)
    if not 0 <= overlap < seg:
        raise ValueError("need 0 <= overlap_s < segment_s")
    return seg, overlap


def _check_first(prior: Prior, x: np.ndarray, name: str, samples: int, rate: int) -> None:
    """Refuse a signal shorter than one STFT frame (``x`` is its first segment at the prior's
    rate; ``samples`` its length at the input's ``rate``)."""
    cfg = prior.stft_config
    if x.size < cfg.n_fft:
        raise AudioError(f"{name}: signal has {samples} samples ({samples / rate * 1000:.1f} ms "
                         f"at {rate} Hz), shorter than one STFT frame ({cfg.n_fft} samples at "
                         f"{cfg.sample_rate} Hz = {cfg.n_fft / cfg.sample_rate * 1000:.0f} ms)")


def _check_rate(rate) -> int:
    if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
        raise ValueError(f"output_rate must be a positive integer (Hz) or None, got {rate!r}")
    return int(rate)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` samples."""
    return x[:n] if x.size >= n else np.pad(x, (0, n - x.size))


def _top_band_gain(prior: Prior, x: np.ndarray, s: np.ndarray, rate: int, n: int) -> np.ndarray:
    """Per-sample amplitude gain of the top band (:data:`TOP_BAND_HZ` to the prior's Nyquist
    frequency) of speech estimate ``s`` over mixture ``x`` (both at the prior's rate), frame
    gains in [0, 1] interpolated linearly onto ``n`` samples at ``rate``."""
    cfg = prior.stft_config
    lo = round(TOP_BAND_HZ * cfg.n_fft / cfg.sample_rate)
    ex = stft(torch.from_numpy(np.ascontiguousarray(x, np.float32)), cfg)[lo:].abs().square()
    es = stft(torch.from_numpy(np.ascontiguousarray(s, np.float32)), cfg)[lo:].abs().square()
    ex, es = ex.sum(0).double().numpy(), es.sum(0).double().numpy()
    gain = np.sqrt(np.clip(np.divide(es, ex, out=np.zeros_like(ex), where=ex > 0), 0.0, 1.0))
    frame_t = np.arange(gain.size) * cfg.hop_length / cfg.sample_rate  # centred frames
    return np.interp(np.arange(n) / rate, frame_t, gain).astype(np.float32)


def _back_to_rate(prior: Prior, segment: np.ndarray, x: np.ndarray, s: np.ndarray,
                  b: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Speech and noise estimates of one segment at the input's ``rate``: the prior-rate
    estimates ``s``, ``b`` of ``x`` (``segment`` resampled) resampled back, plus, above the
    prior's Nyquist frequency, the input's own band weighted by the top-band gain (see the
    module doc). Speech plus noise is the segment."""
    sr, n = prior.stft_config.sample_rate, segment.size
    s_up = _fit(resample(s, sr, rate), n)
    b_up = _fit(resample(b, sr, rate), n)
    # what the prior-rate signal lacks: above 8 kHz for higher rates (split by the top-band
    # gain); for lower rates only the resampler's loss near the Nyquist frequency (noise)
    rest = segment - _fit(resample(x, sr, rate), n)
    g = _top_band_gain(prior, x, s, rate, n) if rate > sr else np.float32(0.0)
    return (s_up + g * rest).astype(np.float32), (b_up + (1.0 - g) * rest).astype(np.float32)


class _ListSink:
    """In-memory stand-in for :class:`AtomicAudioWriter`."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []

    def write(self, block) -> None:
        self.blocks.append(np.asarray(block, dtype=np.float32))

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def array(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


class _Stream:
    """One input on its way to its outputs: its segments at the working rate, its random
    generator, the cross-fade, the resampling to the output rate and the sinks.

    The working rate is the prior's when the input or the output is at it (the input is then
    resampled as it is read), else the input's (each segment is resampled to the prior's
    rate and back, see the module doc).
    """

    def __init__(self, prior: Prior, blocks_at: Callable[[int], Iterable[np.ndarray]],
                 in_rate: int, out_rate: int, seed: int, device, segment_s: float,
                 overlap_s: float, name: str, sinks: tuple):
        sr = prior.stft_config.sample_rate
        self.prior, self.name, self.sr = prior, name, sr
        self.rate = sr if sr in (in_rate, out_rate) else in_rate
        self.out_rate = out_rate
        seg, overlap = _segment_sizes(self.rate, segment_s, overlap_s)
        min_last = math.ceil(prior.stft_config.n_fft * self.rate / sr) + 1
        self.segments = _rechunk(blocks_at(self.rate), seg, overlap, min_last=min_last)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.stitcher = _Stitcher(seg, overlap)
        self.resamplers = None
        if out_rate != self.rate:
            self.resamplers = [soxr.ResampleStream(self.rate, out_rate, 1, dtype="float32",
                                                   quality="HQ") for _ in range(2)]
        self.sinks = sinks
        self.first = True
        self.samples, self.iterations, self.seconds = 0, [], 0.0
        self.input = self.output = self.noise_path = None

    def next(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next ``(segment at the working rate, the same at the prior's rate)``, or None
        at the end of the input.

        Raises:
            AudioError: a bad input, or a signal shorter than one STFT frame.
        """
        segment = next(self.segments, None)
        if segment is None:
            return None
        x = segment if self.rate == self.sr else resample(segment, self.rate, self.sr)
        if self.first:
            _check_first(self.prior, x, self.name, segment.size, self.rate)
            self.first = False
        return segment, x

    def put(self, segment: np.ndarray, x: np.ndarray, s: np.ndarray, b: np.ndarray,
            iters: int) -> None:
        """Take the prior-rate estimates of a segment given by :meth:`next`."""
        if self.rate != self.sr:
            s, b = _back_to_rate(self.prior, segment, x, s, b, self.rate)
        self._write(*self.stitcher.add(segment.size, s, b, iters))

    def finish(self) -> None:
        """Flush what is held back and commit the outputs."""
        tail = self.stitcher.finish()
        if tail is not None:  # the input ended exactly on a segment boundary
            self._write(*tail)
        if self.resamplers is not None:
            empty = np.zeros(0, np.float32)
            self._emit(*(r.resample_chunk(empty, last=True) for r in self.resamplers))
        for sink in self.sinks:
            if sink is not None:
                sink.commit()

    def abort(self) -> None:
        for sink in self.sinks:
            if sink is not None:
                sink.abort()

    def _write(self, s: np.ndarray, b: np.ndarray, iters: int) -> None:
        if iters:
            self.iterations.append(iters)
        if self.resamplers is not None:
            s, b = (r.resample_chunk(np.ascontiguousarray(v, np.float32))
                    for r, v in zip(self.resamplers, (s, b)))
        self._emit(s, b)

    def _emit(self, s: np.ndarray, b: np.ndarray) -> None:
        speech, noise = self.sinks
        speech.write(s)
        if noise is not None:
            noise.write(b)
        self.samples += s.size

    def info(self) -> dict:
        """The per-file summary of :func:`enhance_file`."""
        return {"input": str(self.input), "output": str(self.output),
                "noise": None if self.noise_path is None else str(self.noise_path),
                "duration_s": self.samples / self.out_rate, "sample_rate": self.out_rate,
                "iterations": self.iterations, "seconds": self.seconds}


def _run_stream(stream: _Stream, config, algorithm: str, device, progress=None) -> None:
    """Enhance every segment of ``stream`` one by one and commit it (aborted on error)."""
    t0 = time.perf_counter()
    try:
        while (item := stream.next()) is not None:
            segment, x = item
            s, b, iters = enhance_segment(stream.prior, x, config, stream.generator, device,
                                          algorithm)
            stream.put(segment, x, s, b, iters)
            if progress is not None:
                progress(segment.size / stream.rate, iters)
        stream.finish()
    except BaseException:
        stream.abort()
        raise
    stream.seconds = time.perf_counter() - t0


def enhance(waveform, sample_rate: int, prior: Prior | str | None = None,
            config=None, seed: int = 0, device="cpu",
            segment_s: float = 30.0, overlap_s: float = 1.0,
            algorithm: str | None = None, output_rate: int | None = None) -> EnhanceResult:
    """Enhance a noisy speech waveform with a clean-speech prior and an NMF noise model.

    Args:
        waveform: noisy signal, array-like ``(time,)`` (``(channels, time)`` is averaged
            to mono with a warning). Floats are taken at full scale 1 (values beyond it are
            kept, not clipped); integer arrays (e.g. int16 as ``soundfile.read(...,
            dtype="int16")`` gives) at their dtype's full scale, with a warning.
        sample_rate: its rate in Hz.
        prior: a :class:`~speechvae.priors.Prior`, a shipped name (``"vae"``) or a checkpoint
            path; default the shipped ``"vae"``.
        config: settings of the algorithm (its config dataclass: :class:`VEMConfig`,
            :class:`MCEMConfig`, :class:`MALAConfig`, :class:`BandoConfig`); it also says
            which algorithm runs. Default: VEM with its defaults.
        seed: seed of every random draw; the same seed gives the same output.
        device: ``"cpu"`` or ``"cuda"``.
        segment_s, overlap_s: segmentation of long signals (seconds).
        algorithm: inference algorithm name (:func:`available_algorithms`: ``"vem"``,
            ``"mcem"``, ``"mala"``, ``"bando"``); None: the one of ``config`` (VEM when no
            config is given). Giving both, they must agree.
        output_rate: rate of the outputs in Hz; None (default): ``sample_rate``. The prior's
            rate (16000) returns its estimate without resampling back (see the module doc
            for the band above 8 kHz).

    Returns:
        :class:`EnhanceResult`, in the input's convention (float32 at the input's scale, or
        the input's integer dtype), at ``output_rate``.

    Raises:
        AudioError: empty, silent, NaN/inf, or shorter than one STFT frame.
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm than ``algorithm``, or of none.
        ValueError: a bad ``output_rate``.

    References:
        Leglaive et al., ICASSP 2020; Bie et al., TASLP 2022 (VEM); Leglaive et al., MLSP 2018
        (MCEM); Roberts & Tweedie 1996 (MALA); Bando et al., ICASSP 2018.
    """
    from ..audio import float_to_dtype

    alg, config = _resolve_algorithm(algorithm, config)
    prior = resolve_prior(prior, device)
    dtype = np.asarray(waveform).dtype
    x = check_waveform(waveform)  # integer samples scaled to full scale 1
    sample_rate = _check_rate(sample_rate)
    out_rate = sample_rate if output_rate is None else _check_rate(output_rate)

    def blocks_at(rate: int) -> list[np.ndarray]:
        return [x if rate == sample_rate else resample(x, sample_rate, rate)]

    speech, noise = _ListSink(), _ListSink()
    stream = _Stream(prior, blocks_at, sample_rate, out_rate, seed, device, segment_s,
                     overlap_s, "waveform", (speech, noise))
    _run_stream(stream, config, alg.name, device)
    return EnhanceResult(float_to_dtype(speech.array(), dtype),
                         float_to_dtype(noise.array(), dtype), out_rate, stream.iterations)


_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
_KEPT_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


def _output_subtype(input_subtype: str, output_path: Path) -> str | None:
    """The input's sample format when the output container has it (16/24/32-bit PCM, float,
    double), else 16-bit PCM (None for Ogg Vorbis)."""
    fmt = _FORMATS.get(output_path.suffix.lower())
    if fmt is None or fmt == "OGG":
        return None
    if input_subtype in _KEPT_SUBTYPES and sf.check_format(fmt, input_subtype):
        return input_subtype
    return "PCM_16"


def _open_file(input_path, output_path, noise_path, prior: Prior, seed: int, device,
               segment_s: float, overlap_s: float, overwrite: bool,
               output_rate: int | None) -> _Stream:
    """A :class:`_Stream` from a file to its output file(s) (writers opened, nothing read)."""
    input_path, output_path = Path(input_path), Path(output_path)
    noise_path = None if noise_path is None else Path(noise_path)
    _check_paths(input_path, output_path, noise_path)
    info = audio_info(input_path)
    out_rate = info.samplerate if output_rate is None else _check_rate(output_rate)
    writer = AtomicAudioWriter(output_path, out_rate, overwrite=overwrite,
                               subtype=_output_subtype(info.subtype, output_path))
    noise_writer = None
    try:
        if noise_path is not None:
            noise_writer = AtomicAudioWriter(noise_path, out_rate, overwrite=overwrite,
                                             subtype=_output_subtype(info.subtype, noise_path))
        stream = _Stream(prior, lambda rate: stream_audio(input_path, rate), info.samplerate,
                         out_rate, seed, device, segment_s, overlap_s, str(input_path),
                         (writer, noise_writer))
    except BaseException:
        writer.abort()
        if noise_writer is not None:
            noise_writer.abort()
        raise
    stream.input, stream.output, stream.noise_path = input_path, output_path, noise_path
    return stream


def enhance_file(input_path: str | os.PathLike, output_path: str | os.PathLike,
                 prior: Prior | str | None = None, config=None,
                 seed: int = 0, device="cpu", overwrite: bool = False,
                 noise_path: str | os.PathLike | None = None, segment_s: float = 30.0,
                 overlap_s: float = 1.0, progress=None, algorithm: str | None = None,
                 output_rate: int | None = None) -> dict:
    """Enhance an audio file into ``output_path``, mono, at the input's rate by default.

    Reads and writes block by block (bounded memory for any duration). The output is written
    to a temporary file and renamed once complete: on any error no output is left behind.
    The output keeps the input's sample format where its container has it (16/24/32-bit PCM,
    float, double; otherwise 16-bit PCM): a float input beyond full scale gives a float output
    that is not clipped; a PCM output clips beyond full scale, with a warning.

    Args:
        input_path: any file soundfile reads (multichannel is averaged to mono with a
            warning).
        output_path: destination (.wav, .flac or .ogg); must differ from the input.
        prior: as :func:`enhance`.
        config: settings of the algorithm; also says which algorithm runs (see
            :func:`enhance`).
        noise_path: optionally also write the noise estimate there (same rate and format).
        overwrite: replace existing outputs.
        progress: optional callable ``(seconds_done, iterations)`` called per segment.
        algorithm: inference algorithm name (see :func:`enhance`).
        output_rate: output rate in Hz; None (default): the input's (see :func:`enhance`).

    Returns:
        dict with ``input``, ``output``, ``noise``, ``duration_s``, ``sample_rate``,
        ``iterations`` (per segment) and ``seconds`` (processing wall time).

    Raises:
        AudioError: unreadable/empty/silent/NaN input, too short, or output == input.
        FileExistsError: an output exists and ``overwrite`` is false.
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm.
    """
    alg, config = _resolve_algorithm(algorithm, config)
    prior = resolve_prior(prior, device)
    return _enhance_file(input_path, output_path, noise_path, prior, alg.name, config, seed,
                         device, overwrite, segment_s, overlap_s, progress, output_rate)


def _enhance_file(input_path, output_path, noise_path, prior: Prior, algorithm: str, config,
                  seed: int, device, overwrite: bool, segment_s: float, overlap_s: float,
                  progress, output_rate) -> dict:
    stream = _open_file(input_path, output_path, noise_path, prior, seed, device, segment_s,
                        overlap_s, overwrite, output_rate)
    _run_stream(stream, config, algorithm, device, progress)
    return stream.info()


def _check_paths(input_path: Path, output_path: Path, noise_path: Path | None) -> None:
    if noise_path is not None and Path(noise_path).resolve() == output_path.resolve():
        raise AudioError(f"{noise_path}: noise output and speech output are the same file")
    for out in filter(None, [output_path, noise_path]):
        if Path(out).resolve() == input_path.resolve():
            raise AudioError(f"{out}: output would overwrite the input")


def _durations(jobs: list) -> list[float]:
    out = []
    for inp, _, _ in jobs:
        try:
            info = audio_info(inp)
            out.append(info.frames / info.samplerate)
        except Exception:  # noqa: BLE001 -- the error is reported when the file is opened
            out.append(0.0)
    return out


def enhance_files(jobs: list, prior: Prior | str | None = None, config=None, seed: int = 0,
                  device="cpu", overwrite: bool = False, segment_s: float = 30.0,
                  overlap_s: float = 1.0, batch_size: int = 1, progress=None,
                  algorithm: str | None = None, durations: list[float] | None = None,
                  output_rate: int | None = None, workers: int = 1,
                  threads: int | None = None) -> Iterator[tuple[int, dict | Exception]]:
    """Enhance many files: in worker processes, ``batch_size`` at a time on the algorithm's
    batched path, or one by one.

    ``batch_size = 1`` runs :func:`enhance_file` on each file in order (the same outputs
    bit for bit). With ``batch_size > 1`` the files are sorted by duration (``durations``,
    or read from the headers) to limit padding and taken ``batch_size`` at a time; the files
    of a group are read, segmented (``segment_s``) and enhanced in lockstep, their k-th
    segments in one batch (:func:`enhance_segments`), and each output is written atomically
    once its file is complete. Every file uses a generator seeded with ``seed``, as alone,
    so its output equals the one-file output up to float rounding. With ``workers > 1`` the
    files (or groups of ``batch_size`` files) are shared out to that many worker processes
    (:func:`speechvae.parallel.enhance_in_pool`), longest first; the outputs are the same.
    A failing file (unreadable, too short, output exists, ...) is reported and left out;
    the others go on.

    Args:
        jobs: ``(input_path, output_path, noise_path or None)`` per file.
        prior, config, seed, device, overwrite, segment_s, overlap_s, algorithm,
            output_rate: as :func:`enhance_file`.
        batch_size: files per batch, ``>= 1``.
        progress: optional callable ``(job_index, seconds_done, iterations)`` per segment
            (with workers: as the workers report it).
        durations: optional durations in seconds per job (for the sort).
        workers: worker processes, ``>= 1``; 1 runs in this process.
        threads: torch threads of each worker process (default 1); this process's own
            setting is left alone.

    Yields:
        ``(job_index, info)`` as each file completes, ``info`` being :func:`enhance_file`'s
        dict (``seconds``: the file's share of its group's time when batched), or
        ``(job_index, exception)`` when that file failed (with ``batch_size > 1`` or
        ``workers > 1``, in the order files complete, which is not the order of ``jobs``).

    Raises:
        ValueError: ``batch_size`` or ``workers`` below 1, or ``batch_size > 1`` with an
            algorithm that has no batched runner (checked before anything is read).
        KeyError: unknown algorithm.
        TypeError: a config of another algorithm.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    alg, config = _resolve_algorithm(algorithm, config)
    if batch_size > 1 and alg.run_batch is None:
        raise ValueError(f"batch_size {batch_size}: algorithm {alg.name!r} has no batched "
                         "path; use batch_size 1")
    if output_rate is not None:
        output_rate = _check_rate(output_rate)
    if workers > 1 and len(jobs) > 1:
        from ..parallel import enhance_in_pool

        yield from enhance_in_pool(
            jobs, prior, workers=workers, threads=threads, batch_size=batch_size,
            durations=durations if durations is not None else _durations(jobs),
            progress=progress, device=device, run=enhance_files, resolve=resolve_prior,
            options={"config": config, "algorithm": alg.name, "seed": seed,
                     "overwrite": overwrite, "segment_s": segment_s, "overlap_s": overlap_s,
                     "output_rate": output_rate, "device": device})
        return
    prior = resolve_prior(prior, device)
    if batch_size == 1:
        for i, (inp, out, noise) in enumerate(jobs):
            def one(seconds, iterations, i=i):
                if progress is not None:
                    progress(i, seconds, iterations)
            try:
                info = _enhance_file(inp, out, noise, prior, alg.name, config, seed, device,
                                     overwrite, segment_s, overlap_s, one, output_rate)
            except Exception as exc:  # noqa: BLE001 -- reported per file to the caller
                yield i, exc
                continue
            yield i, info
        return
    yield from _enhance_batched(jobs, prior, alg, config, seed, device, overwrite, segment_s,
                                overlap_s, batch_size, progress, durations, output_rate)


def _enhance_batched(jobs, prior, alg, config, seed, device, overwrite, segment_s, overlap_s,
                     batch_size, progress, durations, output_rate):
    supports = getattr(alg, "batch_supports", None)
    if supports is not None and not supports(prior):
        warnings.warn(f"algorithm {alg.name!r} has no batched path for prior "
                      f"{prior.name!r}: files are enhanced one by one", stacklevel=3)
    if durations is None:
        durations = _durations(jobs)
    order = sorted(range(len(jobs)), key=lambda i: durations[i])
    for start in range(0, len(order), batch_size):
        group: list[tuple[int, _Stream]] = []
        try:
            for i in order[start:start + batch_size]:
                try:
                    group.append((i, _open_file(*jobs[i], prior, seed, device, segment_s,
                                                overlap_s, overwrite, output_rate)))
                except Exception as exc:  # noqa: BLE001
                    yield i, exc
            while group:
                # the next segment of every file of the group (files that end are committed)
                batch, done = [], []
                for i, f in group:
                    try:
                        item = f.next()
                        if item is None:
                            f.finish()
                            done.append((i, f, f.info()))
                            continue
                        batch.append((i, f, *item))
                    except Exception as exc:  # noqa: BLE001
                        f.abort()
                        done.append((i, f, exc))
                for i, f, result in done:
                    group.remove((i, f))
                    yield i, result
                if not batch:
                    continue
                t0 = time.perf_counter()
                outs = enhance_segments(prior, [x for *_, x in batch], config,
                                        [f.generator for _, f, _, _ in batch], device,
                                        alg.name)
                share = (time.perf_counter() - t0) / len(batch)
                for (i, f, segment, x), (s, b, iters) in zip(batch, outs):
                    f.seconds += share
                    if progress is not None:
                        progress(i, segment.size / f.rate, iters)
                    try:
                        f.put(segment, x, s, b, iters)
                    except Exception as exc:  # noqa: BLE001 -- e.g. a full disk
                        f.abort()
                        group.remove((i, f))
                        yield i, exc
        except BaseException:
            for _, f in group:
                f.abort()
            raise
