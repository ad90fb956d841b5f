"""Speech from a prior: resynthesis of a clean recording and generation from ``p(z)``.

* :func:`resynthesize` encodes a clean waveform (posterior mean of ``q(z | power)``),
  decodes it to a power spectrogram (the speech variance ``v``, i.e. the expected ``|S|^2``)
  and makes a waveform with the input's own phase (``"oracle"``) or a vocoder.
* :func:`generate` draws ``z ~ p(z)`` frame by frame through the prior interface, decodes and
  vocodes.

Waveforms are ``(time,)`` float32 at the prior's STFT rate (16 kHz by default).
"""
from __future__ import annotations

import numpy as np
import torch

from .audio import check_waveform, resample
from .priors.base import Prior
from .stft import istft, num_frames, stft
from .vocoders import Vocoder, get_vocoder

__all__ = ["PHASES", "generate", "resynthesize"]

#: phase choices of :func:`resynthesize`: the input's phase, or a vocoder name
PHASES = ("oracle", "griffin-lim", "waveglow")


def _vocoder(vocoder, prior: Prior, **kwargs) -> Vocoder:
    if isinstance(vocoder, Vocoder):
        return vocoder
    return get_vocoder(vocoder, stft_config=prior.stft_config, **kwargs)


@torch.no_grad()
def decode_power(prior: Prior, power: torch.Tensor) -> torch.Tensor:
    """Posterior-mean reconstruction: ``decode(mean of q(z | power))``, shape as ``power``
    ``(batch, freq, time)``, linear power units."""
    return prior.decode(prior.encode(power).mean)


@torch.no_grad()
def resynthesize(waveform: np.ndarray, sample_rate: int, prior: Prior,
                 phase: str | Vocoder = "oracle", vocoder_options: dict | None = None
                 ) -> np.ndarray:
    """Encode a clean waveform through the prior and decode it back to a waveform.

    The input is resampled to the prior's rate and peak-normalised before analysis (as for
    training); the output is scaled back by the same factor.

    Args:
        waveform: ``(time,)`` clean speech, full scale 1.
        sample_rate: its rate in Hz.
        prior: a loaded prior.
        phase: ``"oracle"`` (decoded magnitude with the input's STFT phase), a registered
            vocoder name (``"griffin-lim"``, ``"waveglow"``) or a :class:`Vocoder`.
        vocoder_options: keyword options of the vocoder (e.g. ``checkpoint`` for WaveGlow).

    Returns:
        float32 ``(time,)`` at ``prior.stft_config.sample_rate``, as long as the resampled
        input.

    Raises:
        AudioError: empty, silent or non-finite input.
        KeyError: unknown phase / vocoder name.
    """
    cfg = prior.stft_config
    x = resample(check_waveform(waveform, "input"), sample_rate, cfg.sample_rate)
    peak = float(np.max(np.abs(x)))
    device = next(prior.parameters()).device
    xt = torch.from_numpy(x / peak).to(device=device, dtype=torch.float32)
    spec = stft(xt, cfg)
    power = decode_power(prior, spec.abs().square()[None])[0]
    if phase == "oracle":
        y = istft(torch.sqrt(power) * torch.exp(1j * torch.angle(spec)), x.size, cfg)
    else:
        y = _vocoder(phase, prior, **(vocoder_options or {}))(power.cpu(), length=x.size)
    return (y.cpu().numpy() * peak).astype(np.float32)


@torch.no_grad()
def generate(prior: Prior, duration_s: float, seed: int = 0,
             vocoder: str | Vocoder = "griffin-lim", vocoder_options: dict | None = None
             ) -> np.ndarray:
    """Speech-like audio from the prior alone: ``z ~ p(z)`` (for the frame-wise VAE,
    ``z_t`` iid ``N(0, I)``), ``v = decode(z)``, then a vocoder.

    Args:
        prior: a loaded prior implementing ``sample_latent``.
        duration_s: output duration in seconds.
        seed: seed of the latent draw (and of the vocoder).
        vocoder: registered vocoder name or a :class:`Vocoder`.
        vocoder_options: keyword options of the vocoder.

    Returns:
        float32 ``(round(duration_s * rate),)`` at ``prior.stft_config.sample_rate``, peak
        0.5 (the prior models peak-normalised speech; its absolute level is arbitrary).

    Raises:
        ValueError: a duration shorter than one STFT frame, or a prior that cannot sample
            its latent prior.
    """
    cfg = prior.stft_config
    n = round(duration_s * cfg.sample_rate)
    if n < cfg.n_fft:
        raise ValueError(f"duration {duration_s} s is shorter than one STFT frame "
                         f"({cfg.n_fft / cfg.sample_rate:.3f} s)")
    g = torch.Generator(device=next(prior.parameters()).device).manual_seed(seed)
    try:
        z = prior.sample_latent(num_frames(n, cfg), batch=1, generator=g)
    except NotImplementedError as exc:
        raise ValueError(str(exc)) from None
    power = prior.decode(z)[0].cpu()
    options = dict(vocoder_options or {})
    if not isinstance(vocoder, Vocoder) and vocoder == "griffin-lim":
        options.setdefault("seed", seed)
    y = _vocoder(vocoder, prior, **options)(power, length=n).numpy()
    peak = float(np.max(np.abs(y)))
    return (0.5 * y / peak if peak > 0 else y).astype(np.float32)
