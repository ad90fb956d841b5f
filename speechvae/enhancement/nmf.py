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

__all__ = ["NMFNoise", "init_nmf", "m_step", "mixture_cost", "time_major"]

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
        """``W H``, shape ``(batch, freq, time)`` (stored time-major, see :func:`time_major`)."""
        return _wh(self.W, self.H)


def _wh(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    # (H^T W^T)^T: the product comes out with frequency as the fastest axis, the layout of
    # the decoders' outputs, so element-wise work never mixes memory layouts.
    return torch.bmm(H.transpose(1, 2), W.transpose(1, 2)).transpose(1, 2)


def average_wiener(mixture_stft: torch.Tensor, noise_var: torch.Tensor, speech_vars,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech and noise STFT estimates from the Wiener gain ``vs / (vs + W H)`` averaged over
    posterior samples.

    Args:
        mixture_stft: complex ``(batch, freq, time)``.
        noise_var: ``W H``, ``(batch, freq, time)``.
        speech_vars: iterable of scaled speech variances ``g v(z_r)``, each
            ``(..., batch, freq, time)``; leading axes (e.g. chains) are averaged too.

    Returns:
        ``(speech, noise)``, complex ``(batch, freq, time)``; they sum to the mixture.
    """
    gain = torch.zeros_like(noise_var)
    n = 0
    with torch.no_grad():
        for vs in speech_vars:
            g = vs / (vs + noise_var)
            gain += g.reshape(-1, *gain.shape).mean(0)
            n += 1
    gain /= max(n, 1)
    return gain * mixture_stft, (1.0 - gain) * mixture_stft


def time_major(x: torch.Tensor) -> torch.Tensor:
    """The same ``(..., freq, time)`` values stored with frequency as the fastest axis.

    The priors' decoders produce this layout (one frame = one contiguous row); putting the
    mixture in it too keeps the element-wise passes of the inference on contiguous memory.
    """
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


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
    if mask is None:
        model_level = _wh(W, H).mean(dim=(1, 2))
    else:  # mean over the valid frames only (padded frames have H = 0)
        model_level = _wh(W, H).sum(dim=(1, 2)) / (f * mask.sum(1)).clamp_min(1)
    scale = level / model_level.clamp_min(TINY)
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
           mask: torch.Tensor | None = None, update_gain: bool = True,
           global_gain: bool = False, moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> NMFNoise:
    """One pass of the square-root multiplicative updates of ``W``, ``H`` then ``g``.

    Args:
        power: mixture power spectrogram ``P``, ``(batch, freq, time)``.
        speech_var: speech variances from the current latent samples,
            ``(samples, batch, freq, time)``.
        nmf: current parameters.
        mask: optional ``(batch, time)`` of valid frames; padded frames do not contribute.
        update_gain: also update the gain ``g``.
        global_gain: one gain for the whole signal (constant over frames) instead of one
            per frame; its update is the same MM update summed over frames.
        moments: optional ``(1/Vx, P/Vx^2)`` at the current parameters, each of the shape
            of ``speech_var``, when the caller has them already (saves one pass).

    Returns:
        Updated, normalised parameters (new tensors).

    References:
        Leglaive, Girin, Horaud, MLSP 2018, eqs. (17)-(19); Févotte & Idier 2011.
    """
    W, H, g = nmf.W, nmf.H, nmf.g
    m = None if mask is None else mask[:, None, :]
    gvs = g * speech_var

    def sums(inv, p_inv2):
        # sum over samples of 1/Vx and P/Vx^2, masked: (batch, freq, time)
        a, b = (p_inv2[0], inv[0]) if p_inv2.shape[0] == 1 else (p_inv2.sum(0), inv.sum(0))
        if m is not None:
            a, b = a * m, b * m
        return a, b

    def inverse(W, H):
        inv = (gvs + _wh(W, H)).reciprocal()
        return inv, power * inv.square()

    a, b = sums(*(moments if moments is not None else inverse(W, H)))
    Ht = H.transpose(1, 2)
    W = W * ((a @ Ht) / (b @ Ht).clamp_min(TINY)).sqrt()
    a, b = sums(*inverse(W, H))
    Wt = W.transpose(1, 2)
    H = H * ((Wt @ a) / (Wt @ b).clamp_min(TINY)).sqrt()
    if update_gain:
        inv, p_inv2 = inverse(W, H)
        num = (speech_var * p_inv2).sum(dim=(0, 2))  # (batch, time)
        den = (speech_var * inv).sum(dim=(0, 2))
        if m is not None:
            num, den = num * mask, den * mask
        if global_gain:
            num, den = num.sum(1, keepdim=True), den.sum(1, keepdim=True)
        g = g * (num / den.clamp_min(TINY)).sqrt()[:, None, :]
        if m is not None:
            g = torch.where(m > 0, g, torch.ones_like(g))
    return normalise(NMFNoise(W.clamp_min(TINY), H.clamp_min(TINY), g.clamp_min(TINY)))
