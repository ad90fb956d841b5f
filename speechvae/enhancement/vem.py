"""Variational EM speech enhancement with a pretrained prior and an NMF noise model.

E-step: the variational posterior ``q(z | x)`` is the prior's own encoder applied to the
noisy power spectrogram (drawn through :meth:`~speechvae.priors.Prior.sample_posterior`, so a
sequential encoder such as the RVAE's draws frame by frame, each frame given the draw's past);
its parameters are fine-tuned per file by a few Adam steps on the negative ELBO of the
mixture,

    L = E_q[ sum_ft P_ft / Vx_ft + log Vx_ft ] + beta * KL(q(z|x) || p(z)),

with ``Vx = g v(z) + W H`` and reparameterised samples of ``z``. M-step: the square-root
multiplicative updates of :func:`speechvae.enhancement.nmf.m_step` with the same samples.
Speech estimate: the Wiener filter averaged over fresh posterior samples.

References:
    Leglaive, Alameda-Pineda, Girin, Horaud, "A recurrent variational autoencoder for speech
    enhancement", ICASSP 2020 (VEM with a fine-tuned encoder); Bie, Leglaive,
    Alameda-Pineda, Girin, "Unsupervised speech enhancement using dynamical variational
    autoencoders", IEEE/ACM TASLP 2022.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..priors.base import Prior
from .algorithms import register_algorithm
from .nmf import NMFNoise, average_wiener, init_nmf, m_step, time_major

__all__ = ["Adam", "VEMConfig", "VEMResult", "vem"]


class Adam:
    """Adam (Kingma & Ba, ICLR 2015) with the defaults of ``torch.optim.Adam``.

    Written here because the first construction of any ``torch.optim`` optimiser imports
    ``torch._dynamo`` (about 6 s on the 2-core reference machine), which would dominate a
    one-file ``speechvae enhance`` call. Equal to ``torch.optim.Adam`` step for step (tested).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params]
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        torch._foreach_lerp_(self.m, grads, 1 - self.beta1)
        torch._foreach_mul_(self.v, self.beta2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - self.beta2)
        bias1 = 1 - self.beta1 ** self.t
        bias2 = 1 - self.beta2 ** self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, bias2 ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, -self.lr / bias1)


@dataclass(frozen=True)
class VEMConfig:
    """Settings of the VEM algorithm (defaults tuned on held-out mixtures, see README).

    Attributes:
        iterations: maximum number of E/M iterations.
        nmf_rank: NMF rank ``K`` of the noise model.
        lr: Adam learning rate of the encoder fine-tuning.
        e_steps: Adam steps per E-step.
        samples: posterior samples per iteration (E-step and M-step).
        wiener_samples: posterior samples averaged in the final Wiener filter.
        beta: weight of the KL term in the E-step.
        tol: stop when the relative change of the windowed mean objective falls below this
            (0 disables; the iteration cap always applies).
        tol_window: iterations per window for the stopping rule.
        m_steps: passes of the NMF/gain updates per iteration.
        gain: ``"frame"`` (a speech gain ``g_t`` per frame, as in the papers), ``"global"``
            (one gain per signal) or ``"none"`` (``g = 1``).
        init_noise_level: initial level of ``W H`` relative to the mean mixture power.
    """

    iterations: int = 50
    nmf_rank: int = 8
    lr: float = 1e-3
    e_steps: int = 1
    samples: int = 1
    wiener_samples: int = 16
    beta: float = 1.0
    tol: float = 0.0
    tol_window: int = 10
    m_steps: int = 1
    gain: str = "frame"
    init_noise_level: float = 1.0


@dataclass
class VEMResult:
    """Output of :func:`vem` for a batch of one mixture.

    Attributes:
        speech: complex STFT estimate of the speech, ``(batch, freq, time)``.
        noise: complex STFT estimate of the noise, ``(batch, freq, time)``.
        nmf: fitted noise parameters and gain.
        objective: per-iteration value of the E-step objective (per time-frequency bin).
        iterations: iterations run.
    """

    speech: torch.Tensor
    noise: torch.Tensor
    nmf: NMFNoise
    objective: list[float] = field(default_factory=list)
    iterations: int = 0


@register_algorithm("vem", VEMConfig, "variational EM with the prior's encoder fine-tuned per "
                    "file (Leglaive et al. 2020; Bie et al. 2022)")
def vem(prior: Prior, mixture_stft: torch.Tensor, config: VEMConfig = VEMConfig(),
        generator: torch.Generator | None = None) -> VEMResult:
    """Enhance one mixture STFT with VEM.

    Args:
        prior: a pretrained prior (left unchanged: the encoder is copied before fine-tuning).
        mixture_stft: complex STFT of the mixture, ``(1, freq, time)``, same STFT config as
            the prior.
        config: algorithm settings.
        generator: random generator (on the mixture's device) for the NMF initialisation and
            the posterior samples; the same seed gives the same result.

    Returns:
        :class:`VEMResult` with speech and noise STFT estimates.

    Raises:
        ValueError: wrong shape or frequency size.
    """
    if mixture_stft.dim() != 3 or mixture_stft.shape[0] != 1:
        raise ValueError(f"mixture_stft must have shape (1, freq, time), "
                         f"got {tuple(mixture_stft.shape)}")
    if mixture_stft.shape[1] != prior.stft_config.n_freq:
        raise ValueError(f"mixture has {mixture_stft.shape[1]} frequency bins, the prior "
                         f"expects {prior.stft_config.n_freq}")
    power = time_major(mixture_stft.abs().square())
    n_bins = power.numel()
    n_frames = power.shape[-1]
    # the fine-tuned copy: only its encoder parameters are optimised
    local = copy.deepcopy(prior)
    local.train(False)
    for p in local.parameters():
        p.requires_grad_(False)
    enc_params = list(local.encoder_parameters())
    for p in enc_params:
        p.requires_grad_(True)
    opt = Adam(enc_params, lr=config.lr)
    nmf = init_nmf(power, config.nmf_rank, generator)
    nmf = NMFNoise(nmf.W, nmf.H * config.init_noise_level, nmf.g)
    if config.gain not in ("frame", "global", "none"):
        raise ValueError(f"gain must be 'frame', 'global' or 'none', got {config.gain!r}")
    gain_opts = {"update_gain": config.gain != "none", "global_gain": config.gain == "global"}
    objective: list[float] = []
    it = 0
    for it in range(1, config.iterations + 1):
        for _ in range(config.e_steps):
            # draws of q(z | x) and each frame's parameters given the draw's past (for a
            # frame-wise encoder the parameters are shared by the draws)
            z, post = local.sample_posterior(power, generator, num_samples=config.samples)
            vs = local.decode(z)  # z (R, 1, L, T) -> (R, 1, F, T)
            kl_frames = local.kl(post, z)  # (R, 1, T), or (1, T) if shared by the draws
            kl = kl_frames.sum() / (kl_frames.numel() // n_frames)  # mean over the draws
            with torch.no_grad():
                # The mixture term and its gradient in closed form (fewer passes over the
                # (freq, time) tensors than autograd): with Vx = g v + WH,
                # d/dv sum[P/Vx + log Vx] = g (1/Vx - P/Vx^2).
                vs_d = vs.detach()
                vx = nmf.g * vs_d + nmf.noise_variance()
                inv = vx.reciprocal()
                p_inv2 = power * inv.square()
                nll = (power * inv + torch.log(vx)).sum() / config.samples
                grad_vs = nmf.g * (inv - p_inv2) / config.samples
            opt.zero_grad()
            # a scalar whose gradient is the objective's: (vs * grad_vs).sum() has gradient
            # grad_vs with respect to vs (a scalar backward also avoids torch's sympy import
            # that backward with explicit gradients triggers on first use, ~1 s)
            ((vs * grad_vs).sum() + config.beta * kl).backward()
            opt.step()
        with torch.no_grad():
            # the first update of the M-step reuses 1/Vx and P/Vx^2 of the E-step
            nmf = m_step(power, vs_d, nmf, moments=(inv, p_inv2), **gain_opts)
            for _ in range(config.m_steps - 1):
                nmf = m_step(power, vs_d, nmf, **gain_opts)
        objective.append((float(nll) + config.beta * float(kl.detach())) / n_bins)
        w = config.tol_window
        if config.tol > 0 and it >= 2 * w:
            prev = sum(objective[-2 * w:-w]) / w
            cur = sum(objective[-w:]) / w
            if abs(cur - prev) <= config.tol * abs(prev):
                break
    with torch.no_grad():
        if type(local).sample_posterior is Prior.sample_posterior:
            # the base class's draws (encode, then rsample): one draw per Wiener sample, in
            # the order of earlier versions, so the frame-wise VAE gives the same numbers
            post = local.encode(power)
            draws = (post.rsample(generator) for _ in range(config.wiener_samples))
        else:  # e.g. a sequential encoder: every draw in one pass over the frames
            draws = local.sample_posterior(power, generator,
                                           num_samples=config.wiener_samples)[0].unbind(0)
        # draws decoded one at a time, so memory does not grow with the number of samples
        speech_vars = (nmf.g * local.decode(z) for z in draws)
        speech, noise = average_wiener(mixture_stft, nmf.noise_variance(), speech_vars)
    return VEMResult(speech, noise, nmf, objective, it)
