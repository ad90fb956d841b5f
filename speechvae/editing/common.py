"""Names shared by the subspace learning (:mod:`.subspaces`) and the edits
(:mod:`.transforms`, :mod:`.envelope`), kept here so that neither of those imports the other
for them: the factor names and the frame-wise f0 of a waveform.
"""
from __future__ import annotations

import numpy as np

from ..stft import STFTConfig

__all__ = ["FACTORS", "frame_f0"]

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
