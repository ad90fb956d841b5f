"""Short-time Fourier transform with the toolkit's frozen analysis settings.

Every prior in speechvae is trained on power spectrograms computed with one
:class:`STFTConfig`; checkpoints store it and loading checks it, so a prior is never fed
spectrograms of a different resolution.

Shapes: waveforms ``(time,)`` or ``(batch, time)``; complex spectrograms and power
spectrograms ``(freq, time)`` or ``(batch, freq, time)`` with ``freq = n_fft // 2 + 1``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

__all__ = ["DEFAULT_STFT", "STFTConfig", "istft", "num_frames", "power_spectrogram", "stft"]


@dataclass(frozen=True)
class STFTConfig:
    """STFT settings (sizes in samples, rate in Hz).

    The default is the one of Leglaive et al. (2018) and Bie et al. (2022): 64 ms sine
    window, 75 % overlap, at 16 kHz, giving 513 frequency bins and 16 ms frames.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    window: str = "sine"

    @property
    def n_freq(self) -> int:
        """Number of frequency bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def frame_s(self) -> float:
        """Hop between frames in seconds."""
        return self.hop_length / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> STFTConfig:
        return cls(**d)


DEFAULT_STFT = STFTConfig()


def _window(config: STFTConfig, device=None, dtype=torch.float32) -> torch.Tensor:
    n = config.n_fft
    if config.window == "sine":
        # sin(pi (k + 1/2) / N): its square sums to a constant at 50 % and 75 % overlap.
        k = torch.arange(n, device=device, dtype=torch.float64)
        return torch.sin(math.pi * (k + 0.5) / n).to(dtype)
    if config.window == "hann":
        return torch.hann_window(n, periodic=True, device=device, dtype=dtype)
    raise ValueError(f"unknown STFT window {config.window!r}; expected 'sine' or 'hann'")


def num_frames(num_samples: int, config: STFTConfig = DEFAULT_STFT) -> int:
    """Number of STFT frames for a signal of ``num_samples`` samples (centred frames)."""
    return 1 + num_samples // config.hop_length


def stft(waveform: torch.Tensor, config: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Complex STFT of a waveform.

    Args:
        waveform: real tensor, shape ``(time,)`` or ``(batch, time)``.
        config: analysis settings.

    Returns:
        Complex tensor of shape ``(freq, frames)`` or ``(batch, freq, frames)``, with
        ``frames = 1 + time // hop_length`` (frames are centred, reflect-padded).

    Raises:
        ValueError: if the signal is shorter than one analysis window.
    """
    if waveform.shape[-1] < config.n_fft:
        raise ValueError(
            f"signal has {waveform.shape[-1]} samples, shorter than one STFT frame "
            f"({config.n_fft} samples)"
        )
    win = _window(config, waveform.device, waveform.dtype)
    return torch.stft(waveform, config.n_fft, config.hop_length, window=win, center=True,
                      pad_mode="reflect", return_complex=True)


def istft(spec: torch.Tensor, length: int, config: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Inverse STFT (weighted overlap-add), the exact inverse of :func:`stft`.

    Args:
        spec: complex tensor ``(freq, frames)`` or ``(batch, freq, frames)``.
        length: number of output samples.

    Returns:
        Real waveform, shape ``(length,)`` or ``(batch, length)``.
    """
    real_dtype = spec.real.dtype
    win = _window(config, spec.device, real_dtype)
    return torch.istft(spec, config.n_fft, config.hop_length, window=win, center=True,
                       length=length)


def power_spectrogram(waveform: torch.Tensor, config: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Power spectrogram ``|STFT|**2``, shape ``(..., freq, frames)``, linear power units."""
    return stft(waveform, config).abs().square()
