"""Spectral envelopes and relative (input-anchored) edits of a power spectrogram.

A frame-wise VAE decodes smooth spectra: what it cannot represent (the exact formant peaks,
the fine harmonic structure) is lost when voiced frames are resynthesised from the decoder
alone. The *relative* edit keeps the input and applies only the *change* the latent edit
makes to the decoded spectral envelope:

    P_out(f, t) = E_in(f, t) * R(f, t) * S(f, t),
    R(f, t) = clip( E[v(z_edited)](f, t) / E[v(z)](f, t), 1/L, L ),

with ``E[.]`` the true envelope (:func:`true_envelope`) of a power spectrum, ``E_in`` that of
the input, ``v(z)`` the decoded variance and ``S`` the excitation: for an f0 edit the
harmonic comb of a band-limited pulse train at the *target* f0 (whose STFT also gives the
phase, built from the target f0 track by per-harmonic phase accumulation); for a formant edit
the input's own fine structure ``P_in / E_in`` (so ``P_out = P_in * R``, with the input's
phase). With no latent change ``R = 1`` and the input comes back exactly.

Shapes: spectrograms ``(freq, frames)``; f0 tracks ``(frames,)`` in Hz.

References:
    Röbel & Rodet, "Efficient spectral envelope estimation and its application to pitch
    shifting and envelope preservation", DAFx 2005 (the true envelope); Imai & Abe,
    "Spectral envelope extraction by improved cepstral method", IEICE Trans. J62-A, 1979.
    Sadok, Leglaive, Girin, Alameda-Pineda, Séguier, Speech Communication 148, 2023 (the
    latent edits whose decoded change is applied here).
"""
from __future__ import annotations

import math

import torch

__all__ = ["envelope_ratio", "true_envelope"]


def true_envelope(power: torch.Tensor, f0: torch.Tensor, sample_rate: int,
                  iterations: int = 24, order_factor: float = 0.5,
                  floor_db: float = -100.0) -> torch.Tensor:
    """True spectral envelope of each frame of a power spectrogram (Röbel & Rodet 2005).

    The log-amplitude spectrum ``A_0`` is smoothed by cepstral liftering (quefrencies up to
    ``order = order_factor * sample_rate / f0`` samples, i.e. half a period by default, so
    the harmonic comb is removed); then ``A_i = max(A_{i-1}, C_{i-1})`` and ``C_i`` its
    liftered version, ``iterations`` times. The result ``C`` passes through the harmonic peaks
    instead of lying between peaks and valleys as plain cepstral smoothing does.

    Args:
        power: ``(freq, frames)`` power spectrogram, ``freq = n_fft // 2 + 1``.
        f0: ``(frames,)`` f0 in Hz used for the cepstral order; frames with a non-finite or
            non-positive value use 100 Hz.
        sample_rate: Hz.
        iterations: envelope iterations (0: plain cepstral smoothing).
        order_factor: cepstral order as a share of the period in samples.
        floor_db: power floor relative to each frame's maximum (dB), against ``log 0``.

    Returns:
        ``(freq, frames)`` envelope power, same dtype and device as ``power``.

    Raises:
        ValueError: ``power`` not 2-D or ``f0`` of the wrong length.
    """
    if power.dim() != 2:
        raise ValueError(f"expected a (freq, frames) power spectrogram, got {tuple(power.shape)}")
    if f0.shape != (power.shape[1],):
        raise ValueError(f"f0 has shape {tuple(f0.shape)}, expected ({power.shape[1]},)")
    n_fft = 2 * (power.shape[0] - 1)
    f0 = torch.where(torch.isfinite(f0) & (f0 > 0), f0, torch.full_like(f0, 100.0))
    order = (order_factor * sample_rate / f0).floor().clamp(2, n_fft // 2 - 1)
    q = torch.arange(n_fft, device=power.device, dtype=power.dtype)[:, None]
    q = torch.minimum(q, n_fft - q)  # symmetric quefrency
    lifter = (q <= order.to(power)[None]).to(power.dtype)
    floor = power.amax(0, keepdim=True).clamp_min(1e-30) * 10.0 ** (floor_db / 10.0)
    a = 0.5 * torch.log(torch.maximum(power, floor))

    def smooth(log_amp: torch.Tensor) -> torch.Tensor:
        cep = torch.fft.irfft(log_amp, n=n_fft, dim=0)
        return torch.fft.rfft(cep * lifter, dim=0).real

    c = smooth(a)
    for _ in range(iterations):
        c = smooth(torch.maximum(a, c))
    return torch.exp(2.0 * c)


def envelope_ratio(decoded_edit: torch.Tensor, decoded: torch.Tensor, f0_edit: torch.Tensor,
                   f0: torch.Tensor, sample_rate: int, limit_db: float = 12.0,
                   iterations: int = 24) -> torch.Tensor:
    """``R = E[v(z_edited)] / E[v(z)]``: the change a latent edit makes to the decoded
    spectral envelope, limited to ``±limit_db``.

    Each decoded spectrum's true envelope (:func:`true_envelope`) is taken at its own f0
    (the target f0 for the edited decode, the input's for the unedited one), so that the
    ratio carries the change of envelope and not the change of harmonic comb.

    Args:
        decoded_edit, decoded: ``(freq, frames)`` decoded power (variance) spectra.
        f0_edit, f0: ``(frames,)`` Hz (non-finite: 100 Hz).
        sample_rate: Hz.
        limit_db: largest change allowed per bin (dB), either way.
        iterations: true-envelope iterations.

    Returns:
        ``(freq, frames)`` positive ratio; exactly 1 where the two decodes are equal.
    """
    if decoded_edit.shape != decoded.shape:
        raise ValueError(f"decoded spectra of shapes {tuple(decoded_edit.shape)} and "
                         f"{tuple(decoded.shape)}")
    e_new = true_envelope(decoded_edit, f0_edit, sample_rate, iterations)
    e_old = true_envelope(decoded, f0, sample_rate, iterations)
    limit = limit_db / 10.0 * math.log(10.0)
    log_ratio = (torch.log(e_new) - torch.log(e_old)).clamp(-limit, limit)
    same = (decoded_edit == decoded).all(0) & (f0_edit.eq(f0) | ~torch.isfinite(f0))
    return torch.where(same, torch.ones_like(log_ratio), torch.exp(log_ratio))
