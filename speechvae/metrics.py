"""Objective quality and intelligibility measures, each named exactly.

* ``si_sdr``: scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019),
  computed here (a few lines of NumPy).
* ``pesq_wb`` / ``pesq_nb``: PESQ wide-band (ITU-T P.862.2, MOS-LQO) and narrow-band
  (P.862 with the P.862.1 mapping), from the ``pesq`` package.
* ``stoi`` / ``estoi``: short-time objective intelligibility (Taal et al. 2011) and extended
  STOI (Jensen & Taal 2016), from ``pystoi``.

All take ``reference`` and ``estimate`` waveforms of shape ``(time,)`` at ``sample_rate`` Hz.
Signals of different lengths are cut to the shorter one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "estoi", "pesq_nb", "pesq_wb", "score", "si_sdr", "stoi"]

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
