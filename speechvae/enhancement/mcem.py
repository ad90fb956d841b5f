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
``block_frames`` frames) is accepted or rejected at once. The M-step is the shared
:func:`~speechvae.enhancement.nmf.m_step` fed with the kept samples; the speech estimate is
the Wiener filter averaged over the samples of a final, longer E-step.

References:
    Leglaive, Girin, Horaud, "A variance modeling framework based on variational
    autoencoders for speech enhancement", IEEE MLSP 2018 (MCEM, Algorithm 1); Wei & Tanner,
    JASA 1990 (Monte Carlo EM).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..priors.base import Prior
from .algorithms import register_algorithm
from .nmf import NMFNoise, average_wiener, init_nmf, m_step, time_major
from .samplers import ChainState, MarkovChain, init_state, rw_metropolis_step

__all__ = ["LatentPosterior", "MCEMConfig", "SamplingResult", "mcem"]

GAINS = ("frame", "global", "none")


def _check_positive(config, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    for name in names:
        value = getattr(config, name)
        low = 0 if name in allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {low}, "
                             f"got {value!r}")


def _check_common(config) -> None:
    """Checks shared by the sampling algorithms' configs."""
    _check_positive(config, "iterations", "nmf_rank")
    if config.gain not in GAINS:
        raise ValueError(f"gain must be one of {', '.join(GAINS)}, got {config.gain!r}")
    if config.block_frames is not None:
        _check_positive(config, "block_frames")
    if not config.init_noise_level > 0:
        raise ValueError(f"init_noise_level must be positive, got {config.init_noise_level}")


@dataclass(frozen=True)
class MCEMConfig:
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
        tol: stop when the absolute change of the mean per-bin cost
            ``mean_r,f,t [P / Vx + log Vx]`` between iterations falls below this (0 disables;
            the authors' code uses 1e-4 on the cost after the M-step; here it is the cost of
            the samples before it, see :class:`SamplingResult`). The cost is a Monte Carlo
            estimate, so a positive ``tol`` stops at a random iteration.
        m_steps: passes of the NMF/gain updates per iteration.
        gain: ``"frame"`` (one speech gain per frame, as the paper), ``"global"`` or
            ``"none"`` (see :class:`VEMConfig`).
        init_noise_level: initial level of ``W H`` relative to the mean mixture power.
        block_frames: for priors whose ``p(z)`` does not factorise over frames: the number
            of consecutive frames a proposal moves (the blocks are visited in turn, one per
            step; ``burnin`` and ``samples`` then count block moves). None moves the whole
            sequence at once. Ignored for frame-factorised priors.
    """

    iterations: int = 100
    nmf_rank: int = 8
    proposal_var: float = 0.01
    burnin: int = 30
    samples: int = 10
    final_burnin: int = 75
    final_samples: int = 25
    tol: float = 0.0
    m_steps: int = 1
    gain: str = "frame"
    init_noise_level: float = 1.0
    block_frames: int | None = None

    def __post_init__(self):
        _check_common(self)
        _check_positive(self, "samples", "final_samples", "m_steps")
        _check_positive(self, "burnin", "final_burnin", allow_zero=("burnin", "final_burnin"))
        if not self.proposal_var > 0:
            raise ValueError(f"proposal_var must be positive, got {self.proposal_var}")


@dataclass
class SamplingResult:
    """Output of the sampling-based algorithms (:func:`mcem`, :func:`~.mcmc.mala`,
    :func:`~.mcmc.bando`) for one mixture.

    Attributes:
        speech: complex STFT estimate of the speech, ``(1, freq, time)``.
        noise: complex STFT estimate of the noise, ``(1, freq, time)``.
        nmf: the noise parameters and gain at the end (fitted for the EM algorithms, the
            last Gibbs draw for :func:`~.mcmc.bando`).
        objective: per iteration, the mean per-bin cost ``P / Vx + log Vx`` (up to the
            constant ``log pi``) of the iteration's samples under the parameters they were
            drawn with (before the M-step; for ``bando``, of the sweep's ``z`` draw).
        iterations: iterations (Gibbs sweeps for ``bando``) run.
        acceptance: per iteration, the mean acceptance probability of the kept
            Metropolis–Hastings steps.
        step_size: final (adapted) step size of gradient-based samplers, else None.
    """

    speech: torch.Tensor
    noise: torch.Tensor
    nmf: NMFNoise
    objective: list[float] = field(default_factory=list)
    iterations: int = 0
    acceptance: list[float] = field(default_factory=list)
    step_size: torch.Tensor | None = None


class LatentPosterior:
    """The E-step target ``log p(z | x; W, H, g)`` up to a constant, per frame.

    ``log p(z | x) = sum_t [ -sum_f (log Vx_ft + P_ft / Vx_ft) + log p(z)_t ]`` with
    ``Vx = g v(z) + W H`` and ``log p(z)_t`` the prior's :meth:`~Prior.log_prior`.
    Calling it evaluates the target and returns the decoded speech variance too, so that a
    chain carries ``v(z)`` along and never decodes twice.

    Args:
        prior: the speech prior (only ``decode`` and ``log_prior`` are used).
        power: mixture power spectrogram ``(batch, freq, time)``.
        nmf: noise parameters and gain, ``W (batch, freq, rank)``, ``H (batch, rank, time)``,
            ``g (batch, 1, time)``.

    Shape:
        ``z (..., batch, latent, time)`` -> log density ``(..., batch, time)`` and speech
        variance ``(..., batch, freq, time)``; leading dimensions (chains) broadcast.
    """

    def __init__(self, prior: Prior, power: torch.Tensor, nmf: NMFNoise):
        self.prior = prior
        self.power = power
        self.nmf = nmf
        self.noise_var = nmf.noise_variance()

    def log_likelihood(self, speech_var: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per frame up to a constant, ``-sum_f [log Vx + P / Vx]``.

        Args:
            speech_var: decoded speech variance ``v`` (linear power).

        Returns:
            ``(..., batch, time)``.

        Shape:
            ``speech_var (..., batch, freq, time)``.
        """
        vx = self.nmf.g * speech_var + self.noise_var
        return -(torch.log(vx) + self.power / vx).sum(-2)

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target at ``z`` (no gradient): ``(log density per frame (..., batch, time),
        speech variance v(z) (..., batch, freq, time))``."""
        with torch.no_grad():
            v = self.prior.decode(z)
            return self.log_likelihood(v) + self.prior.log_prior(z), v

    def with_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log density per frame, v(z), gradient of the summed log density in z)``.

        The gradient of the mixture term is formed in closed form in ``v``,
        ``d/dv [-(log Vx + P/Vx)] = g (P - Vx) / Vx^2``, and back-propagated through the
        decoder (one backward pass, no autograd graph over the ``(freq, time)`` algebra).
        """
        g = self.nmf.g
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            v = self.prior.decode(z)
            log_p = self.prior.log_prior(z)
            with torch.no_grad():
                vd = v.detach()
                inv = (g * vd + self.noise_var).reciprocal()
                p_inv = self.power * inv
                ll = (torch.log(inv) - p_inv).sum(-2)
                grad_v = g * (p_inv - 1.0) * inv
            (grad,) = torch.autograd.grad([v, log_p], [z], [grad_v, torch.ones_like(log_p)])
        return ll + log_p.detach(), vd, grad

    def rescore(self, state: ChainState) -> ChainState:
        """The same chain position scored under this target (after an M-step changed the
        noise parameters): re-uses the carried speech variance, so no decoder pass unless a
        gradient is needed.

        Args:
            state: a chain state whose ``aux`` is ``v(z)``.

        Returns:
            the :class:`ChainState` at ``state.z`` under this target (with a gradient if
            ``state`` had one).
        """
        if state.grad is not None:
            lp, v, grad = self.with_grad(state.z)
            return ChainState(state.z, lp, v, grad)
        with torch.no_grad():
            lp = self.log_likelihood(state.aux) + self.prior.log_prior(state.z)
        return ChainState(state.z, lp, state.aux)


def _check_mixture(prior: Prior, mixture_stft: torch.Tensor) -> torch.Tensor:
    """Check a mixture STFT and return its power spectrogram (time-major layout).

    Raises:
        ValueError: shape other than ``(1, freq, time)`` or a frequency size other than the
            prior's.
    """
    if mixture_stft.dim() != 3 or mixture_stft.shape[0] != 1:
        raise ValueError(f"mixture_stft must have shape (1, freq, time), "
                         f"got {tuple(mixture_stft.shape)}")
    if mixture_stft.shape[1] != prior.stft_config.n_freq:
        raise ValueError(f"mixture has {mixture_stft.shape[1]} frequency bins, the prior "
                         f"expects {prior.stft_config.n_freq}")
    return time_major(mixture_stft.abs().square())


def _gain_options(gain: str) -> dict:
    """Keyword arguments of :func:`m_step` for a ``gain`` setting."""
    return {"update_gain": gain != "none", "global_gain": gain == "global"}


def _initial_noise(power: torch.Tensor, rank: int, level: float,
                  generator: torch.Generator | None) -> NMFNoise:
    """:func:`init_nmf` with ``H`` scaled by ``level`` (the VEM initialisation)."""
    nmf = init_nmf(power, rank, generator)
    return NMFNoise(nmf.W, nmf.H * level, nmf.g)


def _frame_blocks(prior: Prior, n_frames: int, block_frames: int | None,
                 device) -> Iterator[torch.Tensor] | None:
    """Endless cycle of ``(time,)`` 0/1 masks of consecutive blocks of frames, or None when
    the prior factorises over frames or no blocking is asked for."""
    if prior.frame_factorised or block_frames is None or block_frames >= n_frames:
        return None
    masks = []
    for start in range(0, n_frames, block_frames):
        m = torch.zeros(n_frames, device=device)
        m[start:start + block_frames] = 1.0
        masks.append(m)
    return itertools.cycle(masks)


def _make_kernel(step_fn, target, frame_factorised: bool, blocks):
    """Bind a kernel (:func:`rw_metropolis_step` or :func:`mala_step`) to a target; with
    ``blocks``, each call moves the next block of frames."""

    def kernel(state, step_size, generator):
        block = None if blocks is None else next(blocks)
        return step_fn(state, target, step_size, generator,
                       frame_factorised=frame_factorised, block=block)

    return kernel


def _sample_cost(prior: Prior, states: list[ChainState], n_bins: int) -> float:
    """Mean per-bin cost ``P / Vx + log Vx`` of chain states, read off their log densities
    (``log_prob - log p(z)``), so no pass over the ``(freq, time)`` tensors."""
    with torch.no_grad():
        total = sum(float((s.log_prob - prior.log_prior(s.z)).sum()) for s in states)
    return -total / n_bins


def _wiener_from_chain(chain: MarkovChain, target: LatentPosterior, n: int,
                      mixture_stft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech and noise STFTs from the Wiener gain averaged over ``n`` chain states (and
    over the chains, the leading dimension of the state, if any)."""
    speech_vars = (target.nmf.g * state.aux for state in chain.sample(n))
    return average_wiener(mixture_stft, target.noise_var, speech_vars)


@register_algorithm("mcem", MCEMConfig, "Monte Carlo EM, random-walk Metropolis-Hastings "
                    "E-step (Leglaive, Girin, Horaud, MLSP 2018)")
def mcem(prior: Prior, mixture_stft: torch.Tensor, config: MCEMConfig = MCEMConfig(),
         generator: torch.Generator | None = None) -> SamplingResult:
    """Enhance one mixture STFT with MCEM (random-walk Metropolis–Hastings E-step).

    Algorithm (one chain, carried over the iterations):

    1. ``z`` <- encoder mean of the noisy power spectrogram (``prior.encode``: the encoder
       mean path for a sequential encoder); ``W, H`` random (as VEM),
       ``g = 1``.
    2. Each iteration: ``burnin`` MH steps, then ``samples`` kept MH steps whose decoded
       speech variances feed ``m_steps`` passes of :func:`m_step`.
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
        :class:`SamplingResult`.

    Shape:
        ``mixture_stft (1, freq, time)`` -> ``speech, noise (1, freq, time)``.

    Raises:
        ValueError: wrong shape or frequency size.

    References:
        Leglaive, Girin, Horaud, IEEE MLSP 2018.
    """
    power = _check_mixture(prior, mixture_stft)
    n_frames = power.shape[-1]
    with torch.no_grad():
        z0 = prior.encode(power).mean
        nmf = _initial_noise(power, config.nmf_rank, config.init_noise_level, generator)
    target = LatentPosterior(prior, power, nmf)
    blocks = _frame_blocks(prior, n_frames, config.block_frames, power.device)
    factorised = prior.frame_factorised
    chain = MarkovChain(_make_kernel(rw_metropolis_step, target, factorised, blocks),
                        init_state(target, z0), config.proposal_var, generator)
    objective: list[float] = []
    acceptance: list[float] = []
    it = 0
    with torch.no_grad():
        for it in range(1, config.iterations + 1):
            chain.warmup(config.burnin)
            kept = list(chain.sample(config.samples))
            vs = torch.stack([s.aux for s in kept])  # (R, 1, F, T)
            acceptance.append(chain.last_accept)
            objective.append(_sample_cost(prior, kept, vs.numel()))
            for _ in range(config.m_steps):
                nmf = m_step(power, vs, nmf, **_gain_options(config.gain))
            target = LatentPosterior(prior, power, nmf)
            chain.kernel = _make_kernel(rw_metropolis_step, target, factorised, blocks)
            chain.state = target.rescore(chain.state)
            if config.tol > 0 and it >= 2 and abs(objective[-1] - objective[-2]) < config.tol:
                break
        chain.warmup(config.final_burnin)
        speech, noise = _wiener_from_chain(chain, target, config.final_samples, mixture_stft)
    return SamplingResult(speech, noise, nmf, objective, it, acceptance)
