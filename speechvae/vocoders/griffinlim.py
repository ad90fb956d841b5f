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

__all__ = ["GriffinLim", "GriffinLimConfig", "griffin_lim_known_frames"]


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


def griffin_lim_known_frames(magnitude: torch.Tensor, initial: torch.Tensor,
                             known: torch.Tensor | None = None, n_iter: int = 32,
                             momentum: float = 0.99, length: int | None = None,
                             stft_config: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Fast Griffin–Lim from a given initial STFT, with some frames known exactly.

    Each iteration projects onto the STFT magnitudes (``magnitude`` on the free frames; the
    complex values of ``initial`` on the ``known`` frames, which are therefore kept, phase
    included) and onto consistent STFTs (STFT of the inverse STFT), with the momentum
    extrapolation of Perraudin et al. (2013). librosa's Griffin–Lim has neither an initial
    phase nor known frames, which latent editing needs: edited frames start from a phase
    that suits the edit and unedited frames keep the input's STFT.

    Args:
        magnitude: target magnitudes ``(freq, time)`` (``sqrt`` of a power spectrogram).
        initial: complex STFT ``(freq, time)``: its phase starts the free frames, its values
            are imposed on the known frames.
        known: boolean ``(time,)``, True where the frame is kept from ``initial`` (None: no
            known frame).
        n_iter: iterations (0 returns the inverse STFT of the initial estimate).
        momentum: fast Griffin–Lim momentum (0: the original algorithm).
        length: output samples (default ``(time - 1) * hop``).
        stft_config: the STFT of ``magnitude`` and ``initial``.

    Returns:
        float32 waveform ``(length,)``.

    References:
        Griffin & Lim, IEEE TASSP 1984; Perraudin, Balazs, Søndergaard, WASPAA 2013.
    """
    from ..stft import istft, stft

    if magnitude.shape != initial.shape or magnitude.dim() != 2:
        raise ValueError(f"magnitude and initial must both be (freq, time), got "
                         f"{tuple(magnitude.shape)} and {tuple(initial.shape)}")
    if length is None:
        length = (magnitude.shape[-1] - 1) * stft_config.hop_length
    magnitude = magnitude.to(torch.float32)
    initial = initial.to(torch.complex64)
    keep = (torch.zeros(magnitude.shape[-1], dtype=torch.bool, device=magnitude.device)
            if known is None else known.to(magnitude.device))

    def project_magnitude(spec: torch.Tensor) -> torch.Tensor:
        phase = spec / spec.abs().clamp_min(1e-12)
        return torch.where(keep, initial, magnitude * phase)

    estimate = project_magnitude(initial)
    previous = None
    for _ in range(n_iter):
        consistent = stft(istft(estimate, length, stft_config), stft_config)
        accelerated = (consistent if previous is None
                       else consistent + momentum * (consistent - previous))
        previous = consistent
        estimate = project_magnitude(accelerated)
    return istft(estimate, length, stft_config)
