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

:func:`vem` enhances one mixture (the reference); :func:`vem_batch` enhances several
mixtures of different lengths at once (right-padded and masked), each with its own
fine-tuned encoder, NMF model, random generator and stopping rule, and gives each mixture the
result of :func:`vem` on it alone (up to float rounding).

References:
    Leglaive, Alameda-Pineda, Girin, Horaud, "A recurrent variational autoencoder for speech
    enhancement", ICASSP 2020 (VEM with a fine-tuned encoder); Bie, Leglaive,
    Alameda-Pineda, Girin, "Unsupervised speech enhancement using dynamical variational
    autoencoders", IEEE/ACM TASLP 2022.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..priors.base import Posterior, Prior
from ..priors.sequential import SequentialPrior
from .algorithms import register_algorithm, register_batch_runner
from .nmf import NMFNoise, average_wiener, init_nmf, m_step, time_major

__all__ = ["Adam", "VEMConfig", "VEMResult", "batchable_prior", "vem", "vem_batch"]


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


# -- batched VEM -----------------------------------------------------------------------------

def batchable_prior(prior: Prior) -> bool:
    """Whether :func:`vem_batch` runs ``prior`` as one batch (else it runs :func:`vem` file by
    file).

    Two kinds of priors have a batched path: frame-wise priors whose posterior parameters do
    not depend on the draws (the base class's :meth:`~speechvae.priors.Prior.sample_posterior`
    and ``frame_factorised``, so that padded frames cannot reach valid ones; the encoder runs
    with a stacked set of per-file parameters under :func:`torch.func.vmap`), and sequential
    priors (:class:`~speechvae.priors.SequentialPrior`: the RVAE and the DKF), whose
    :meth:`~speechvae.priors.SequentialPrior.grouped_posterior` runs the per-frame loop once
    for the whole batch with one set of encoder weights per file. All shipped priors qualify.
    """
    if isinstance(prior, SequentialPrior):
        return type(prior)._grouped_posterior is not SequentialPrior._grouped_posterior
    return bool(prior.frame_factorised) and \
        type(prior).sample_posterior is Prior.sample_posterior


class _Encoder(nn.Module):
    """``power -> (mean, logvar)`` of a prior's encoder, for :func:`torch.func.functional_call`."""

    def __init__(self, prior: Prior):
        super().__init__()
        self.prior = prior

    def forward(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.prior.encode(power)
        return post.mean, post.logvar


def _draw_padded(generators, active: list[bool], shape: tuple[int, ...], lengths: list[int],
                 n_frames: int, like: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard normal noise of each file drawn alone, ``(*shape, length)`` from its own
    generator (as :func:`vem` draws it), zero-padded to ``n_frames`` and stacked on ``dim``;
    inactive files draw nothing and get zeros."""
    parts = []
    for gen, on, n in zip(generators, active, lengths):
        eps = like.new_zeros((*shape, n_frames))
        if on:
            eps[..., :n] = torch.randn((*shape, n), generator=gen, device=like.device,
                                       dtype=like.dtype)
        parts.append(eps)
    return torch.cat(parts, dim=dim)


@register_batch_runner("vem", supports=batchable_prior)
def vem_batch(prior: Prior, mixture_stfts: torch.Tensor, lengths: Sequence[int],
              config: VEMConfig = VEMConfig(),
              generators: Sequence[torch.Generator | None] | None = None) -> list[VEMResult]:
    """Enhance a batch of mixtures of different lengths with VEM, each as :func:`vem` alone.

    Every mixture keeps its own fine-tuned copy of the encoder (the copies are stacked on a
    leading batch axis and evaluated with :func:`torch.func.vmap` for a frame-wise prior, or
    with :meth:`~speechvae.priors.SequentialPrior.grouped_posterior` for a sequential one,
    whose decoder then gets the padding mask; one :class:`Adam` over the
    stacked parameters equals one optimiser per file, Adam being element-wise and the
    objective a sum of per-file objectives), its own NMF model and gain, its own random
    generator (each file's noise is drawn from it with the shapes :func:`vem` uses, so the
    file sees the same numbers as alone), its own objective history (normalised by its own
    number of valid bins) and its own stopping rule (a stopped file's encoder and NMF are
    frozen and it draws no more noise). Padded frames enter no sum: not the objective nor
    its gradient, the KL term, the NMF/gain updates (masked :func:`m_step`) nor the Wiener
    output, which is cut back to each file's length.

    Priors without a batched path (see :func:`batchable_prior`), and batches of one, are run
    with :func:`vem` file by file: the results are the same, only slower.

    Args:
        prior: a pretrained prior (left unchanged).
        mixture_stfts: complex STFTs, ``(batch, freq, time)``, right-padded: file ``b``
            holds ``lengths[b]`` valid frames, then anything (treated as zeros).
        lengths: valid frames per file, ``(batch,)`` ints in ``[1, time]``.
        config: algorithm settings, shared by the files.
        generators: one random generator per file (on the mixtures' device), seeded as for
            :func:`vem`; None draws from torch's global generator (no equality with
            one-by-one runs then).

    Returns:
        One :class:`VEMResult` per file, in order, cut to its length: speech and noise
        ``(1, freq, lengths[b])``, NMF ``W (1, freq, rank)``, ``H (1, rank, lengths[b])``,
        ``g (1, 1, lengths[b])``. Equal to :func:`vem` on each file alone up to float
        rounding (about 1e-5 relative in float32 on CPU; the batched matrix products add in
        another order).

    Raises:
        ValueError: wrong shape or frequency size, lengths out of range, a generator list of
            the wrong size, or an unknown ``config.gain``.

    References:
        As :func:`vem` (Leglaive et al., ICASSP 2020; Bie et al., TASLP 2022).
    """
    if mixture_stfts.dim() != 3:
        raise ValueError(f"mixture_stfts must have shape (batch, freq, time), "
                         f"got {tuple(mixture_stfts.shape)}")
    n_files, n_freq, n_frames = mixture_stfts.shape
    if n_freq != prior.stft_config.n_freq:
        raise ValueError(f"mixtures have {n_freq} frequency bins, the prior expects "
                         f"{prior.stft_config.n_freq}")
    lengths = [int(n) for n in (lengths.tolist() if torch.is_tensor(lengths) else lengths)]
    if len(lengths) != n_files or not all(1 <= n <= n_frames for n in lengths):
        raise ValueError(f"lengths must be {n_files} frame counts in [1, {n_frames}], "
                         f"got {lengths}")
    if generators is None:
        generators = [None] * n_files
    generators = list(generators)
    if len(generators) != n_files:
        raise ValueError(f"need one generator per file ({n_files}), got {len(generators)}")
    if config.gain not in ("frame", "global", "none"):
        raise ValueError(f"gain must be 'frame', 'global' or 'none', got {config.gain!r}")
    if n_files == 1 or not batchable_prior(prior):
        return [vem(prior, mixture_stfts[b:b + 1, :, :n], config, gen)
                for b, (n, gen) in enumerate(zip(lengths, generators))]

    dev = mixture_stfts.device
    valid = torch.arange(n_frames, device=dev)[None, :] < torch.tensor(lengths, device=dev)[:, None]
    mixture = torch.where(valid[:, None, :], mixture_stfts, 0)
    power = time_major(mixture.abs().square())
    mask = valid.to(power.dtype)  # (B, T)
    valid_ft = valid[:, None, :]  # (B, 1, T), broadcast over (samples, B, F, T)
    n_bins = [n_freq * n for n in lengths]

    # one frozen copy of the prior; the encoder parameters are stacked, one set per file
    local = copy.deepcopy(prior)
    local.train(False)
    for p in local.parameters():
        p.requires_grad_(False)
    enc_ids = {id(p) for p in local.encoder_parameters()}
    stacked = {name: p.detach().unsqueeze(0).repeat(n_files, *([1] * p.dim()))
               .requires_grad_(True)
               for name, p in local.named_parameters() if id(p) in enc_ids}
    latent = local.latent_dim
    sequential = isinstance(local, SequentialPrior)
    if not sequential:
        encoder = _Encoder(local)

        def encode_one(params, p):  # p (F, T) -> mean, logvar (L, T)
            mean, logvar = torch.func.functional_call(encoder, params, (p[None],))
            return mean[0], logvar[0]

        encode = torch.func.vmap(encode_one)  # (B, F, T) -> (B, L, T) twice
        wrapped = {f"prior.{name}": p for name, p in stacked.items()}

    def posterior(eps):  # eps (R, B, L, T) -> z, Posterior, each (R, B, L, T) or (B, L, T)
        if sequential:
            z, mean, logvar = local.grouped_posterior(stacked, power, eps, lengths)
            return z, Posterior(mean, logvar)
        mean, logvar = encode(wrapped, power)
        return mean + torch.exp(0.5 * logvar) * eps, Posterior(mean, logvar)

    opt = Adam(list(stacked.values()), lr=config.lr)

    # each file's NMF initialised alone with its generator, as vem does, then padded
    inits = []
    for b, (n, gen) in enumerate(zip(lengths, generators)):
        one = init_nmf(power[b:b + 1, :, :n], config.nmf_rank, gen)
        inits.append(NMFNoise(one.W, one.H * config.init_noise_level, one.g))
    pad = [n_frames - n for n in lengths]
    nmf = NMFNoise(torch.cat([x.W for x in inits]),
                   torch.cat([nn.functional.pad(x.H, (0, k)) for x, k in zip(inits, pad)]),
                   torch.cat([nn.functional.pad(x.g, (0, k), value=1.0)
                              for x, k in zip(inits, pad)]))
    gain_opts = {"update_gain": config.gain != "none", "global_gain": config.gain == "global"}
    objectives: list[list[float]] = [[] for _ in range(n_files)]
    iterations = [0] * n_files
    active = [True] * n_files
    samples = config.samples
    for it in range(1, config.iterations + 1):
        act = torch.tensor(active, device=dev)
        for _ in range(config.e_steps):
            eps = _draw_padded(generators, active, (samples, 1, latent), lengths, n_frames,
                               power, dim=1)  # (R, B, L, T)
            z, post = posterior(eps)
            vs = local.decode(z, mask=mask)  # (R, B, F, T)
            kl_frames = local.kl(post, z)  # (B, T) or (R, B, T)
            per_frame = kl_frames.numel() // (n_files * n_frames)
            kl = (kl_frames * mask).reshape(-1, n_files, n_frames).sum(dim=(0, 2)) / per_frame
            with torch.no_grad():  # the closed-form gradient of vem, masked
                vs_d = vs.detach()
                vx = nmf.g * vs_d + nmf.noise_variance()
                inv = vx.reciprocal()
                p_inv2 = power * inv.square()
                terms = torch.where(valid_ft, power * inv + torch.log(vx), 0.0)
                nll = terms.sum(dim=(0, 2, 3)) / samples  # (B,)
                keep = valid_ft & act[:, None, None]
                grad_vs = torch.where(keep, nmf.g * (inv - p_inv2) / samples, 0.0)
            opt.zero_grad()
            ((vs * grad_vs).sum() + config.beta * (kl * act).sum()).backward()
            if all(active):
                opt.step()
            else:  # stopped files keep their parameters (Adam's momentum would move them)
                before = [p.detach().clone() for p in opt.params]
                opt.step()
                with torch.no_grad():
                    for p, old in zip(opt.params, before):
                        p.copy_(torch.where(act.view(-1, *[1] * (p.dim() - 1)), p, old))
        with torch.no_grad():
            new = m_step(power, vs_d, nmf, mask=mask, moments=(inv, p_inv2), **gain_opts)
            for _ in range(config.m_steps - 1):
                new = m_step(power, vs_d, new, mask=mask, **gain_opts)
            if all(active):
                nmf = new
            else:
                a3 = act[:, None, None]
                nmf = NMFNoise(torch.where(a3, new.W, nmf.W), torch.where(a3, new.H, nmf.H),
                               torch.where(a3, new.g, nmf.g))
        nll_l, kl_l = nll.tolist(), kl.detach().tolist()
        w = config.tol_window
        for b in range(n_files):
            if not active[b]:
                continue
            objective = objectives[b]
            objective.append((nll_l[b] + config.beta * kl_l[b]) / n_bins[b])
            iterations[b] = it
            if config.tol > 0 and it >= 2 * w:
                prev = sum(objective[-2 * w:-w]) / w
                cur = sum(objective[-w:]) / w
                if abs(cur - prev) <= config.tol * abs(prev):
                    active[b] = False
        if not any(active):
            break
    with torch.no_grad():
        everyone = [True] * n_files
        if sequential:  # as vem: every Wiener draw of a file in one pass over the frames
            eps = _draw_padded(generators, everyone, (config.wiener_samples, 1, latent),
                               lengths, n_frames, power, dim=1)
            draws = posterior(eps)[0].unbind(0)
        else:  # as vem: one draw per Wiener sample and file, in vem's order
            mean, logvar = encode(wrapped, power)
            std = torch.exp(0.5 * logvar)
            draws = (mean + std * _draw_padded(generators, everyone, (1, latent), lengths,
                                               n_frames, mean, dim=0)
                     for _ in range(config.wiener_samples))

        def speech_vars():  # decoded one at a time
            for z in draws:
                yield nmf.g * local.decode(z, mask=mask)

        speech, noise = average_wiener(mixture, nmf.noise_variance(), speech_vars())
    return [VEMResult(speech[b:b + 1, :, :n], noise[b:b + 1, :, :n],
                      NMFNoise(nmf.W[b:b + 1], nmf.H[b:b + 1, :, :n], nmf.g[b:b + 1, :, :n]),
                      objectives[b], iterations[b])
            for b, n in enumerate(lengths)]
