"""Harmonic (sinusoidal) resynthesis of voiced speech at a given f0, with a given envelope.

Used by the relative f0 edit (:class:`~speechvae.editing.Editor`, ``method="relative"``):
the target f0 is known, so the voiced part of the output is written directly as a sum of
harmonics whose phases accumulate from the target f0 track and whose amplitudes sample the
input's spectral envelope (times the latent edit's envelope change) at the harmonic
frequencies, instead of estimating a phase with Griffin–Lim. The envelope (the editor's
default: for low voices the discrete all-pole model of the input's harmonic peaks,
:func:`dap_fit`, anchored between the harmonics by the all-pole LPC shape at the level of
the true envelope; for high voices WORLD's CheapTrick, :func:`cheaptrick_envelope`) is
analysed on a short window (32 ms at 16 kHz, 5 ms hop) so that formant movements are
followed as closely as a pitch-adaptive vocoder follows them; the prior's 64 ms STFT would
smear them.

References:
    McAulay & Quatieri, "Speech analysis/synthesis based on a sinusoidal representation",
    IEEE TASSP 34(4), 1986; Makhoul, "Linear prediction: a tutorial review", Proc. IEEE
    63(4), 1975 (the all-pole envelope); El-Jaroudi & Makhoul, "Discrete all-pole
    modeling", IEEE Trans. Signal Processing 39(2), 1991 (DAP); Cappé & Moulines,
    "Regularization techniques for discrete cepstrum estimation", IEEE Signal Processing
    Letters 3(4), 1996; Morise, "CheapTrick, a spectral envelope estimator for high-quality
    speech synthesis", Speech Communication 67, 2015; Röbel & Rodet, DAFx 2005 (the true
    envelope); Morise et al., IEICE Trans. Inf. Syst. E99-D(7), 2016 (WORLD, the vocoder
    this is compared with).
"""
from __future__ import annotations

import numpy as np
import torch

from ..stft import STFTConfig, stft
from .common import import_pyworld
from .envelope import true_envelope

__all__ = ["ENVELOPE_KINDS", "ENVELOPE_STFT", "cepstrum_fit", "cheaptrick_envelope", "dap_fit",
           "envelope_config",
           "harmonic_peaks", "harmonic_synthesis", "lpc_shape", "minimum_phase", "sample_f0",
           "short_time_envelope"]

#: envelope kinds of :func:`short_time_envelope`
ENVELOPE_KINDS = ("lpc", "true", "dap", "cepstrum", "cheaptrick")
#: diagonal loading of the DAP normal equations, relative to R(0) (1e-9 biased the fit of
#: spectra with a 90 dB range; see tests/test_editing_envelope.py)
_LOADING = 1e-12

#: the envelope analysis of the harmonic resynthesis at 16 kHz: 32 ms Hann window, 5 ms hop
ENVELOPE_STFT = STFTConfig(sample_rate=16000, n_fft=512, hop_length=80, window="hann")


def envelope_config(sample_rate: int) -> STFTConfig:
    """:data:`ENVELOPE_STFT` scaled to ``sample_rate`` (32 ms window, 5 ms hop)."""
    if sample_rate == ENVELOPE_STFT.sample_rate:
        return ENVELOPE_STFT
    n_fft = int(2 ** round(np.log2(0.032 * sample_rate)))
    return STFTConfig(sample_rate=sample_rate, n_fft=n_fft,
                      hop_length=max(1, round(0.005 * sample_rate)), window="hann")


def sample_f0(f0_frames: np.ndarray, frame_times_s: np.ndarray, times_s: np.ndarray,
              threshold: float = 0.5) -> np.ndarray:
    """Linear interpolation of a frame-wise f0 track (NaN unvoiced) at ``times_s``; a time
    is voiced when the interpolated voicing is above ``threshold`` (0..1), and 0 is
    returned elsewhere.

    Returns:
        ``(len(times_s),)`` float64 Hz, 0 where unvoiced.
    """
    f0_frames = np.asarray(f0_frames, dtype=np.float64)
    voiced = np.interp(times_s, frame_times_s, np.isfinite(f0_frames) * 1.0) > threshold
    finite = np.isfinite(f0_frames)
    if not finite.any():
        return np.zeros(len(times_s))
    # interpolate between voiced values only, so edges do not mix in zeros
    f0 = np.interp(times_s, frame_times_s[finite], f0_frames[finite])
    return np.where(voiced, f0, 0.0)


def lpc_shape(waveform: np.ndarray, config: STFTConfig, order: int | None = None,
              pre_emphasis: float = 0.97) -> np.ndarray:
    """All-pole (LPC) spectral shape of each STFT frame: ``1 / |A(e^jw)|^2`` of the Burg
    LPC (``librosa.lpc``) of the pre-emphasised, Hann-windowed frame, divided by the
    pre-emphasis response (so the glottal tilt stays), up to a gain per frame.

    Args:
        waveform: ``(time,)`` at ``config.sample_rate``.
        config: frames as :func:`speechvae.stft.stft` cuts them (centred, ``n_fft`` long).
        order: LPC order (default ``2 + rate / 1000``, 18 at 16 kHz).
        pre_emphasis: first-order pre-emphasis coefficient.

    Returns:
        ``(n_fft // 2 + 1, frames)`` float64; silent frames give a flat shape.
    """
    import librosa

    sr, n_fft, hop = config.sample_rate, config.n_fft, config.hop_length
    order = order or int(2 + sr // 1000)
    x = np.pad(np.asarray(waveform, dtype=np.float64), n_fft // 2, mode="reflect")
    frames = librosa.util.frame(x, frame_length=n_fft, hop_length=hop, axis=0)
    frames = frames * np.hanning(n_fft)[None]
    frames = np.concatenate([frames[:, :1], frames[:, 1:] - pre_emphasis * frames[:, :-1]], 1)
    silent = np.abs(frames).max(1) < 1e-8
    frames[silent] = np.random.default_rng(0).standard_normal((int(silent.sum()), n_fft))
    a = librosa.lpc(frames, order=order, axis=-1)  # (frames, order + 1)
    response = np.abs(np.fft.rfft(a, n=n_fft, axis=-1)) ** 2
    w = 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    tilt = np.maximum(np.abs(1 - pre_emphasis * np.exp(-1j * w)) ** 2, 1e-3)
    shape = 1.0 / np.maximum(response * tilt[None], 1e-12)
    shape[silent] = 1.0
    return shape.T


def harmonic_peaks(power: np.ndarray, f0: np.ndarray, sample_rate: int,
                   max_hz: float | None = None, search: float = 0.25
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The harmonic peaks of each frame of a power spectrogram: for ``k = 1, 2, ...`` with
    ``k f0 < max_hz``, the largest bin within ``±search f0`` (at least one bin) of ``k f0``,
    refined by parabolic interpolation of the log power over it and its two neighbours
    (Smith & Serra, "PARSHL", ICMC 1987). For a sinusoid the peak power is the power the
    window's main lobe reaches, which is what :func:`harmonic_synthesis` reproduces from an
    envelope value.

    Args:
        power: ``(n_fft // 2 + 1, frames)`` power spectrogram (e.g. of :func:`envelope_config`).
        f0: ``(frames,)`` Hz; frames with ``f0 <= 0`` or non-finite get no peaks.
        sample_rate: Hz.
        max_hz: highest harmonic (default: Nyquist less half a bin).
        search: half-width of the search around ``k f0`` as a share of ``f0``.

    Returns:
        ``(freqs, powers, valid)``, each ``(frames, K)`` with ``K`` the most harmonics of any
        frame: peak frequencies (Hz), peak powers, and which entries are harmonics (the
        others are 0).

    Raises:
        ValueError: ``power`` not 2-D, ``f0`` of the wrong length, or ``search`` outside
            ``(0, 0.5]``.
    """
    power = np.asarray(power, dtype=np.float64)
    if power.ndim != 2:
        raise ValueError(f"expected a (freq, frames) power spectrogram, got {power.shape}")
    f0 = np.asarray(f0, dtype=np.float64)
    if f0.shape != (power.shape[1],):
        raise ValueError(f"f0 has shape {f0.shape}, expected ({power.shape[1]},)")
    if not 0 < search <= 0.5:
        raise ValueError(f"search must be in (0, 0.5], got {search}")
    n_bins, frames = power.shape
    n_fft = 2 * (n_bins - 1)
    bin_hz = sample_rate / n_fft
    max_hz = (0.5 * sample_rate - 0.5 * bin_hz) if max_hz is None else max_hz
    ok = np.isfinite(f0) & (f0 > 0)
    f0 = np.where(ok, f0, 0.0)
    if not ok.any():
        z = np.zeros((frames, 0))
        return z, z, z.astype(bool)
    k_max = int(max_hz / f0[ok].min())
    k = np.arange(1, k_max + 1)[None]
    fk = f0[:, None] * k  # (frames, K)
    valid = ok[:, None] & (fk < max_hz)
    half = np.maximum(1, np.floor(search * f0 / bin_hz)).astype(int)  # (frames,)
    logp = np.log(np.maximum(power, 1e-30 * max(power.max(), 1e-30))).T  # (frames, bins)
    centre = np.clip(np.round(fk / bin_hz).astype(int), 1, n_bins - 2)
    rows = np.arange(frames)[:, None]
    best = centre.copy()
    best_val = logp[rows, centre]
    for d in range(1, int(half.max()) + 1):
        for b in (centre - d, centre + d):
            inside = (d <= half[:, None]) & (b >= 1) & (b <= n_bins - 2)
            b = np.clip(b, 1, n_bins - 2)
            v = logp[rows, b]
            better = inside & (v > best_val)
            best = np.where(better, b, best)
            best_val = np.where(better, v, best_val)
    lm, l0, lp = logp[rows, best - 1], best_val, logp[rows, best + 1]
    curv = lm - 2 * l0 + lp
    delta = np.where(curv < 0, 0.5 * (lm - lp) / np.where(curv < 0, curv, -1.0), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    peak = l0 - 0.25 * (lm - lp) * delta
    freqs = np.where(valid, (best + delta) * bin_hz, 0.0)
    powers = np.where(valid, np.exp(peak), 0.0)
    return freqs, powers, valid


def _check_fit_args(freqs, powers, valid, order, weights=None):
    freqs, powers = np.asarray(freqs, np.float64), np.asarray(powers, np.float64)
    valid = np.asarray(valid, bool)
    if freqs.ndim != 2 or freqs.shape != powers.shape or freqs.shape != valid.shape:
        raise ValueError(f"freqs, powers and valid must be (frames, K) arrays of one shape, "
                         f"got {freqs.shape}, {powers.shape}, {valid.shape}")
    if weights is not None and (np.shape(weights) != freqs.shape
                                or np.any(np.asarray(weights) < 0)):
        raise ValueError(f"weights must be a non-negative {freqs.shape} array")
    if int(order) != order or order < 1:
        raise ValueError(f"order must be a positive integer, got {order}")
    if np.any(valid & ~(powers > 0)):
        raise ValueError("the powers of valid harmonics must be positive")
    return freqs, powers, valid


def dap_fit(freqs: np.ndarray, powers: np.ndarray, valid: np.ndarray, sample_rate: int,
            order: int, iterations: int = 60, step: float = 0.5,
            weights: np.ndarray | None = None) -> np.ndarray:
    """Discrete all-pole (DAP) model of discrete spectral samples, per frame (El-Jaroudi &
    Makhoul, "Discrete all-pole modeling", IEEE Trans. Signal Processing 39(2), 1991).

    The model ``P(w) = 1 / |A(w)|^2``, ``A(w) = sum_{i=0}^{p} a_i e^{-j w i}`` (the gain is
    in ``a_0``), minimises the discrete Itakura–Saito measure
    ``sum_m [P_m / P(w_m) - log(P_m / P(w_m)) - 1]`` over the samples ``(w_m, P_m)`` only,
    not over the whole spectrum as LPC does, so the fit is not pulled toward the spectral
    nulls between harmonics. Its stationarity condition is ``R a = h(a)``, with
    ``R_ik = sum_m P_m cos(w_m (i - k))`` and ``h_i = sum_m Re(e^{-j w_m i} / A(w_m))``;
    it is solved by the fixed-point iteration of the paper, damped
    (``a <- a + step (R^{-1} h(a) - a)``), starting from the LPC fit of the same samples
    (``R a = e_0``, scaled to its best gain).

    Args:
        freqs: ``(frames, K)`` Hz; powers: ``(frames, K)`` > 0 where valid; valid:
            ``(frames, K)`` bool (:func:`harmonic_peaks`). Frames with fewer than one valid
            sample get ``a = [1, 0, ...]``.
        sample_rate: Hz.
        order: ``p``; with fewer than ``p / 2`` samples in a frame the fit is not unique and
            is regularised by a small diagonal loading of ``R``.
        iterations: fixed-point iterations.
        step: damping, in ``(0, 1]``.
        weights: ``(frames, K)`` weight of each sample in the measure (default 1; the
            weighted measure gives ``R_ik = sum_m u_m P_m cos(...)``, ``h_i = sum_m u_m
            Re(...)``).

    Returns:
        ``(frames, order + 1)`` float64 ``a``; the model power at ``w`` is
        ``1 / |sum_i a_i e^{-j w i}|^2`` (``w = 2 pi f / sample_rate``).

    Raises:
        ValueError: arrays of different or non-2-D shapes, ``order < 1``, non-positive
            powers, negative weights, ``step`` outside ``(0, 1]`` or ``iterations < 0``.
    """
    freqs, powers, valid = _check_fit_args(freqs, powers, valid, order, weights)
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    p = int(order)
    frames = freqs.shape[0]
    a = np.zeros((frames, p + 1))
    a[:, 0] = 1.0
    has = valid.sum(1) > 0
    if not has.any():
        return a
    w = 2 * np.pi * freqs[has] / sample_rate
    m = valid[has] * (1.0 if weights is None else np.asarray(weights, np.float64)[has])
    scale = np.array([powers[has][i][valid[has][i]].max() for i in range(int(has.sum()))])
    pw = np.where(valid[has], powers[has], 0.0) / scale[:, None]  # each frame's max is 1
    lags = np.arange(p + 1)
    cos_lag = np.cos(w[:, :, None] * lags)  # (F, K, p + 1)
    sin_lag = np.sin(w[:, :, None] * lags)
    r = np.matmul((m * pw)[:, None, :], cos_lag)[:, 0]  # R(0..p)
    idx = np.abs(lags[:, None] - lags[None])
    big_r = r[:, idx] + _LOADING * r[:, :1, None] * np.eye(p + 1)
    count = m.sum(1)

    def response(coef):  # A(w_m) = sum_i a_i e^{-j w_m i} = re + j im, (F, K) each
        return (np.matmul(cos_lag, coef[..., None])[..., 0],
                -np.matmul(sin_lag, coef[..., None])[..., 0])

    def gain_fit(coef):
        re, im = response(coef)
        err = np.sum(m * pw * (re ** 2 + im ** 2), 1)
        return coef * np.sqrt(count / np.maximum(err, 1e-300))[:, None]

    e0 = np.zeros(p + 1)
    e0[0] = 1.0
    inv_r = np.linalg.inv(big_r)  # the same R in every iteration
    coef = gain_fit(inv_r[:, :, 0].copy())
    for _ in range(iterations):
        # h_i = sum_m m_m Re(e^{-j w_m i} / A_m) = sum_m m_m (cos_i re - sin_i im) / |A_m|^2
        re, im = response(coef)
        g = m / np.maximum(re ** 2 + im ** 2, 1e-300)
        h = (np.matmul((g * re)[:, None, :], cos_lag) - np.matmul((g * im)[:, None, :], sin_lag))
        new = np.matmul(inv_r, h[:, 0, :, None])[..., 0]
        coef = coef + step * (new - coef)
    a[has] = coef / np.sqrt(scale)[:, None]
    return a


def cepstrum_fit(freqs: np.ndarray, powers: np.ndarray, valid: np.ndarray, sample_rate: int,
                 order: int, smoothness: float = 5e-4,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """Regularised discrete cepstrum of discrete spectral samples, per frame (Galas & Rodet,
    ICMC 1990; Cappé & Moulines, "Regularization techniques for discrete cepstrum
    estimation", IEEE Signal Processing Letters 3(4), 1996).

    ``log P(w) = c_0 + 2 sum_{i=1}^{p} c_i cos(w i)`` minimising
    ``sum_m u_m (log P_m - log P(w_m))^2 + smoothness * sum_i 8 pi^2 i^2 c_i^2`` (the squared
    derivative of the log envelope in normalised frequency, integrated: the roughness
    penalty of Cappé & Moulines), a linear least-squares problem.

    Args:
        freqs, powers, valid: ``(frames, K)`` as in :func:`dap_fit`.
        sample_rate: Hz.
        order: ``p``.
        smoothness: weight of the roughness penalty (> 0 keeps the problem well posed when a
            frame has fewer than ``p + 1`` samples).
        weights: ``(frames, K)`` sample weights ``u_m`` (default 1).

    Returns:
        ``(frames, order + 1)`` float64 ``c`` (frames without samples: 0).

    Raises:
        ValueError: as :func:`dap_fit`, or ``smoothness < 0``.
    """
    freqs, powers, valid = _check_fit_args(freqs, powers, valid, order, weights)
    if smoothness < 0:
        raise ValueError(f"smoothness must be >= 0, got {smoothness}")
    p = int(order)
    lags = np.arange(p + 1)
    w = 2 * np.pi * freqs / sample_rate
    basis = np.cos(w[:, :, None] * lags) * np.where(lags == 0, 1.0, 2.0)  # (F, K, p + 1)
    m = valid * (1.0 if weights is None else np.asarray(weights, np.float64))
    y = np.where(valid, np.log(np.where(valid, powers, 1.0)), 0.0)
    lhs = np.einsum("fk,fki,fkj->fij", m, basis, basis)
    lhs = lhs + smoothness * np.diag(8 * np.pi ** 2 * lags ** 2.0)
    lhs = lhs + 1e-9 * np.eye(p + 1)
    rhs = np.einsum("fk,fki->fi", m * y, basis)
    c = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    c[valid.sum(1) == 0] = 0.0
    return c


def cheaptrick_envelope(waveform: np.ndarray, f0: np.ndarray, times_s: np.ndarray,
                        sample_rate: int, n_bins: int) -> torch.Tensor:
    """WORLD's CheapTrick envelope (Morise, Speech Communication 67, 2015; ``pyworld``) of
    ``waveform`` at ``times_s``, each frame at its ``f0`` (Hz; 0: CheapTrick's default),
    linearly interpolated to ``n_bins`` bins from 0 to Nyquist.

    Returns:
        ``(n_bins, len(times_s))`` float32 power spectral envelope (CheapTrick's units).

    Raises:
        ImportError: ``pyworld`` is missing.
    """
    pyworld = import_pyworld("the CheapTrick envelope", "EditConfig(envelope='dap')")
    x = np.ascontiguousarray(waveform, dtype=np.float64)
    sp = pyworld.cheaptrick(x, np.ascontiguousarray(f0, dtype=np.float64),
                            np.ascontiguousarray(times_s, dtype=np.float64), sample_rate)
    # both grids span 0..Nyquist uniformly: linear interpolation of every frame at once
    pos = np.linspace(0.0, sp.shape[1] - 1, n_bins)
    lo = np.minimum(pos.astype(int), sp.shape[1] - 2)
    w = pos - lo
    env = (sp[:, lo] * (1.0 - w) + sp[:, lo + 1] * w).T
    return torch.from_numpy(np.maximum(env, 1e-30)).float()


@torch.no_grad()
def short_time_envelope(waveform: np.ndarray, f0_frames: np.ndarray, frame_times_s: np.ndarray,
                        sample_rate: int, iterations: int = 24, kind: str = "lpc",
                        lpc_order: int | None = None, cepstrum_order: int = 30,
                        smoothness: float = 5e-4, fit_threshold: float = 0.0,
                        anchor_weight: float = 0.0, anchor: str = "lpc",
                        target_f0_frames: np.ndarray | None = None,
                        anchor_full_st: float = 0.0,
                        anchor_weight_same_f0: float | None = None) -> torch.Tensor:
    """Spectral envelope of ``waveform`` on the short analysis grid of
    :func:`envelope_config`.

    ``kind="true"``: the true envelope (:func:`~speechvae.editing.envelope.true_envelope`),
    each frame at the f0 interpolated from ``f0_frames`` (Hz at ``frame_times_s``; 100 Hz
    where unvoiced). ``kind="lpc"``: the all-pole shape of :func:`lpc_shape` at the level of
    the true envelope (same mean log power per frame): smooth between the input's harmonics,
    so that harmonics at another f0 sample it without ripple; ``lpc_order`` as in
    :func:`lpc_shape`.

    ``kind="dap"``: on frames voiced in ``f0_frames`` (interpolated voicing above
    ``fit_threshold``) with at least two harmonics, the discrete all-pole model
    (:func:`dap_fit`, order ``lpc_order``) of the input's harmonic peaks
    (:func:`harmonic_peaks` at the interpolated f0); the ``"lpc"`` envelope elsewhere.
    LPC of a frame whose harmonics are sparse (high f0) puts its poles on single harmonics
    and, fitted to the whole spectrum, does not give back the harmonics' powers at the
    input's own f0; DAP fits the harmonics alone. Alone, it is free between the harmonics and
    draws sharp peaks there, which harmonics at another f0 then sample. So each interval
    between two harmonics also gets an *anchor* sample at its midpoint (and one at
    ``f0 / 2``) with the power of the ``"lpc"`` envelope there (``anchor="lpc"``; ``"true"``:
    the true envelope's), weighted ``anchor_weight`` against 1 for a harmonic. With
    ``target_f0_frames`` (the f0 the harmonics will be synthesised at, Hz at
    ``frame_times_s``) and ``anchor_full_st > 0``, the weight of a frame goes linearly from
    ``anchor_weight_same_f0`` (target = input f0, where the new harmonics sample the fitted
    points themselves) to ``anchor_weight`` at a shift of ``anchor_full_st`` semitones and
    more. Measured in ``recipes/editing/README.md``.

    ``kind="cepstrum"``: the same frames and samples with the regularised discrete cepstrum
    (:func:`cepstrum_fit`, ``cepstrum_order``, ``smoothness``). ``kind="cheaptrick"``: on
    the same frames, WORLD's pitch-adaptive CheapTrick envelope
    (:func:`cheaptrick_envelope`, needs ``pyworld``) at the level of the ``"lpc"`` envelope
    (same mean log power per frame).

    Args:
        waveform: ``(time,)`` at ``sample_rate``.
        f0_frames: ``(frames,)`` Hz, NaN unvoiced, at ``frame_times_s`` (s).
        sample_rate: Hz.
        iterations: true-envelope iterations.
        kind: one of :data:`ENVELOPE_KINDS`.
        lpc_order: all-pole order (default ``2 + rate / 1000``).
        cepstrum_order, smoothness: ``kind="cepstrum"``.
        fit_threshold: interpolated voicing (0..1) above which a frame is fitted to its
            harmonics (0: every frame that touches a voiced one, as the harmonics are
            synthesised there).
        anchor_weight, anchor, target_f0_frames, anchor_full_st, anchor_weight_same_f0:
            anchors of ``kind="dap"`` / ``"cepstrum"`` (0: none).

    Returns:
        ``(n_fft // 2 + 1, frames)`` power envelope of the Hann-windowed STFT, frame ``j`` at
        ``j * hop / sample_rate`` s.

    Raises:
        ValueError: an unknown ``kind`` or ``anchor``, a negative anchor weight,
            ``anchor_full_st < 0`` or ``fit_threshold`` outside ``[0, 1)``.
        ImportError: ``kind="cheaptrick"`` without ``pyworld``.
    """
    if kind not in ENVELOPE_KINDS:
        raise ValueError(f"envelope kind must be one of {', '.join(ENVELOPE_KINDS)}, got {kind!r}")
    if anchor not in ("lpc", "true"):
        raise ValueError(f"anchor must be 'lpc' or 'true', got {anchor!r}")
    if anchor_weight < 0 or (anchor_weight_same_f0 is not None and anchor_weight_same_f0 < 0):
        raise ValueError("anchor weights must be >= 0, got "
                         f"{anchor_weight} and {anchor_weight_same_f0}")
    if anchor_full_st < 0:
        raise ValueError(f"anchor_full_st must be >= 0, got {anchor_full_st}")
    if not 0 <= fit_threshold < 1:
        raise ValueError(f"fit_threshold must be in [0, 1), got {fit_threshold}")
    cfg = envelope_config(sample_rate)
    x = np.asarray(waveform, dtype=np.float32)
    spec = stft(torch.from_numpy(x), cfg)
    power = spec.abs().square()
    times = np.arange(spec.shape[-1]) * cfg.hop_length / sample_rate
    f0 = sample_f0(f0_frames, frame_times_s, times)
    f0 = torch.from_numpy(np.where(f0 > 0, f0, 100.0)).float()
    env = true_envelope(power, f0, sample_rate, iterations)
    if kind == "true":
        return env
    order = lpc_order or int(2 + sample_rate // 1000)
    shape = torch.from_numpy(lpc_shape(x, cfg, order)[:, : env.shape[1]]).float()
    level = torch.log(env).mean(0) - torch.log(shape).mean(0)
    out = shape * torch.exp(level)[None]
    if kind == "lpc":
        return out
    f0_fit = sample_f0(f0_frames, frame_times_s, times, fit_threshold)
    if kind == "cheaptrick":
        ct = cheaptrick_envelope(x, f0_fit, times, sample_rate, out.shape[0])
        voiced = torch.from_numpy(f0_fit > 0)
        level = torch.log(out).mean(0) - torch.log(ct).mean(0)
        out[:, voiced] = (ct * torch.exp(level)[None])[:, voiced]
        return out
    freqs, peaks, valid = harmonic_peaks(power.double().numpy(), f0_fit, sample_rate)
    fitted = valid.sum(1) >= 2
    if not fitted.any():
        return out
    w = 2 * np.pi * np.arange(cfg.n_fft // 2 + 1) / cfg.n_fft
    weights = valid * 1.0
    if anchor_weight > 0 or (anchor_weight_same_f0 or 0) > 0:
        ref = (out if anchor == "lpc" else env).double().numpy().T  # (frames, bins)
        bin_hz = sample_rate / cfg.n_fft
        mid = (np.arange(freqs.shape[1])[None] + 0.5) * f0_fit[:, None]
        mid_ok = valid | np.roll(valid, 1, axis=1)
        mid_ok[:, 0] = valid[:, 0]
        b = np.clip(mid / bin_hz, 0, ref.shape[1] - 1)
        lo = np.floor(b).astype(int)
        hi = np.minimum(lo + 1, ref.shape[1] - 1)
        rows = np.arange(ref.shape[0])[:, None]
        mid_p = ref[rows, lo] * (1 - (b - lo)) + ref[rows, hi] * (b - lo)
        freqs = np.concatenate([freqs, np.where(mid_ok, mid, 0.0)], 1)
        peaks = np.concatenate([peaks, np.where(mid_ok, mid_p, 0.0)], 1)
        anchor_w = np.full(len(f0_fit), float(anchor_weight))
        if target_f0_frames is not None and anchor_full_st > 0:
            tgt = sample_f0(target_f0_frames, frame_times_s, times, fit_threshold)
            both = (tgt > 0) & (f0_fit > 0)
            shift = np.abs(12 * np.log2(np.where(both, tgt, 1.0) / np.where(both, f0_fit, 1.0)))
            w0 = anchor_weight if anchor_weight_same_f0 is None else anchor_weight_same_f0
            ramp = np.minimum(1.0, shift / anchor_full_st)
            anchor_w = np.where(both, w0 + (anchor_weight - w0) * ramp, anchor_w)
        weights = np.concatenate([weights, mid_ok * anchor_w[:, None]], 1)
        valid = np.concatenate([valid, mid_ok], 1)
    if kind == "dap":
        a = dap_fit(freqs[fitted], peaks[fitted], valid[fitted], sample_rate, order,
                    weights=weights[fitted])
        model = 1.0 / np.maximum(np.abs(np.fft.rfft(a, n=cfg.n_fft, axis=-1)) ** 2, 1e-300)
    else:
        c = cepstrum_fit(freqs[fitted], peaks[fitted], valid[fitted], sample_rate,
                         cepstrum_order, smoothness, weights=weights[fitted])
        lags = np.arange(cepstrum_order + 1)
        basis = np.cos(w[:, None] * lags) * np.where(lags == 0, 1.0, 2.0)
        model = np.exp(np.clip(c @ basis.T, -700, 700))
    out[:, torch.from_numpy(fitted)] = torch.from_numpy(model.T).float()
    return out


def minimum_phase(envelope: torch.Tensor | np.ndarray) -> np.ndarray:
    """Phase (rad) of the minimum-phase filter whose power response is ``envelope``, per bin
    and frame, from the folded real cepstrum of ``0.5 log envelope`` (Oppenheim & Schafer,
    "Discrete-time signal processing", §12.3). Continuous (not wrapped) along frequency.

    Args:
        envelope: ``(n_fft // 2 + 1, frames)`` positive power envelope.

    Returns:
        ``(n_fft // 2 + 1, frames)`` float64.
    """
    env = np.maximum(torch.as_tensor(envelope).double().cpu().numpy(), 1e-30)
    n_fft = 2 * (env.shape[0] - 1)
    cep = np.fft.irfft(0.5 * np.log(env), n=n_fft, axis=0)
    fold = np.zeros_like(cep)
    fold[0] = cep[0]
    fold[1:n_fft // 2] = 2 * cep[1:n_fft // 2]
    fold[n_fft // 2] = cep[n_fft // 2]
    return np.fft.rfft(fold, axis=0).imag


def harmonic_synthesis(envelope: torch.Tensor | np.ndarray, f0: np.ndarray, sample_rate: int,
                       config: STFTConfig | None = None, max_hz: float | None = None,
                       phase: str = "minimum") -> np.ndarray:
    """A sum of harmonics of the f0 track ``f0`` whose powers follow ``envelope``.

    ``y(n) = sum_k a_k(n) cos(k phi(n))``, ``phi(n) = 2 pi sum_{m<=n} f0(m) / rate``
    ``+ theta_k(n)`` (the phase of every harmonic accumulates from the track; ``theta`` is
    the minimum phase of the envelope with ``phase="minimum"``, as a source-filter vocoder
    with a minimum-phase filter gives, or 0 with ``phase="zero"``), with ``a_k`` the
    amplitude of a
    sinusoid whose STFT peak (window ``config``) has the envelope's power at ``k f0``:
    ``a = 2 sqrt(E) / sum(window)``, read at the envelope frames and interpolated linearly in
    time. Harmonics at or above ``max_hz`` (default: Nyquist) are left out; the output is 0
    where ``f0`` is 0 (unvoiced).

    Args:
        envelope: ``(n_fft // 2 + 1, frames)`` power envelope on the ``config`` grid (frame
            ``j`` at ``j * hop`` samples).
        f0: ``(time,)`` Hz per sample, 0 unvoiced.
        sample_rate: Hz.
        config: the envelope's STFT (default :func:`envelope_config`).
        max_hz: highest harmonic frequency (Hz).
        phase: ``"minimum"`` or ``"zero"``.

    Returns:
        float32 ``(time,)``.

    Raises:
        ValueError: an envelope whose size does not match ``config``, or an unknown phase.
    """
    from ..stft import _window

    cfg = config or envelope_config(sample_rate)
    env = torch.as_tensor(envelope).double().cpu().numpy()
    if env.shape[0] != cfg.n_fft // 2 + 1:
        raise ValueError(f"envelope has {env.shape[0]} bins, the STFT {cfg.n_fft // 2 + 1}")
    if phase not in ("minimum", "zero"):
        raise ValueError(f"phase must be 'minimum' or 'zero', got {phase!r}")
    theta = minimum_phase(env) if phase == "minimum" else np.zeros_like(env)
    f0 = np.asarray(f0, dtype=np.float64)
    n = f0.size
    out = np.zeros(n)
    voiced = f0 > 0
    if not voiced.any():
        return out.astype(np.float32)
    max_hz = 0.5 * sample_rate if max_hz is None else min(max_hz, 0.5 * sample_rate)
    scale = 2.0 / float(_window(cfg, dtype=torch.float64).sum())
    phi = 2 * np.pi * np.cumsum(f0 / sample_rate)
    # envelope amplitude at frame j, read at harmonic k of the f0 at that frame
    frames = env.shape[1]
    centres = np.arange(frames) * cfg.hop_length
    f0_frame = np.interp(centres, np.arange(n), f0)
    pos = np.clip((np.arange(n) / cfg.hop_length), 0, frames - 1)
    j0 = np.floor(pos).astype(int)
    j1 = np.minimum(j0 + 1, frames - 1)
    alpha = pos - j0
    amp_env = np.sqrt(np.maximum(env, 0.0)) * scale
    k_max = int(max_hz / f0[voiced].min())
    for k in range(1, k_max + 1):
        fk_frame = k * f0_frame
        if not np.any((fk_frame > 0) & (fk_frame < max_hz)):
            continue
        b = np.clip(fk_frame * cfg.n_fft / sample_rate, 0, env.shape[0] - 1)
        lo = np.floor(b).astype(int)
        hi = np.minimum(lo + 1, env.shape[0] - 1)
        w = b - lo
        cols = np.arange(frames)
        a_frame = amp_env[lo, cols] * (1 - w) + amp_env[hi, cols] * w
        t_frame = theta[lo, cols] * (1 - w) + theta[hi, cols] * w
        a = a_frame[j0] * (1 - alpha) + a_frame[j1] * alpha
        th = t_frame[j0] * (1 - alpha) + t_frame[j1] * alpha
        inside = voiced & (k * f0 < max_hz)
        out += np.where(inside, a * np.cos(k * phi + th), 0.0)
    return out.astype(np.float32)
