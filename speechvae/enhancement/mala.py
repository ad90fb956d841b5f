"""MALA-EM speech enhancement: Monte Carlo EM whose E-step runs Langevin chains.

**MALA-EM** (``"mala"``). The E-step of :mod:`~speechvae.enhancement.mcem` with the random
walk replaced by Metropolis-adjusted Langevin chains on ``z`` (Roberts & Tweedie 1996),
targeting ``p(z | x; W, H, g) ∝ p(x | z; W, H, g) p(z)``. Several chains run as one batch
(the chain axis leads: ``z (chains, 1, latent, time)``), which suits a GPU; the step size is
adapted per frame (per sequence for a non-factorised prior) during each E-step's warm-up
toward an acceptance rate of 0.574 (Roberts & Rosenthal 1998) and held fixed for the kept
samples. The M-step is the EM driver's :func:`~speechvae.enhancement.model.m_step` fed with every
chain's kept samples. Later work on unsupervised speech enhancement samples the same kind of
posterior with Langevin dynamics and MALA (Sadeghi & Serizel, arXiv:2309.10439, 2023, with
a recurrent VAE).

References:
    Roberts & Tweedie, Bernoulli 1996 (MALA); Roberts & Rosenthal, JRSS-B 1998; Leglaive,
    Girin, Horaud, MLSP 2018 (the MCEM around it); Sadeghi & Serizel, arXiv:2309.10439, 2023.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..priors.base import Prior
from .algorithms import get_algorithm, register_algorithm
from .em import EMResult
from .mcem import ChainStep, check_counts
from .model import EMConfig, LatentPosterior
from .samplers import MarkovChain, init_state, mala_step

__all__ = ["MALAConfig", "MALAStep", "mala"]


@dataclass(frozen=True)
class MALAConfig(EMConfig):
    """Settings of MALA-EM (our defaults; the MCEM structure of Leglaive et al. 2018 with a
    MALA kernel, Roberts & Tweedie 1996).

    Attributes:
        iterations: EM iterations (50, as VEM).
        nmf_rank: NMF rank ``K`` (8).
        chains: MALA chains run in parallel (one batch). They start from independent draws
            of the encoder's ``q(z | x)`` on the noisy power spectrogram (see
            ``init_spread``).
        burnin: MALA steps per E-step during which the step size adapts (5).
        samples: kept steps per chain and E-step; the M-step gets ``chains * samples``
            samples (1, so 4 samples per M-step).
        step_size: initial step size ``eps`` (noise variance; the drift is
            ``eps / 2 * grad``), 0.01 like the MCEM proposal variance.
        target_accept: acceptance rate aimed at during warm-up (0.574, optimal for MALA in
            high dimension, Roberts & Rosenthal 1998).
        adapt_gain: gain of the log-step-size adaptation.
        init_spread: the chains start at ``mean + init_spread * std * N(0, I)`` of the
            encoder's ``q(z | x)`` (1: draws of ``q``, over-dispersed starts as usual for
            several chains; 0: every chain at the encoder mean, as MCEM). For a sequential
            encoder each frame's ``mean, std`` are those given the chain's own past
            (:meth:`~speechvae.priors.Prior.sample_posterior` with
            ``noise_scale=init_spread``).
        final_burnin: steps before the final Wiener filter (adapting too; 20).
        final_samples: kept steps per chain for the final Wiener filter (4, so 16 samples
            with 4 chains, as VEM's ``wiener_samples``).
        block_frames: as :class:`~speechvae.enhancement.mcem.MCEMConfig`.
        iterations, nmf_rank, tol, tol_window, m_steps, gain, init_noise_level: the shared
            fields of :class:`~speechvae.enhancement.model.EMConfig`.
    """

    chains: int = 4
    burnin: int = 5
    samples: int = 1
    step_size: float = 0.01
    target_accept: float = 0.574
    adapt_gain: float = 0.5
    init_spread: float = 1.0
    final_burnin: int = 20
    final_samples: int = 4
    block_frames: int | None = None

    def __post_init__(self):
        super().__post_init__()
        check_counts(self, "chains", "samples", "final_samples")
        check_counts(self, "burnin", "final_burnin", low=0)
        if self.block_frames is not None:
            check_counts(self, "block_frames")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if not self.init_spread >= 0:
            raise ValueError(f"init_spread must be >= 0, got {self.init_spread}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept}")


class GradTarget:
    """A :class:`~speechvae.enhancement.model.LatentPosterior` seen as a
    :data:`~speechvae.enhancement.samplers.LogDensityGrad` (log density, ``v(z)`` and the
    gradient in ``z``)."""

    def __init__(self, target: LatentPosterior):
        self.target = target

    def __call__(self, z):
        return self.target.with_grad(z)


@register_algorithm("mala")
class MALAStep(ChainStep):
    """MALA-EM's E-step: batched Metropolis-adjusted Langevin chains with step sizes adapted
    during each warm-up."""

    config_class = MALAConfig
    summary = ("Monte Carlo EM with batched Metropolis-adjusted Langevin chains (Roberts & "
               "Tweedie 1996)")
    kernel = staticmethod(mala_step)

    def wrap_target(self, target: LatentPosterior) -> GradTarget:
        return GradTarget(target)

    def init_latents(self) -> None:
        # chains start from draws of q(z | x) with the noise scaled by init_spread, drawn
        # before the NMF start
        with torch.no_grad():
            self.z0, _ = self.prior.sample_posterior(
                self.power, self.generators[0], num_samples=self.config.chains,
                noise_scale=self.config.init_spread)  # (C, 1, L, T)

    def make_chain(self, target: LatentPosterior) -> MarkovChain:
        config = self.config
        # step size per frame (shared by the chains) or per sequence, in the per-frame layout
        n_frames = self.power.shape[-1]
        step_shape = (1, 1, n_frames) if self.prior.frame_factorised else (1, 1, 1)
        step = torch.full(step_shape, config.step_size, device=self.power.device,
                          dtype=self.power.dtype)
        return MarkovChain(self.kernel_for(target),
                           init_state(GradTarget(target), self.z0, with_grad=True), step,
                           self.generators[0], target_accept=config.target_accept,
                           adapt_gain=config.adapt_gain)

    def extras(self, b: int) -> dict:
        return {"acceptance": self.acceptance, "step_size": self.chain.step_size}


def mala(prior: Prior, mixture_stft: torch.Tensor, config: MALAConfig = MALAConfig(),
         generator: torch.Generator | None = None) -> EMResult:
    """Enhance one mixture STFT with MALA-EM: MCEM whose E-step runs batched MALA chains.

    Args:
        prior: a pretrained prior (unchanged; ``sample_posterior``, ``decode``,
            ``log_prior`` and ``frame_factorised`` are used, and gradients flow through
            ``decode``).
        mixture_stft: complex STFT of the mixture, ``(1, freq, time)``.
        config: :class:`MALAConfig`.
        generator: random generator (on the mixture's device) of every draw.

    Returns:
        :class:`~speechvae.enhancement.em.EMResult`, with the adapted per-frame step sizes in
        ``step_size``.

    Shape:
        ``mixture_stft (1, freq, time)`` -> ``speech, noise (1, freq, time)``; chain states
        ``z (chains, 1, latent, time)``.

    Raises:
        ValueError: wrong shape or frequency size.

    References:
        Roberts & Tweedie, Bernoulli 1996; Roberts & Rosenthal, JRSS-B 1998; Leglaive,
        Girin, Horaud, MLSP 2018; Sadeghi & Serizel, arXiv:2309.10439, 2023.
    """
    return get_algorithm("mala").run(prior, mixture_stft, config, generator)
