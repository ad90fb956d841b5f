"""Synthetic test signals shared by the benchmarks (timings do not depend on the content)."""
from __future__ import annotations

import numpy as np

SR = 16000


def speech_like(seconds: float, seed: int, noise: float = 0.3, sample_rate: int = SR
                ) -> np.ndarray:
    """A harmonic signal with a seeded f0 (100–180 Hz) and vibrato, a 4-Hz syllable envelope
    and white noise of standard deviation ``noise`` (relative to the harmonic peak).

    Returns:
        float32 ``(round(seconds * sample_rate),)`` with peak 0.5.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f0 = 100 + 80 * rng.random()
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * (0.3 + rng.random()) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20) if k * f0 < sample_rate / 2)
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    x = x / np.max(np.abs(x)) + noise * rng.standard_normal(t.size)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)
