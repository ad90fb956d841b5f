"""Variational EM speech enhancement with a pretrained prior and an NMF noise model.

E-step: the variational posterior ``q(z | x)`` is the prior's own encoder applied to the
noisy power spectrogram (drawn through :meth:`~speechvae.priors.Prior.posterior_draws`, so a
sequential encoder such as the RVAE's draws frame by frame, each frame given the draw's past);
its parameters are fine-tuned per file by a few Adam steps on the negative ELBO of the
mixture,

    L = E_q[ sum_ft P_ft / Vx_ft + log Vx_ft ] + beta * KL(q(z|x) || p(z)),

with ``Vx = g v(z) + W H`` and reparameterised samples of ``z``. M-step: the square-root
multiplicative updates of :func:`speechvae.enhancement.model.m_step` with the same samples
(the EM driver's). Speech estimate: the Wiener filter averaged over fresh posterior samples.

The step is batched: every file of a right-padded batch keeps its own fine-tuned copy of the
encoder (the copies are stacked on a leading file axis; one :class:`Adam` over the stacked
parameters equals one optimiser per file, Adam being element-wise and the objective a sum of
per-file objectives), its own NMF model, generator and stopping rule; padded frames enter no
sum. A file's result equals its result alone to float rounding.

References:
    Leglaive, Alameda-Pineda, Girin, Horaud, "A recurrent variational autoencoder for speech
    enhancement", ICASSP 2020 (VEM with a fine-tuned encoder); Bie, Leglaive,
    Alameda-Pineda, Girin, "Unsupervised speech enhancement using dynamical variational
    autoencoders", IEEE/ACM TASLP 2022.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..priors.base import Prior
from .algorithms import get_algorithm, register_algorithm
from .em import EMResult, EStep, InferenceStep
from .model import EMConfig, NMFNoise, wiener_gain

__all__ = ["Adam", "VEMConfig", "VEMResult", "VEMStep", "batchable_prior", "vem", "vem_batch"]

#: final Wiener estimates of :class:`VEMConfig` (``wiener``)
WIENER_ESTIMATES = ("samples", "mean")

#: :func:`vem`'s result (the result type of every algorithm).
VEMResult = EMResult


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
class VEMConfig(EMConfig):
    """Settings of the VEM algorithm (defaults tuned on held-out mixtures, see README).

    The shared fields (``nmf_rank`` 8, ``tol``, ``tol_window``, ``m_steps``, ``gain``,
    ``init_noise_level``, ``noise_init``, ``atten_lim_db``, ``share_tol``, ``share_window``)
    are those of :class:`~speechvae.enhancement.model.EMConfig`. VEM runs 100 iterations:
    on the tuning set of ``recipes/eval/make_tuning_set.py`` quality still rises there (+0.15
    dB SI-SDR over 75, +0.5 over 50) and the quiet 2-thread RTF stays near 0.10. The
    speech-share stopping rule (``share_tol``) won on two tuning sets but lost on the dev
    set, so it is off (README "Real-noise tuning").

    Attributes:
        lr: Adam learning rate of the encoder fine-tuning.
        e_steps: Adam steps per E-step.
        samples: posterior samples per iteration (E-step and M-step).
        wiener_samples: posterior samples averaged in the final Wiener filter
            (``wiener="samples"``).
        beta: weight of the KL term in the E-step.
        wiener: the final speech variance: ``"mean"`` (default: one gain at the posterior
            mean, the encoder's draw with zero noise: one decoder pass, as good as 16 draws
            on the tuning set) or ``"samples"`` (the Wiener gain averaged over
            ``wiener_samples`` posterior draws, as in the papers).

    Raises:
        ValueError: a count below 1 or an unknown ``wiener``.
    """

    iterations: int = 100
    lr: float = 1e-3
    e_steps: int = 1
    samples: int = 1
    wiener_samples: int = 16
    beta: float = 1.0
    wiener: str = "mean"

    def __post_init__(self):
        super().__post_init__()
        if self.wiener not in WIENER_ESTIMATES:
            raise ValueError(f"VEMConfig.wiener must be one of {', '.join(WIENER_ESTIMATES)}, "
                             f"got {self.wiener!r}")
        for name in ("e_steps", "samples", "wiener_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VEMConfig.{name} must be an integer >= 1, got {value!r}")


def draw_padded(generators, active: list[bool], shape: tuple[int, ...], lengths: list[int],
                n_frames: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise, each file's ``(*shape, length)`` drawn alone from its own
    generator (so a file sees the same numbers in any batch), zero-padded to ``n_frames``
    and stacked on axis 1 (the file axis): ``(shape[0], batch, *shape[2:], n_frames)`` for
    ``shape = (draws, 1, ...)``. Inactive files draw nothing and get zeros."""
    parts = []
    for gen, on, n in zip(generators, active, lengths):
        eps = like.new_zeros((*shape, n_frames))
        if on:
            eps[..., :n] = torch.randn((*shape, n), generator=gen, device=like.device,
                                       dtype=like.dtype)
        parts.append(eps)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


@register_algorithm("vem")
class VEMStep(InferenceStep):
    """VEM's E-step (encoder fine-tuning) and Wiener estimate, for the EM driver."""

    config_class = VEMConfig
    summary = ("variational EM with the prior's encoder fine-tuned per file (Leglaive et al. "
               "2020; Bie et al. 2022)")
    batched = True

    def start(self, nmf: NMFNoise) -> NMFNoise:
        # one frozen copy of the prior; the encoder parameters are stacked, one set per file
        local = copy.deepcopy(self.prior)
        local.train(False)
        for p in local.parameters():
            p.requires_grad_(False)
        n_files = len(self.lengths)
        enc_ids = {id(p) for p in local.encoder_parameters()}
        self.local = local
        self.params = {name: p.detach().unsqueeze(0).repeat(n_files, *([1] * p.dim()))
                       .requires_grad_(True)
                       for name, p in local.named_parameters() if id(p) in enc_ids}
        self.opt = Adam(list(self.params.values()), lr=self.config.lr)
        self.n_bins = [self.power.shape[1] * n for n in self.lengths]
        return nmf

    def _draws(self, n: int, active: list[bool]):
        eps = draw_padded(self.generators, active, (n, 1, self.local.latent_dim),
                          self.lengths, self.power.shape[-1], self.power)
        return self.local.posterior_draws(self.params, self.power, eps, self.lengths)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        # the padding mask only when there is padding (a prior's decode need not take it)
        if self.mask is None:
            return self.local.decode(z)
        return self.local.decode(z, mask=self.mask)

    def e_step(self, nmf: NMFNoise) -> EStep:
        config, power, mask = self.config, self.power, self.mask
        act = self.active
        active = act.tolist()
        n_files, _, n_frames = power.shape
        samples = config.samples
        for _ in range(config.e_steps):
            z, post = self._draws(samples, active)  # (R, B, L, T)
            vs = self._decode(z)  # (R, B, F, T)
            kl_frames = self.local.kl(post, z)  # (B, T) or (R, B, T)
            per_frame = kl_frames.numel() // (n_files * n_frames)
            if mask is not None:
                kl_frames = kl_frames * mask
            kl = kl_frames.reshape(-1, n_files, n_frames).sum(dim=(0, 2)) / per_frame  # (B,)
            with torch.no_grad():
                # The mixture term and its gradient in closed form (fewer passes over the
                # (freq, time) tensors than autograd): with Vx = g v + WH,
                # d/dv sum[P/Vx + log Vx] = g (1/Vx - P/Vx^2).
                vs_d = vs.detach()
                vx = nmf.g * vs_d + nmf.noise_variance()
                inv = vx.reciprocal()
                p_inv2 = power * inv.square()
                terms = power * inv + torch.log(vx)
                grad_vs = nmf.g * (inv - p_inv2) / samples
                if mask is not None:
                    valid = mask[:, None, :] > 0
                    terms = torch.where(valid, terms, 0.0)
                    grad_vs = torch.where(valid, grad_vs, 0.0)
                if not all(active):
                    grad_vs = grad_vs * act[:, None, None].to(grad_vs.dtype)
                nll = terms.sum(dim=(0, 2, 3)) / samples  # (B,)
            self.opt.zero_grad()
            # a scalar whose gradient is the objective's: (vs * grad_vs).sum() has gradient
            # grad_vs with respect to vs (a scalar backward also avoids torch's sympy import
            # that backward with explicit gradients triggers on first use, ~1 s)
            ((vs * grad_vs).sum() + config.beta * (kl * act).sum()).backward()
            if all(active):
                self.opt.step()
            else:  # stopped files keep their parameters (Adam's momentum would move them)
                before = [p.detach().clone() for p in self.opt.params]
                self.opt.step()
                with torch.no_grad():
                    for p, old in zip(self.opt.params, before):
                        p.copy_(torch.where(act.view(-1, *[1] * (p.dim() - 1)), p, old))
        objective = [(a + config.beta * b) / n
                     for a, b, n in zip(nll.tolist(), kl.detach().tolist(), self.n_bins)]
        return EStep(vs_d, objective, moments=(inv, p_inv2))

    def wiener_gain(self, nmf: NMFNoise) -> torch.Tensor:
        everyone = [True] * len(self.lengths)
        if self.config.wiener == "mean":  # the posterior mean: zero noise, no random draw
            eps = self.power.new_zeros((1, len(self.lengths), self.local.latent_dim,
                                        self.power.shape[-1]))
            z = self.local.posterior_draws(self.params, self.power, eps, self.lengths)[0]
            return wiener_gain(nmf.noise_variance(), [nmf.g * self._decode(z[0])])
        z = self._draws(self.config.wiener_samples, everyone)[0]
        # draws decoded one at a time, so memory does not grow with the number of samples
        speech_vars = (nmf.g * self._decode(zr) for zr in z.unbind(0))
        return wiener_gain(nmf.noise_variance(), speech_vars)


def vem(prior: Prior, mixture_stft: torch.Tensor, config: VEMConfig = VEMConfig(),
        generator: torch.Generator | None = None) -> EMResult:
    """Enhance one mixture STFT with VEM.

    Args:
        prior: a pretrained prior (left unchanged: the encoder is copied before fine-tuning).
        mixture_stft: complex STFT of the mixture, ``(1, freq, time)``, same STFT config as
            the prior.
        config: algorithm settings.
        generator: random generator (on the mixture's device) for the NMF initialisation and
            the posterior samples; the same seed gives the same result.

    Returns:
        :class:`~speechvae.enhancement.em.EMResult` with speech and noise STFT estimates.

    Raises:
        ValueError: wrong shape or frequency size.
    """
    return get_algorithm("vem").run(prior, mixture_stft, config, generator)


def vem_batch(prior: Prior, mixture_stfts: torch.Tensor, lengths: Sequence[int],
              config: VEMConfig = VEMConfig(),
              generators: Sequence[torch.Generator | None] | None = None) -> list[EMResult]:
    """Enhance a batch of right-padded mixtures with VEM, each as :func:`vem` alone (to float
    rounding): see :func:`speechvae.enhancement.em.run_em` for the arguments.

    Raises:
        ValueError: wrong shape or frequency size, lengths out of range, a generator list of
            the wrong size.
    """
    return get_algorithm("vem").run_batch(prior, mixture_stfts, lengths, config, generators)


def batchable_prior(prior: Prior) -> bool:
    """Whether VEM runs ``prior`` as one batch: always, since every prior has
    :meth:`~speechvae.priors.Prior.posterior_draws` (kept for callers of the earlier
    interface)."""
    return callable(getattr(prior, "posterior_draws", None))
