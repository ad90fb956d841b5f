"""WaveGlow as a :class:`~.base.Vocoder`: toolkit power spectrogram -> waveform."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import resample
from ..stft import DEFAULT_STFT, STFTConfig
from .base import Vocoder, register_vocoder
from .mel import power_to_waveglow_mel, target_length
from .waveglow import DEFAULT_WAVEGLOW, WaveGlow, WaveGlowConfig
from .waveglow_checkpoint import load_waveglow

__all__ = ["WaveGlowVocoder", "WaveGlowVocoderConfig"]


@dataclass(frozen=True)
class WaveGlowVocoderConfig:
    """Inference settings.

    Attributes:
        sigma: standard deviation of the latent at inference (the paper uses 0.6).
        seed: seed of the latent draw.
    """

    sigma: float = 0.6
    seed: int = 0


@register_vocoder("waveglow")
class WaveGlowVocoder(Vocoder):
    """WaveGlow vocoder fed through the mel bridge (:mod:`speechvae.vocoders.mel`).

    The model runs at its own rate (22.05 kHz for the public checkpoints) and its output is
    resampled with soxr to the spectrogram's rate, so :attr:`sample_rate` is
    ``stft_config.sample_rate`` (16 kHz by default).

    Args:
        checkpoint: WaveGlow checkpoint (ours or a public NVIDIA layout), or
        model: an already built :class:`WaveGlow`.
        config: :class:`WaveGlowVocoderConfig`.
        stft_config: STFT of the power spectrograms given to the vocoder.
        device: torch device of the model.

    Raises:
        ValueError: neither ``checkpoint`` nor ``model`` given.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None,
                 model: WaveGlow | None = None,
                 config: WaveGlowVocoderConfig = WaveGlowVocoderConfig(),
                 stft_config: STFTConfig = DEFAULT_STFT, device="cpu",
                 base_config: WaveGlowConfig = DEFAULT_WAVEGLOW):
        if model is None:
            if checkpoint is None:
                raise ValueError("the waveglow vocoder needs a checkpoint "
                                 "(--vocoder-checkpoint PATH)")
            model = load_waveglow(checkpoint, base_config)
        self.model = model.to(device).eval()
        self.config = config
        self.stft_config = stft_config
        self.sample_rate = stft_config.sample_rate
        self.device = device

    def _synthesize(self, power: torch.Tensor, length: int | None) -> torch.Tensor:
        s, wc = self.stft_config, self.model.config
        if length is None:
            length = (power.shape[-1] - 1) * s.hop_length
        mel = power_to_waveglow_mel(power, s, wc, num_samples=length).to(self.device)
        g = torch.Generator(device=self.device).manual_seed(self.config.seed)
        out = []
        for i in range(mel.shape[0]):  # one draw per item: batched == one by one
            g.manual_seed(self.config.seed)
            y = self.model.infer(mel[i: i + 1], self.config.sigma, generator=g)[0]
            y = y[: target_length(length, s, wc)].cpu().numpy().astype(np.float64)
            y = resample(y, wc.sample_rate, s.sample_rate)
            y = np.pad(y, (0, max(0, length - y.size)))[:length]
            out.append(torch.from_numpy(y.astype(np.float32)))
        return torch.stack(out)
