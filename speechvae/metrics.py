"""Objective quality and intelligibility measures, each named exactly.

* ``si_sdr``: scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019),
  computed here (a few lines of NumPy).
* ``pesq_wb`` / ``pesq_nb``: PESQ wide-band (ITU-T P.862.2, MOS-LQO) and narrow-band
  (P.862 with the P.862.1 mapping), from the ``pesq`` package.
* ``stoi`` / ``estoi``: short-time objective intelligibility (Taal et al. 2011) and extended
  STOI (Jensen & Taal 2016), from ``pystoi``.

All take ``reference`` and ``estimate`` waveforms of shape ``(time,)`` at ``sample_rate`` Hz.
Signals of different lengths are cut to the shorter one.

Pitch and formant measures, for the edits (DESIGN §7):

* ``f0_track``: f0 per frame with probabilistic YIN (``librosa.pyin``; Mauch & Dixon 2014) or
  Praat's autocorrelation method (``parselmouth``; Boersma 1993); NaN marks unvoiced frames.
* ``f0_error`` / ``voicing_agreement``: relative f0 error (%) on voiced frames, and the share
  of frames whose voiced/unvoiced decisions agree.
* ``formant_tracks`` / ``formant_drift``: F1–F3 per frame with Praat's Burg LPC analysis, and
  their median relative change (%) between two versions of a signal.
* ``resample_track``: a track read at other frame times (nearest frame).

Tracks are ``(times_s, values)`` pairs: ``times_s`` of shape ``(frames,)`` in seconds (frame
centres), f0 in Hz of shape ``(frames,)``, formants in Hz of shape ``(n_formants, frames)``.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "METRICS",
    "estoi",
    "f0_error",
    "f0_track",
    "formant_drift",
    "formant_tracks",
    "pesq_nb",
    "pesq_wb",
    "resample_track",
    "score",
    "si_sdr",
    "stoi",
    "voicing_agreement",
]

#: metric names in table order
METRICS = ("SI-SDR", "PESQ-WB", "PESQ-NB", "STOI", "ESTOI")


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    if r.ndim != 1 or e.ndim != 1:
        raise ValueError(f"expected 1-D waveforms (time,), got {r.shape} and {e.shape}")
    n = min(r.size, e.size)
    if n == 0:
        raise ValueError("empty signal")
    return r[:n], e[:n]


def si_sdr(reference, estimate, zero_mean: bool = True) -> float:
    """Scale-invariant SDR in dB.

    ``SI-SDR = 10 log10(|a s|^2 / |a s - e|^2)`` with ``a = <e, s> / |s|^2`` (the projection of
    the estimate on the reference). Returns ``inf`` for a perfect (scaled) estimate.

    Raises:
        ValueError: empty or non-1-D input, or an all-zero reference.

    References:
        Le Roux, Wisdom, Erdogan, Hershey, "SDR - half-baked or well done?", ICASSP 2019.
    """
    s, e = _pair(reference, estimate)
    if zero_mean:
        s, e = s - s.mean(), e - e.mean()
    energy = np.dot(s, s)
    if energy == 0:
        raise ValueError("SI-SDR is undefined for an all-zero reference")
    target = (np.dot(e, s) / energy) * s
    err = e - target
    num, den = np.dot(target, target), np.dot(err, err)
    if den == 0:
        return float("inf")
    if num == 0:
        return float("-inf")
    return float(10 * np.log10(num / den))


def _pesq(reference, estimate, sample_rate: int, mode: str) -> float:
    from pesq import pesq as _p

    s, e = _pair(reference, estimate)
    if mode == "wb" and sample_rate != 16000:
        raise ValueError("PESQ-WB needs 16 kHz signals")
    if sample_rate not in (8000, 16000):
        raise ValueError("PESQ needs 8 or 16 kHz signals")
    return float(_p(sample_rate, s, e, mode))


def pesq_wb(reference, estimate, sample_rate: int = 16000) -> float:
    """PESQ wide-band, ITU-T P.862.2 (MOS-LQO, about 1.04 to 4.64); 16 kHz only."""
    return _pesq(reference, estimate, sample_rate, "wb")


def pesq_nb(reference, estimate, sample_rate: int = 16000) -> float:
    """PESQ narrow-band, ITU-T P.862 + P.862.1 mapping (MOS-LQO); 8 or 16 kHz."""
    return _pesq(reference, estimate, sample_rate, "nb")


def stoi(reference, estimate, sample_rate: int = 16000) -> float:
    """STOI (Taal et al., IEEE TASLP 2011), in [0, 1] for typical signals."""
    from pystoi import stoi as _s

    s, e = _pair(reference, estimate)
    return float(_s(s, e, sample_rate, extended=False))


def estoi(reference, estimate, sample_rate: int = 16000) -> float:
    """Extended STOI (Jensen & Taal, IEEE/ACM TASLP 2016)."""
    from pystoi import stoi as _s

    s, e = _pair(reference, estimate)
    return float(_s(s, e, sample_rate, extended=True))


def score(reference, estimate, sample_rate: int = 16000) -> dict[str, float]:
    """All of :data:`METRICS` as a dict; a PESQ value that cannot be computed (e.g. no
    utterance detected by the PESQ VAD) is NaN."""
    out = {"SI-SDR": si_sdr(reference, estimate)}
    for name, fn in (("PESQ-WB", pesq_wb), ("PESQ-NB", pesq_nb)):
        try:
            out[name] = fn(reference, estimate, sample_rate)
        except Exception:  # noqa: BLE001 -- pesq raises NoUtterancesError / BufferTooShortError
            out[name] = float("nan")
    out["STOI"] = stoi(reference, estimate, sample_rate)
    out["ESTOI"] = estoi(reference, estimate, sample_rate)
    return out


# -- pitch and formants ----------------------------------------------------------------------

#: f0 trackers of :func:`f0_track`
F0_METHODS = ("pyin", "praat")


def _mono(waveform, sample_rate: int, min_s: float = 0.0) -> np.ndarray:
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D waveform (time,), got shape {x.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform contains NaN or infinite samples")
    if x.size < max(1, min_s * sample_rate):
        raise ValueError(f"waveform too short: {x.size} samples, the analysis needs at least "
                         f"{min_s:.3f} s ({int(np.ceil(min_s * sample_rate))} samples)")
    return x


def _parselmouth():
    try:
        import parselmouth
    except ImportError:
        raise ImportError("Praat measures need the 'praat-parselmouth' package: "
                          "pip install speechvae[editing] (or pip install "
                          "praat-parselmouth)") from None
    return parselmouth


def _unvoiced(track: np.ndarray) -> np.ndarray:
    """NaN, zero and negative values all mean 'unvoiced' (laryngograph files use 0)."""
    return ~(np.isfinite(track) & (track > 0))


def f0_track(waveform, sample_rate: int, method: str = "pyin", fmin: float = 60.0,
             fmax: float = 500.0, hop_s: float = 0.01,
             frame_s: float = 0.064) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency per frame.

    * ``"pyin"``: probabilistic YIN with Viterbi voicing decisions (``librosa.pyin``), frames
      of ``frame_s`` (rounded up to a power of two in samples; 1024 at 16 kHz) centred at
      ``k * hop``. Its pitch states are 0.1 semitone apart (librosa's default), so values are
      quantised to about 0.58 %: errors below about 0.3 % are not resolved.
    * ``"praat"``: Praat's autocorrelation method (``Sound: To Pitch (ac)``) with its
      default voicing and silence thresholds; frames centred as Praat places them (the
      first one about half a window after the start). Values are interpolated, not
      quantised.

    Args:
        waveform: shape ``(time,)``.
        sample_rate: in Hz.
        method: ``"pyin"`` or ``"praat"``.
        fmin, fmax: search range in Hz.
        hop_s: frame step in seconds.
        frame_s: pyin analysis frame in seconds (Praat sets its window from ``fmin``).

    Returns:
        ``(times_s, f0_hz)``, both of shape ``(frames,)``: frame centres in seconds and f0 in
        Hz, NaN on unvoiced frames. Silence gives an all-NaN track.

    Raises:
        ValueError: not 1-D, NaN/inf samples, an unknown method, ``fmin >= fmax``, or a
            signal shorter than one analysis window.
        ImportError: librosa (pyin) or praat-parselmouth (praat) is missing.

    References:
        Mauch & Dixon, "pYIN: a fundamental frequency estimator using probabilistic
        threshold distributions", ICASSP 2014. Boersma, "Accurate short-term analysis of the
        fundamental frequency and the harmonics-to-noise ratio of a sampled sound", IFA
        Proceedings 17, 1993.
    """
    if method not in F0_METHODS:
        raise ValueError(f"unknown f0 method {method!r}; choose from {F0_METHODS}")
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
    hop = max(1, round(hop_s * sample_rate))
    if method == "pyin":
        try:
            import librosa
        except ImportError:
            raise ImportError("pyin needs the 'librosa' package: pip install librosa") from None
        frame = 1 << int(np.ceil(np.log2(frame_s * sample_rate)))
        x = _mono(waveform, sample_rate, frame / sample_rate / 2)
        f0, _, _ = librosa.pyin(x.astype(np.float32), fmin=fmin, fmax=fmax, sr=sample_rate,
                                frame_length=frame, hop_length=hop, center=True)
        f0 = np.asarray(f0, dtype=np.float64)
        return np.arange(f0.size) * hop / sample_rate, f0
    pm = _parselmouth()
    x = _mono(waveform, sample_rate, 3.0 / fmin)  # Praat's window: 3 periods of fmin
    pitch = pm.Sound(x, sampling_frequency=sample_rate).to_pitch_ac(
        time_step=hop / sample_rate, pitch_floor=fmin, pitch_ceiling=fmax)
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    f0[f0 <= 0] = np.nan
    return np.asarray(pitch.xs(), dtype=np.float64), f0


def resample_track(times_s, values, query_times_s) -> np.ndarray:
    """Read a track at other frame times: the value of the nearest frame.

    Nearest-frame reading keeps voiced/unvoiced decisions (NaN) as they are; queries more
    than half a frame step outside the track give NaN.

    Args:
        times_s: frame centres of the track, increasing, shape ``(frames,)``.
        values: shape ``(frames,)`` or ``(channels, frames)`` (e.g. formants).
        query_times_s: shape ``(queries,)``.

    Returns:
        float64 array of shape ``(queries,)`` or ``(channels, queries)``.

    Raises:
        ValueError: ``values`` whose last axis differs from ``times_s``.
    """
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    q = np.asarray(query_times_s, dtype=np.float64)
    if v.shape[-1] != t.size:
        raise ValueError(f"{t.size} frame times but values of shape {v.shape}")
    if t.size == 0:
        return np.full(v.shape[:-1] + q.shape, np.nan)
    idx = np.clip(np.searchsorted(t, q), 1, max(t.size - 1, 1))
    left = np.clip(idx - 1, 0, t.size - 1)
    right = np.clip(idx, 0, t.size - 1)
    nearest = np.where(np.abs(q - t[left]) <= np.abs(t[right] - q), left, right)
    half = 0.5 * (np.median(np.diff(t)) if t.size > 1 else 0.0)
    out = v[..., nearest].copy()
    outside = (q < t[0] - half - 1e-9) | (q > t[-1] + half + 1e-9)
    out[..., outside] = np.nan
    return out


def f0_error(f0_est, f0_target, gross_threshold: float = 0.2) -> dict:
    """Relative f0 error of an estimated track against a target, on frames voiced in the
    estimate.

    ``error_t = 100 * |f0_est_t - f0_target_t| / f0_target_t`` on the frames where the
    estimate is voiced and the target defined (frames unvoiced in a target track are left
    out). Voicing errors are measured apart, by :func:`voicing_agreement`.

    Args:
        f0_est: estimated f0 in Hz, shape ``(frames,)``; NaN or <= 0 means unvoiced.
        f0_target: a constant target in Hz (e.g. 200.0), or a track of the same shape as
            ``f0_est``.
        gross_threshold: relative error above which a frame counts as a gross error.

    Returns:
        dict with ``median_pct`` and ``mean_pct`` (relative error, %), ``gross_pct`` (%
        of the used frames with an error above ``gross_threshold``), ``n_frames`` (frames
        used) and ``voiced_share`` (share of estimate frames that are voiced). The error
        values are NaN when no frame is usable.

    Raises:
        ValueError: a target track of another shape, or a constant target <= 0.
    """
    est = np.asarray(f0_est, dtype=np.float64)
    tgt = np.asarray(f0_target, dtype=np.float64)
    if tgt.ndim == 0:
        if not (np.isfinite(tgt) and tgt > 0):
            raise ValueError(f"a constant f0 target must be positive, got {float(tgt)}")
        tgt = np.full(est.shape, float(tgt))
    elif tgt.shape != est.shape:
        raise ValueError(f"f0 target of shape {tgt.shape} does not match the estimate "
                         f"{est.shape}; give a constant or a track on the same frames")
    use = ~_unvoiced(est) & ~_unvoiced(tgt)
    rel = np.abs(est[use] - tgt[use]) / tgt[use]
    n = int(rel.size)
    voiced_share = float(np.mean(~_unvoiced(est))) if est.size else float("nan")
    if n == 0:
        return {"median_pct": float("nan"), "mean_pct": float("nan"),
                "gross_pct": float("nan"), "n_frames": 0, "voiced_share": voiced_share}
    return {"median_pct": float(100 * np.median(rel)), "mean_pct": float(100 * np.mean(rel)),
            "gross_pct": float(100 * np.mean(rel > gross_threshold)), "n_frames": n,
            "voiced_share": voiced_share}


def voicing_agreement(f0_a, f0_b) -> float:
    """Share of frames (in [0, 1]) on which two f0 tracks make the same voiced/unvoiced
    decision (NaN or <= 0 is unvoiced).

    Args:
        f0_a, f0_b: f0 tracks in Hz on the same frames, shape ``(frames,)``.

    Returns:
        the agreement; NaN for empty tracks.

    Raises:
        ValueError: tracks of different shapes (read one at the other's frame times with
            :func:`resample_track` first).
    """
    a = np.asarray(f0_a, dtype=np.float64)
    b = np.asarray(f0_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"f0 tracks of shapes {a.shape} and {b.shape}: put them on the same "
                         "frames first (resample_track)")
    if a.size == 0:
        return float("nan")
    return float(np.mean(_unvoiced(a) == _unvoiced(b)))


def formant_tracks(waveform, sample_rate: int, max_formant: float = 5500.0, n: int = 3,
                   hop_s: float = 0.01, window_s: float = 0.025,
                   max_number_of_formants: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Formant frequencies per frame with Praat's Burg LPC analysis
    (``Sound: To Formant (burg)``).

    The signal is resampled (inside Praat) to twice ``max_formant``, pre-emphasised from
    50 Hz and analysed with ``max_number_of_formants`` formants in a Gaussian window of
    effective length ``window_s`` (Praat's "window length"; the window is twice as long).
    Use ``max_formant`` about 5000 Hz for men and 5500 Hz for women and children (Praat's
    advice). Burg formants are biased towards harmonics when f0 is high (F1 of high-pitched
    voices especially); compare like with like.

    Args:
        waveform: shape ``(time,)``.
        sample_rate: in Hz.
        max_formant: formant ceiling in Hz.
        n: number of formants returned (F1..Fn).
        hop_s: frame step in seconds.
        window_s: Praat's window length in seconds.
        max_number_of_formants: formants searched below ``max_formant`` (LPC order twice it).

    Returns:
        ``(times_s, formants_hz)``: frame centres of shape ``(frames,)`` and frequencies of
        shape ``(n, frames)`` in Hz, NaN where a formant is not found (e.g. in silence).

    Raises:
        ValueError: not 1-D, NaN/inf samples, ``n`` larger than ``max_number_of_formants``,
            or a signal shorter than the analysis window.
        ImportError: praat-parselmouth is missing.

    References:
        Praat manual, "Sound: To Formant (burg)..." (Boersma & Weenink); Childers (ed.),
        "Modern spectrum analysis", IEEE Press, 1978 (the Burg algorithm).
    """
    if not 1 <= n <= max_number_of_formants:
        raise ValueError(f"n must be in [1, max_number_of_formants={max_number_of_formants}],"
                         f" got {n}")
    pm = _parselmouth()
    from parselmouth.praat import call

    x = _mono(waveform, sample_rate, 2 * window_s)
    fm = pm.Sound(x, sampling_frequency=sample_rate).to_formant_burg(
        time_step=hop_s, max_number_of_formants=max_number_of_formants,
        maximum_formant=max_formant, window_length=window_s, pre_emphasis_from=50.0)
    values = np.stack([np.asarray(call(fm, "To Matrix", i).values[0], dtype=np.float64)
                       for i in range(1, n + 1)])
    values[~(np.isfinite(values) & (values > 0))] = np.nan
    return np.asarray(fm.xs(), dtype=np.float64), values


def formant_drift(before, after, voiced_mask=None) -> dict:
    """Median relative change (%) of each formant between two versions of a signal.

    ``drift_i = median_t 100 * |F_i,after(t) - F_i,before(t)| / F_i,before(t)`` over the
    frames of ``voiced_mask`` on which both values exist. A pitch edit that leaves the vocal
    tract alone should give small values; the Burg measurement itself moves with f0 (see
    :func:`formant_tracks`), so read the values against a no-edit copy-synthesis control.

    Args:
        before, after: formant tracks in Hz of shape ``(n_formants, frames)`` on the same
            frames (from :func:`formant_tracks`).
        voiced_mask: bool array of shape ``(frames,)``, the frames to use (typically voiced
            in both signals); ``None`` uses all frames.

    Returns:
        dict ``{"F1": pct, ..., "Fn": pct, "n_frames": frames used for F1}``; a formant with
        no usable frame gives NaN.

    Raises:
        ValueError: shapes that differ, or a mask of the wrong length.
    """
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.ndim == 1 and a.ndim == 1:  # one formant track
        b, a = b[None], a[None]
    if a.shape != b.shape or b.ndim != 2:
        raise ValueError(f"formant tracks of shapes {b.shape} and {a.shape}; expected the "
                         "same (n_formants, frames)")
    mask = np.ones(b.shape[1], bool) if voiced_mask is None else np.asarray(voiced_mask, bool)
    if mask.shape != (b.shape[1],):
        raise ValueError(f"voiced_mask of shape {mask.shape} for {b.shape[1]} frames")
    out: dict = {}
    n_first = 0
    for i in range(b.shape[0]):
        use = mask & ~_unvoiced(b[i]) & ~_unvoiced(a[i])
        rel = np.abs(a[i, use] - b[i, use]) / b[i, use]
        out[f"F{i + 1}"] = float(100 * np.median(rel)) if rel.size else float("nan")
        if i == 0:
            n_first = int(rel.size)
    out["n_frames"] = n_first
    return out
