"""The vocoder interface and registry.

A vocoder turns a power spectrogram (linear power units, ``|X|**2``) back into a waveform.
Every vocoder is called the same way, so the CLI and the editing code pick one by name
(``get_vocoder("griffin-lim")``) without an if/elif chain.

Shape:
    - input ``power``: ``(batch, freq, time)`` or ``(freq, time)``, ``freq = n_fft // 2 + 1``
      of the STFT the vocoder was built for (the toolkit default: 513 bins at 16 kHz).
    - output waveform: ``(batch, samples)`` or ``(samples,)`` at :attr:`Vocoder.sample_rate`.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..registry import ClassRegistry

__all__ = ["Vocoder", "available_vocoders", "get_vocoder", "register_vocoder"]

_REGISTRY = ClassRegistry("vocoder")


class Vocoder:
    """Base class: power spectrogram -> waveform.

    Attributes:
        sample_rate: rate in Hz of the returned waveforms.
        config: the vocoder's frozen config dataclass.
    """

    name: str = ""
    sample_rate: int

    def __call__(self, power, length: int | None = None) -> torch.Tensor:
        """Waveform(s) from a power spectrogram.

        Args:
            power: tensor or array ``(batch, freq, time)`` or ``(freq, time)``, linear power.
            length: number of output samples at :attr:`sample_rate` (default: the vocoder's
                natural length, ``(time - 1) * hop`` for centred frames).

        Returns:
            float32 tensor ``(batch, samples)`` or ``(samples,)``.
        """
        p = torch.as_tensor(np.asarray(power) if not torch.is_tensor(power) else power)
        if p.ndim not in (2, 3):
            raise TypeError(f"power must have shape (batch, freq, time) or (freq, time), "
                            f"got {tuple(p.shape)}")
        if not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError("power spectrogram must be finite and non-negative")
        single = p.ndim == 2
        out = self._synthesize(p[None] if single else p, length)
        return out[0] if single else out

    def _synthesize(self, power: torch.Tensor, length: int | None) -> torch.Tensor:
        """``(batch, freq, time)`` -> ``(batch, samples)``; implemented by subclasses."""
        raise NotImplementedError


def register_vocoder(name: str) -> Callable[[type[Vocoder]], type[Vocoder]]:
    """Class decorator adding a vocoder to the registry under ``name``."""
    return _REGISTRY.register(name)


def get_vocoder(name: str, **kwargs) -> Vocoder:
    """Build the vocoder registered as ``name`` with keyword options (see each class).

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    return _REGISTRY.get(name)(**kwargs)


def available_vocoders() -> list[str]:
    """Names of the registered vocoders."""
    return _REGISTRY.names()


def require_librosa():
    """Import librosa lazily, with an ImportError saying what to install."""
    try:
        import librosa
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("librosa is needed for Griffin-Lim and the WaveGlow mel bridge: "
                          "pip install speechvae[editing]") from exc
    return librosa
