"""NMF noise model and the M-step shared by the enhancement algorithms.

Mixture model (Leglaive, Girin, Horaud, MLSP 2018): ``x_ft | z ~ N_c(0, Vx_ft)`` with
``Vx = g_t v_ft(z) + (W H)_ft``; ``W`` of shape ``(batch, freq, rank)``, ``H`` of shape
``(batch, rank, time)``, per-frame gain ``g`` of shape ``(batch, 1, time)``.

Given samples ``v_r`` of the speech variance, the M-step decreases

    C(W, H, g) = sum_r sum_ft [ P_ft / Vx_r,ft + log Vx_r,ft ]

with the multiplicative majorisation-minimisation updates of the Itakura–Saito NMF (exponent
1/2; Févotte & Idier, Neural Computation 2011), which never increase C. Every quantity stays
positive.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NMFNoise", "init_nmf", "mixture_cost", "m_step"]

TINY = 1e-12


@dataclass
class NMFNoise:
    """NMF noise parameters and speech gain.

    Shapes: ``W (batch, freq, rank)``, ``H (batch, rank, time)``, ``g (batch, 1, time)``.
    """

    W: torch.Tensor
    H: torch.Tensor
    g: torch.Tensor

    def noise_variance(self) -> torch.Tensor:
        """``W H``, shape ``(batch, freq, time)``."""
        return self.W @ self.H


def init_nmf(power: torch.Tensor, rank: int, generator: torch.Generator | None = None,
             mask: torch.Tensor | None = None) -> NMFNoise:
    """Random positive initialisation scaled so that ``W H`` has the mean level of ``power``.

    Args:
        power: mixture power spectrogram ``(batch, freq, time)``.
        rank: NMF rank ``K``.
        mask: optional ``(batch, time)`` 0/1 of valid frames (padded frames get ``H = 0``).
    """
    b, f, t = power.shape
    dev, dt = power.device, power.dtype
    W = torch.rand((b, f, rank), generator=generator, device=dev, dtype=dt) + 0.1
    H = torch.rand((b, rank, t), generator=generator, device=dev, dtype=dt) + 0.1
    if mask is None:
        level = power.mean(dim=(1, 2))
    else:
        level = (power * mask[:, None, :]).sum(dim=(1, 2)) / (f * mask.sum(1)).clamp_min(1)
        H = H * mask[:, None, :]
    scale = level / (W @ H).mean(dim=(1, 2)).clamp_min(TINY)
    H = H * scale.clamp_min(TINY)[:, None, None]
    g = torch.ones((b, 1, t), device=dev, dtype=dt)
    return normalise(NMFNoise(W, H, g))


def normalise(nmf: NMFNoise) -> NMFNoise:
    """Scale the columns of ``W`` to unit sum and ``H`` inversely (``W H`` is unchanged)."""
    norm = nmf.W.sum(dim=1, keepdim=True).clamp_min(TINY)  # (batch, 1, rank)
    return NMFNoise(nmf.W / norm, nmf.H * norm.transpose(1, 2), nmf.g)


def mixture_cost(power: torch.Tensor, speech_var: torch.Tensor, nmf: NMFNoise,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """``C`` above: ``sum_r sum_ft [P / Vx + log Vx]`` per batch item, shape ``(batch,)``.

    ``speech_var`` is ``(samples, batch, freq, time)``.
    """
    vx = nmf.g * speech_var + nmf.noise_variance()
    c = power / vx + torch.log(vx)
    if mask is not None:
        c = c * mask[:, None, :]
    return c.sum(dim=(0, 2, 3))


def m_step(power: torch.Tensor, speech_var: torch.Tensor, nmf: NMFNoise,
           mask: torch.Tensor | None = None, update_gain: bool = True) -> NMFNoise:
    """One pass of the square-root multiplicative updates of ``W``, ``H`` then ``g``.

    Args:
        power: mixture power spectrogram ``P``, ``(batch, freq, time)``.
        speech_var: speech variances from the current latent samples,
            ``(samples, batch, freq, time)``.
        nmf: current parameters.
        mask: optional ``(batch, time)`` of valid frames; padded frames do not contribute.
        update_gain: also update the per-frame gain ``g``.

    Returns:
        Updated, normalised parameters (new tensors).

    References:
        Leglaive, Girin, Horaud, MLSP 2018, eqs. (17)-(19); Févotte & Idier 2011.
    """
    W, H, g = nmf.W, nmf.H, nmf.g
    m = None if mask is None else mask[:, None, :]

    def moments(W, H, g):
        vx = g * speech_var + W @ H  # (R, B, F, T)
        inv = 1.0 / vx
        a = (power * inv.square()).sum(0)  # sum_r P Vx^-2
        b = inv.sum(0)  # sum_r Vx^-1
        if m is not None:
            a, b = a * m, b * m
        return vx, inv, a, b

    _, _, a, b = moments(W, H, g)
    W = W * ((a @ H.transpose(1, 2)) / (b @ H.transpose(1, 2)).clamp_min(TINY)).sqrt()
    _, _, a, b = moments(W, H, g)
    H = H * ((W.transpose(1, 2) @ a) / (W.transpose(1, 2) @ b).clamp_min(TINY)).sqrt()
    if update_gain:
        _, inv, _, _ = moments(W, H, g)
        num = (power * speech_var * inv.square()).sum(dim=(0, 2), keepdim=False)  # (B, T)
        den = (speech_var * inv).sum(dim=(0, 2))
        g = g * (num / den.clamp_min(TINY)).sqrt()[:, None, :]
        if m is not None:
            g = torch.where(m > 0, g, torch.ones_like(g))
    return normalise(NMFNoise(W.clamp_min(TINY), H.clamp_min(TINY), g.clamp_min(TINY)))
