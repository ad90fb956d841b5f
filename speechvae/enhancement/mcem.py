"""Monte Carlo EM speech enhancement: random-walk Metropolis–Hastings E-step, NMF M-step.

Model (DESIGN §2): ``x_ft | z ~ N_c(0, Vx_ft)``, ``Vx = g_t v_ft(z) + (W H)_ft``, with the
speech prior's own ``p(z)``. The E-step draws latent sequences from

    p(z | x; W, H, g)  ∝  p(x | z; W, H, g) p(z),
    log p(x | z) = -sum_ft [ log Vx_ft + P_ft / Vx_ft ]  (+ const),

by random-walk Metropolis–Hastings (:func:`~speechvae.enhancement.samplers.rw_metropolis_step`),
the chain being started from the encoder mean of the noisy power spectrogram (for a sequential
encoder, the encoder mean path, :meth:`~speechvae.priors.Prior.encode`) and carried over
from one iteration to the next. For a frame-wise prior (``prior.frame_factorised``) the
posterior factorises over frames, and each frame is accepted or rejected on its own with

    log a_t = sum_f [ log Vx_ft - log Vx'_ft + (1/Vx_ft - 1/Vx'_ft) P_ft ]
              + log p(z'_t) - log p(z_t),

(``log p(z_t) = -|z_t|^2 / 2`` for the VAE); otherwise the whole sequence (or a block of
``block_frames`` frames) is accepted or rejected at once. The M-step is the EM driver's
:func:`~speechvae.enhancement.model.m_step` fed with the kept samples; the speech estimate is
the Wiener filter averaged over the samples of a final, longer E-step.

References:
    Leglaive, Girin, Horaud, "A variance modeling framework based on variational
    autoencoders for speech enhancement", IEEE MLSP 2018 (MCEM, Algorithm 1); Wei & Tanner,
    JASA 1990 (Monte Carlo EM).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..priors.base import Prior
from .algorithms import get_algorithm, register_algorithm
from .em import EMResult, EStep, InferenceStep
from .model import EMConfig, LatentPosterior, NMFNoise, wiener_gain
from .samplers import MarkovChain, bind_kernel, frame_blocks, init_state, rw_metropolis_step

__all__ = ["ChainStep", "MCEMConfig", "MCEMStep", "SamplingResult", "check_counts", "mcem"]

#: the result of the sampling algorithms (the result type of every algorithm)
SamplingResult = EMResult


def check_counts(config, *names: str, low: int = 1) -> None:
    """Check that the fields ``names`` of ``config`` are integers ``>= low``.

    Raises:
        ValueError: naming the config class and field.
    """
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {low}, "
                             f"got {value!r}")


@dataclass(frozen=True)
class MCEMConfig(EMConfig):
    """Settings of MCEM (defaults of the authors' code for Leglaive et al., MLSP 2018).

    Attributes:
        iterations: EM iterations. Default 100, as the authors' public code
            (``niter_MCEM=100``); the paper reports 500. Each iteration costs
            ``burnin + samples`` decoder passes, so MCEM is several times slower than VEM.
        nmf_rank: NMF rank ``K`` of the noise model (8, as :class:`VEMConfig`).
        proposal_var: variance of the random-walk proposal ``z' = z + sqrt(var) N(0, I)``
            (0.01 in the paper and code).
        burnin: Metropolis–Hastings steps discarded at each E-step (30: the code's
            ``niter_MH=40, burnin=30``).
        samples: kept steps per E-step, all fed to the M-step (10).
        final_burnin: steps discarded before the final Wiener filter (75, the code's
            ``separate(niter_MH=100, burnin=75)``).
        final_samples: samples averaged in the final Wiener filter (25).
        tol, tol_window, m_steps, gain, init_noise_level: the shared fields of
            :class:`~speechvae.enhancement.model.EMConfig` (one stopping rule for every
            algorithm: a relative change of the windowed mean objective, here the mean
            per-bin cost ``P / Vx + log Vx`` of the samples before the M-step; it is a Monte
            Carlo estimate, so a positive ``tol`` stops at a random iteration).
        block_frames: for priors whose ``p(z)`` does not factorise over frames: the number
            of consecutive frames a proposal moves (the blocks are visited in turn, one per
            step; ``burnin`` and ``samples`` then count block moves). None moves the whole
            sequence at once. Ignored for frame-factorised priors.
    """

    iterations: int = 100
    proposal_var: float = 0.01
    burnin: int = 30
    samples: int = 10
    final_burnin: int = 75
    final_samples: int = 25
    block_frames: int | None = None

    def __post_init__(self):
        super().__post_init__()
        check_counts(self, "samples", "final_samples")
        check_counts(self, "burnin", "final_burnin", low=0)
        if self.block_frames is not None:
            check_counts(self, "block_frames")
        if not self.proposal_var > 0:
            raise ValueError(f"proposal_var must be positive, got {self.proposal_var}")


class ChainStep(InferenceStep):
    """E-steps by a Markov chain on ``z`` carried over the iterations, targeting
    ``p(z | x; W, H, g)`` (:class:`~speechvae.enhancement.model.LatentPosterior`): the
    common part of MCEM and MALA-EM. A subclass gives the chain (:meth:`make_chain`) and
    the target it sees (:meth:`wrap_target`). One file at a time (several chains of one
    file run as one batch)."""

    def wrap_target(self, target: LatentPosterior):
        """The target as the kernel takes it (default: as it is)."""
        return target

    def make_chain(self, target: LatentPosterior) -> MarkovChain:
        raise NotImplementedError

    def kernel_for(self, target: LatentPosterior):
        return bind_kernel(self.kernel, self.wrap_target(target), self.prior.frame_factorised,
                           self.blocks)

    def start(self, nmf: NMFNoise) -> NMFNoise:
        self.target = LatentPosterior(self.prior, self.power, nmf)
        self.blocks = frame_blocks(self.power.shape[-1], self.config.block_frames,
                                   self.power.device, self.prior.frame_factorised)
        self.chain = self.make_chain(self.target)
        self.acceptance: list[float] = []
        return nmf

    def e_step(self, nmf: NMFNoise) -> EStep:
        self.chain.warmup(self.config.burnin)
        kept = list(self.chain.sample(self.config.samples))
        vs = torch.cat([s.aux for s in kept]) if kept[0].aux.dim() == 4 else \
            torch.stack([s.aux for s in kept])  # (samples [x chains], 1, F, T)
        self.acceptance.append(self.chain.last_accept)
        return EStep(vs, [self.target.mean_cost(kept, vs.numel())])

    def after_m_step(self, nmf: NMFNoise) -> None:
        self.target = LatentPosterior(self.prior, self.power, nmf)
        self.chain.kernel = self.kernel_for(self.target)
        self.chain.state = self.target.rescore(self.chain.state)

    def wiener_gain(self, nmf: NMFNoise) -> torch.Tensor:
        self.chain.warmup(self.config.final_burnin)
        with torch.no_grad():
            speech_vars = (self.target.nmf.g * s.aux
                           for s in self.chain.sample(self.config.final_samples))
            return wiener_gain(self.target.noise_var, speech_vars)

    def extras(self, b: int) -> dict:
        return {"acceptance": self.acceptance}


@register_algorithm("mcem")
class MCEMStep(ChainStep):
    """MCEM's E-step: random-walk Metropolis–Hastings from the encoder mean (Leglaive, Girin,
    Horaud, MLSP 2018)."""

    config_class = MCEMConfig
    summary = ("Monte Carlo EM, random-walk Metropolis-Hastings E-step (Leglaive, Girin, "
               "Horaud, MLSP 2018)")
    kernel = staticmethod(rw_metropolis_step)

    def make_chain(self, target: LatentPosterior) -> MarkovChain:
        with torch.no_grad():
            z0 = self.prior.encode(self.power).mean
            return MarkovChain(self.kernel_for(target), init_state(target, z0),
                               self.config.proposal_var, self.generators[0])

    def e_step(self, nmf: NMFNoise) -> EStep:
        with torch.no_grad():
            return super().e_step(nmf)


def mcem(prior: Prior, mixture_stft: torch.Tensor, config: MCEMConfig = MCEMConfig(),
         generator: torch.Generator | None = None) -> EMResult:
    """Enhance one mixture STFT with MCEM (random-walk Metropolis–Hastings E-step).

    Algorithm (one chain, carried over the iterations):

    1. ``z`` <- encoder mean of the noisy power spectrogram (``prior.encode``: the encoder
       mean path for a sequential encoder); ``W, H`` random (as VEM), ``g = 1``.
    2. Each iteration: ``burnin`` MH steps, then ``samples`` kept MH steps whose decoded
       speech variances feed ``m_steps`` passes of the M-step.
    3. Final E-step: ``final_burnin`` + ``final_samples`` MH steps; the Wiener gain is
       averaged over the kept ones.

    Args:
        prior: a pretrained prior (unchanged; only ``encode``, ``decode``, ``log_prior`` and
            ``frame_factorised`` are used).
        mixture_stft: complex STFT of the mixture, ``(1, freq, time)``.
        config: :class:`MCEMConfig`.
        generator: random generator (on the mixture's device) of every draw; the same seed
            gives the same result.

    Returns:
        :class:`~speechvae.enhancement.em.EMResult` (with the acceptance rates).

    Raises:
        ValueError: wrong shape or frequency size.

    References:
        Leglaive, Girin, Horaud, IEEE MLSP 2018.
    """
    return get_algorithm("mcem").run(prior, mixture_stft, config, generator)
