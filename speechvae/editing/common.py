"""Names shared by the subspace learning (:mod:`.subspaces`) and the edits
(:mod:`.transforms`, :mod:`.envelope`), kept here so that neither of those imports the other
for them: the factor names, the frame-wise f0 of a waveform and the voicing decision of the
frames an f0 edit rebuilds.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..stft import STFTConfig

__all__ = ["FACTORS", "VOICING_METHODS", "edit_voicing", "frame_f0", "harvest_f0",
           "import_pyworld"]

#: voicing decisions of the relative f0 edit (:func:`edit_voicing`)
VOICING_METHODS = ("praat", "praat+harvest")

#: the source–filter factors, in the order i = 0..3 of Sadok et al. (Speech Communication 2023)
FACTORS = ("f0", "F1", "F2", "F3")


def frame_f0(waveform: np.ndarray, stft_config: STFTConfig, pitch_floor: float = 60.0,
             pitch_ceiling: float = 500.0) -> np.ndarray:
    """f0 at the STFT frame centres (``t * hop / rate`` s) by Praat's autocorrelation
    method (Boersma, IFA Proceedings 1993; :func:`speechvae.metrics.f0_track`), NaN on
    unvoiced frames.

    Args:
        waveform: ``(time,)`` at ``stft_config.sample_rate``.
        stft_config: gives the rate, hop and number of frames (centred frames).
        pitch_floor, pitch_ceiling: search range (Hz).

    Returns:
        ``(frames,)`` float64, Hz or NaN.
    """
    from ..metrics import f0_track, resample_track

    sr, hop = stft_config.sample_rate, stft_config.hop_length
    times, f0 = f0_track(waveform, sr, method="praat", fmin=pitch_floor, fmax=pitch_ceiling,
                         hop_s=hop / sr)
    return resample_track(times, f0, np.arange(waveform.size // hop + 1) * hop / sr)


def import_pyworld(purpose: str, alternative: str | None = None):
    """The ``pyworld`` module (WORLD, Morise et al. 2016), imported without the
    ``pkg_resources`` deprecation warning that pyworld 0.3.5 raises.

    Raises:
        ImportError: ``pyworld`` is missing; the one-line message names ``purpose``, the
            install command and ``alternative`` (a setting that needs no pyworld), if given.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyworld
    except ImportError:
        raise ImportError(f"{purpose} needs the 'pyworld' package: pip install "
                          "speechvae[editing-bench] (or pip install 'setuptools<81' pyworld)"
                          + (f", or {alternative}" if alternative else "")) from None
    return pyworld


def harvest_f0(waveform: np.ndarray, stft_config: STFTConfig, pitch_floor: float = 60.0,
               pitch_ceiling: float = 500.0) -> np.ndarray:
    """f0 at the STFT frame centres by WORLD's Harvest (Morise, Interspeech 2017;
    ``pyworld``), NaN on unvoiced frames. Harvest runs on a 5 ms grid and is read at the
    nearest grid point.

    Args:
        waveform: ``(time,)`` at ``stft_config.sample_rate``.
        stft_config: gives the rate, hop and number of frames (centred frames).
        pitch_floor, pitch_ceiling: search range (Hz).

    Returns:
        ``(frames,)`` float64, Hz or NaN.

    Raises:
        ImportError: ``pyworld`` is missing (``pip install speechvae[editing]``).
    """
    pyworld = import_pyworld("the Harvest voicing", "EditConfig(voicing='praat')")
    sr, hop = stft_config.sample_rate, stft_config.hop_length
    x = np.ascontiguousarray(waveform, dtype=np.float64)
    f0, _ = pyworld.harvest(x, sr, f0_floor=pitch_floor, f0_ceil=pitch_ceiling,
                            frame_period=5.0)
    times = np.arange(x.size // hop + 1) * hop / sr
    idx = np.clip(np.round(times / 0.005).astype(int), 0, f0.size - 1)
    out = f0[idx].astype(np.float64)
    out[out <= 0] = np.nan
    return out


def edit_voicing(f0: np.ndarray, frame_s: float, other: np.ndarray | None = None,
                 max_gap_s: float = 0.0) -> np.ndarray:
    """The f0 track of the frames an f0 edit rebuilds: ``f0`` (the Praat track, NaN
    unvoiced) where it is voiced, ``other`` (a second tracker's track on the same frames,
    e.g. :func:`harvest_f0`) where only that one calls a frame voiced, within a voiced run
    (of either) that contains a frame voiced in ``f0`` (isolated runs of the second
    tracker, e.g. Harvest on noise, are left out), and the log f0 interpolated across
    unvoiced gaps of at most ``max_gap_s`` between voiced frames.

    A tracker that calls a frame voiced which the edit leaves at the input's pitch sees a
    jump between the target and the input's f0 there, and a Viterbi tracker (pyin) then
    loses the edited track; rebuilding every frame that either tracker calls voiced keeps
    the edited signal voiced where the input is.

    Args:
        f0: ``(frames,)`` Hz, NaN unvoiced.
        frame_s: frame step (s).
        other: ``(frames,)`` Hz, NaN unvoiced, or None.
        max_gap_s: longest unvoiced gap (s) that is filled.

    Returns:
        ``(frames,)`` float64, Hz or NaN; voiced wherever ``f0`` is.

    Raises:
        ValueError: ``other`` of another length, or a negative ``max_gap_s``.
    """
    out = np.array(f0, dtype=np.float64)
    if max_gap_s < 0:
        raise ValueError(f"max_gap_s must be >= 0, got {max_gap_s}")
    if other is not None:
        other = np.asarray(other, dtype=np.float64)
        if other.shape != out.shape:
            raise ValueError(f"voicing tracks differ in length: {out.shape} and {other.shape}")
        take = ~np.isfinite(out) & np.isfinite(other) & (other > 0)
        union = take | np.isfinite(out)
        # keep the second tracker's frames only in voiced runs that Praat's voicing touches
        edges = np.flatnonzero(np.diff(np.concatenate([[0], union.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            if not np.isfinite(out[start:stop]).any():
                take[start:stop] = False
        out[take] = other[take]
    voiced = np.flatnonzero(np.isfinite(out))
    if max_gap_s > 0 and voiced.size > 1:
        max_gap = int(np.floor(max_gap_s / frame_s + 1e-9))
        for a, b in itertools.pairwise(voiced):
            if 1 < b - a <= max_gap + 1:
                k = np.arange(a + 1, b)
                out[k] = np.exp(np.interp(k, [a, b], np.log([out[a], out[b]])))
    return out
