"""Griffin–Lim phase reconstruction (fast Griffin–Lim with momentum), on CPU via librosa.

References:
    Griffin & Lim, "Signal estimation from modified short-time Fourier transform",
    IEEE TASSP 1984. Perraudin, Balazs, Søndergaard, "A fast Griffin-Lim algorithm",
    WASPAA 2013 (the momentum term).

A batched torch implementation for GPU is not included: no GPU was available to show that it
is faster than librosa on CPU (the rule is to add it only if measurably faster).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..stft import DEFAULT_STFT, STFTConfig, _window
from .base import Vocoder, register_vocoder, require_librosa

__all__ = ["GriffinLim", "GriffinLimConfig"]


@dataclass(frozen=True)
class GriffinLimConfig:
    """Griffin–Lim settings.

    Attributes:
        n_iter: iterations.
        momentum: fast Griffin–Lim momentum (0 gives the original algorithm).
        init: ``"random"`` (uniform random phase, seeded) or ``"zeros"``.
        seed: seed of the random initial phase.
    """

    n_iter: int = 32
    momentum: float = 0.99
    init: str = "random"
    seed: int = 0


@register_vocoder("griffin-lim")
class GriffinLim(Vocoder):
    """Fast Griffin–Lim from a power spectrogram (magnitude = sqrt(power)).

    Uses the toolkit's STFT settings (window passed to librosa as an array, centred frames),
    so its output matches :func:`speechvae.stft.istft` conventions.

    Args:
        config: :class:`GriffinLimConfig`.
        stft_config: STFT the spectrogram was computed with.

    Shape:
        ``(batch, freq, time)`` -> ``(batch, samples)`` (or without batch), float32.
    """

    def __init__(self, config: GriffinLimConfig = GriffinLimConfig(),
                 stft_config: STFTConfig = DEFAULT_STFT, **overrides):
        if overrides:
            import dataclasses

            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.stft_config = stft_config
        self.sample_rate = stft_config.sample_rate

    def _synthesize(self, power: torch.Tensor, length: int | None) -> torch.Tensor:
        librosa = require_librosa()
        c, s = self.config, self.stft_config
        if power.shape[1] != s.n_freq:
            raise ValueError(f"power has {power.shape[1]} frequency bins, the STFT gives "
                             f"{s.n_freq}")
        window = _window(s, dtype=torch.float64).numpy()
        magnitude = power.detach().cpu().double().sqrt().numpy()
        if length is None:
            length = (power.shape[-1] - 1) * s.hop_length
        out = []
        for i, mag in enumerate(magnitude):
            # one seed per batch item, so batched output equals one-by-one output
            rng = np.random.default_rng(c.seed)
            y = librosa.griffinlim(mag, n_iter=c.n_iter, hop_length=s.hop_length,
                                   win_length=s.n_fft, n_fft=s.n_fft, window=window,
                                   center=True, length=length, pad_mode="reflect",
                                   momentum=c.momentum,
                                   init=None if c.init == "zeros" else c.init,
                                   random_state=rng)
            out.append(torch.from_numpy(np.asarray(y, dtype=np.float32)))
        return torch.stack(out)
