"""Signal-processing references for pitch editing: WORLD and TD-PSOLA (DESIGN §5, step 6).

Both change f0 and, in principle, leave the spectral envelope (the formants) alone; they are
the baselines of the edit benchmark (``recipes/editing/benchmark.py``), as in Sadok et al.
(2023). Each takes a waveform and a sample rate and returns a waveform of the same length and
rate, with f0 set to a constant ``target_hz`` on voiced frames or scaled by ``semitones``;
unvoiced frames are left as they are.

* :func:`world_shift_f0`: WORLD vocoder analysis (Harvest f0, CheapTrick envelope, D4C
  aperiodicity) and resynthesis with the new f0 (``pyworld``;
  ``pip install speechvae[editing-bench]``).
* :func:`psola_shift_f0`: Praat's Manipulation (pitch-synchronous overlap-add,
  ``praat-parselmouth``; ``pip install speechvae[editing]``).

``F0_SHIFTERS`` maps the method names used in tables to these functions.

References:
    Morise, Yokomori & Ozawa, "WORLD: a vocoder-based high-quality speech synthesis system
    for real-time applications", IEICE Trans. Inf. Syst. E99-D(7), 2016; Morise, "Harvest",
    Interspeech 2017.
    Moulines & Charpentier, "Pitch-synchronous waveform processing techniques for
    text-to-speech synthesis using diphones", Speech Communication 9, 1990.
"""
from __future__ import annotations

import math

import numpy as np

from .common import import_pyworld

__all__ = ["F0_SHIFTERS", "psola_shift_f0", "world_shift_f0"]


def _new_f0(f0: np.ndarray, target_hz: float | None, semitones: float | None) -> np.ndarray:
    """Voiced values (> 0) replaced by ``target_hz`` or multiplied by ``2^(semitones/12)``;
    unvoiced values (0) kept."""
    voiced = f0 > 0
    if target_hz is not None:
        return np.where(voiced, float(target_hz), 0.0)
    return np.where(voiced, f0 * 2.0 ** (float(semitones) / 12.0), 0.0)


def _check(waveform, sample_rate: int, target_hz, semitones) -> np.ndarray:
    if (target_hz is None) == (semitones is None):
        raise ValueError("give exactly one of target_hz and semitones")
    if target_hz is not None and not (math.isfinite(target_hz) and target_hz > 0):
        raise ValueError(f"target_hz must be positive, got {target_hz}")
    if semitones is not None and not math.isfinite(semitones):
        raise ValueError(f"semitones must be finite, got {semitones}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform (time,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform contains NaN or infinite samples")
    return x


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    y = y[:n] if y.size >= n else np.pad(y, (0, n - y.size))
    return y.astype(np.float32)


def _pyworld():
    return import_pyworld("the WORLD baseline")


def world_shift_f0(waveform, sample_rate: int, target_hz: float | None = None,
                   semitones: float | None = None, *, fmin: float = 60.0,
                   fmax: float = 500.0, frame_period_ms: float = 5.0) -> np.ndarray:
    """Change f0 with the WORLD vocoder.

    Analysis: Harvest f0 (``fmin``..``fmax``), CheapTrick spectral envelope and D4C band
    aperiodicity every ``frame_period_ms``; the f0 of voiced frames is replaced by
    ``target_hz`` (or multiplied by ``2^(semitones/12)``), unvoiced frames stay unvoiced, and
    the signal is resynthesised with the original envelope and aperiodicity.

    Args:
        waveform: shape ``(time,)``.
        sample_rate: in Hz.
        target_hz: constant f0 in Hz for every voiced frame; or
        semitones: f0 shift in semitones (exactly one of the two).
        fmin, fmax: Harvest's f0 search range in Hz.
        frame_period_ms: analysis frame step in milliseconds.

    Returns:
        float32 waveform of shape ``(time,)`` at ``sample_rate`` (cut or zero-padded to the
        input length).

    Raises:
        ValueError: both or neither of ``target_hz`` and ``semitones``, a non-positive
            target, or a waveform that is not a finite non-empty 1-D array.
        ImportError: pyworld is missing.

    References:
        Morise et al., IEICE Trans. Inf. Syst. E99-D(7), 2016 (WORLD, CheapTrick, D4C);
        Morise, Interspeech 2017 (Harvest).
    """
    x = _check(waveform, sample_rate, target_hz, semitones)
    pw = _pyworld()
    x = np.ascontiguousarray(x)
    f0, times = pw.harvest(x, sample_rate, f0_floor=fmin, f0_ceil=fmax,
                           frame_period=frame_period_ms)
    envelope = pw.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pw.d4c(x, f0, times, sample_rate)
    y = pw.synthesize(np.ascontiguousarray(_new_f0(f0, target_hz, semitones)), envelope,
                      aperiodicity, sample_rate, frame_period_ms)
    return _fit(y, x.size)


def psola_shift_f0(waveform, sample_rate: int, target_hz: float | None = None,
                   semitones: float | None = None, *, fmin: float = 60.0,
                   fmax: float = 500.0, time_step_s: float = 0.01) -> np.ndarray:
    """Change f0 with Praat's pitch-synchronous overlap-add (TD-PSOLA).

    ``Sound: To Manipulation`` finds the glottal pulses (Praat's periodicity analysis,
    ``fmin``..``fmax``) and a pitch tier with points in the voiced stretches only; every point
    is set to ``target_hz`` (or multiplied by ``2^(semitones/12)``), the tier is put back and
    ``Get resynthesis (overlap-add)`` rebuilds the signal. Unvoiced stretches are copied.

    Args:
        waveform: shape ``(time,)``.
        sample_rate: in Hz.
        target_hz: constant f0 in Hz for the voiced stretches; or
        semitones: f0 shift in semitones (exactly one of the two).
        fmin, fmax: pitch range of the pulse analysis in Hz.
        time_step_s: time step of the pitch analysis in seconds.

    Returns:
        float32 waveform of shape ``(time,)`` at ``sample_rate``.

    Raises:
        ValueError: both or neither of ``target_hz`` and ``semitones``, a non-positive
            target, a waveform that is not a finite non-empty 1-D array, or one too short
            for the pitch analysis.
        ImportError: praat-parselmouth is missing.

    References:
        Moulines & Charpentier, Speech Communication 9, 1990; Praat manual, "Manipulation"
        (Boersma & Weenink).
    """
    x = _check(waveform, sample_rate, target_hz, semitones)
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError:
        raise ImportError("the PSOLA baseline needs 'praat-parselmouth': pip install "
                          "speechvae[editing] (or pip install praat-parselmouth)") from None
    if x.size < 3.0 / fmin * sample_rate:
        raise ValueError(f"waveform too short for the pitch analysis: {x.size} samples, "
                         f"needs {3.0 / fmin:.3f} s")
    sound = parselmouth.Sound(x, sampling_frequency=sample_rate)
    manipulation = call(sound, "To Manipulation", time_step_s, fmin, fmax)
    tier = call(manipulation, "Extract pitch tier")
    if target_hz is not None:
        call(tier, "Formula", repr(float(target_hz)))
    else:
        call(tier, "Multiply frequencies", sound.xmin, sound.xmax,
             2.0 ** (float(semitones) / 12.0))
    call([tier, manipulation], "Replace pitch tier")
    out = call(manipulation, "Get resynthesis (overlap-add)")
    return _fit(out.values[0], x.size)


#: the baselines by table name
F0_SHIFTERS = {"world": world_shift_f0, "psola": psola_shift_f0}
