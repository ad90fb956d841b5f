"""The EM driver shared by every inference algorithm.

Every algorithm here fits the same model (:mod:`speechvae.enhancement.model`): a speech prior
``p(z)``, ``v(z)``, and an NMF noise model with a speech gain, fitted on the noisy file alone.
They differ only in how they handle ``z`` -- the E-step and the speech estimate -- so each one
is an :class:`InferenceStep` (``vem``: the prior's encoder fine-tuned as ``q(z | x)``;
``mcem``/``mala``: Markov chains on ``z``; ``bando``: Gibbs sampling of everything), and
:func:`run_em` owns the rest once for all of them:

1. check the mixtures (a right-padded batch with its lengths; one file is a batch of one);
2. the step's own latent initialisation, then the NMF start of each file drawn from its own
   generator (:func:`~speechvae.enhancement.model.initial_noise`);
3. iterate: E-step (speech-variance samples and each file's objective), M-step (the shared
   masked :func:`~speechvae.enhancement.model.m_step`, or the step's own update), the
   stopping rules per file (:func:`converged` on the objective, :func:`share_settled` on
   the speech share); a stopped file's parameters are frozen;
4. the speech estimate: the step's Wiener gain, raised to the suppression limit's floor
   (``config.atten_lim_db``) when one is set, applied to the mixture, each file cut back to
   its length.

Steps that can batch (``batched = True``: VEM) run the whole batch at once, padded frames
entering no sum; the others are run file by file through the same code. Either way a file's
result equals, to float rounding, its result alone with the same generator.

References:
    Dempster, Laird, Rubin, JRSS-B 1977 (EM); Leglaive, Girin, Horaud, IEEE MLSP 2018
    (the model and MCEM); Leglaive et al., ICASSP 2020, and Bie et al., IEEE/ACM TASLP 2022
    (VEM); pyro's split between inference kernel and driver.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..priors.base import Prior
from .model import (
    EMConfig,
    NMFNoise,
    attenuation_floor,
    gain_options,
    initial_noise,
    m_step,
    mixture_power,
)

__all__ = ["EMResult", "EStep", "InferenceStep", "converged", "run_em", "share_settled",
           "speech_share"]


@dataclass
class EMResult:
    """The result of one file.

    Attributes:
        speech: complex STFT estimate of the speech, ``(1, freq, time)``.
        noise: complex STFT estimate of the noise, ``(1, freq, time)`` (``speech + noise``
            is the mixture).
        nmf: the noise parameters and gain at the end (fitted, or the last Gibbs draw).
        objective: per iteration, the algorithm's objective per time-frequency bin (VEM: the
            negative ELBO; samplers: the mean of ``P / Vx + log Vx`` over the iteration's
            samples before the M-step).
        iterations: iterations run (Gibbs sweeps for ``bando``).
        acceptance: per iteration, the mean Metropolis–Hastings acceptance probability
            (samplers only).
        step_size: the adapted step sizes of a gradient-based sampler, else None.
        speech_share: per iteration, the speech share of :func:`speech_share` (filled when
            the speech-share stopping rule is on, ``config.share_tol > 0``).
    """

    speech: torch.Tensor
    noise: torch.Tensor
    nmf: NMFNoise
    objective: list[float] = field(default_factory=list)
    iterations: int = 0
    acceptance: list[float] = field(default_factory=list)
    step_size: torch.Tensor | None = None
    speech_share: list[float] = field(default_factory=list)


@dataclass
class EStep:
    """What an E-step hands to the driver.

    Attributes:
        speech_var: decoded speech variances of the step's samples, ``(samples, batch,
            freq, time)``, detached.
        objective: each file's objective per bin for this iteration, ``batch`` floats.
        moments: optional ``(1/Vx, P/Vx^2)`` at the current parameters (shape of
            ``speech_var``), which the first M-step pass can reuse.
    """

    speech_var: torch.Tensor
    objective: list[float]
    moments: tuple[torch.Tensor, torch.Tensor] | None = None


class InferenceStep:
    """Base of the inference algorithms: what differs between them, for :func:`run_em`.

    A subclass sets ``config_class`` (an :class:`~speechvae.enhancement.model.EMConfig`
    subclass) and ``summary``, is registered with
    :func:`~speechvae.enhancement.algorithms.register_algorithm`, and implements
    :meth:`e_step` and :meth:`wiener_gain` (and :meth:`init_latents`, :meth:`start`,
    :meth:`m_step`, :meth:`after_m_step` where the defaults do not fit).

    The driver creates one step per run, with every file's data:

    Args:
        prior: the speech prior (the step must leave it unchanged).
        mixture: complex mixture STFTs ``(batch, freq, time)``, zero in padded frames.
        power: mixture power spectrogram ``(batch, freq, time)``, zero in padded frames.
        mask: ``(batch, time)`` 0/1 of valid frames, or None when no frame is padded.
        lengths: valid frames per file.
        config: the algorithm's config.
        generators: one random generator per file (or None each).

    Attributes:
        batched: whether the step handles ``batch > 1`` itself (else the driver runs files
            one by one).
        active: ``(batch,)`` bool tensor of the files still iterating (set by the driver; a
            stopped file must not change and should draw no more random numbers).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[EMConfig]] = EMConfig
    summary: ClassVar[str] = ""
    batched: ClassVar[bool] = False

    def __init__(self, prior: Prior, mixture: torch.Tensor, power: torch.Tensor,
                 mask: torch.Tensor | None, lengths: list[int], config: EMConfig,
                 generators: list):
        self.prior = prior
        self.mixture = mixture
        self.power = power
        self.mask = mask
        self.lengths = lengths
        self.config = config
        self.generators = generators
        self.active = torch.ones(len(lengths), dtype=torch.bool, device=power.device)

    def init_latents(self) -> None:
        """Random draws of the latent start made *before* the NMF start (default: none)."""

    def start(self, nmf: NMFNoise) -> NMFNoise:
        """Set up the E-step state once the NMF start is known; returns the noise parameters
        to iterate from (default: ``nmf`` itself; a warm start may refine them)."""
        return nmf

    def e_step(self, nmf: NMFNoise) -> EStep:
        """One E-step at the current noise parameters."""
        raise NotImplementedError

    def m_step(self, nmf: NMFNoise, estep: EStep) -> NMFNoise:
        """The noise update: ``config.m_steps`` passes of the shared multiplicative updates
        (:func:`~speechvae.enhancement.model.m_step`) with the E-step's samples, masked."""
        opts = gain_options(self.config.gain, self.config.nmf_smoothness)
        new = m_step(self.power, estep.speech_var, nmf, mask=self.mask, moments=estep.moments,
                     **opts)
        for _ in range(self.config.m_steps - 1):
            new = m_step(self.power, estep.speech_var, new, mask=self.mask, **opts)
        return new

    def after_m_step(self, nmf: NMFNoise) -> None:
        """Re-target the E-step to the updated noise parameters (default: nothing)."""

    def wiener_gain(self, nmf: NMFNoise) -> torch.Tensor:
        """The final Wiener gain ``E[g v / (g v + W H)]``, ``(batch, freq, time)``."""
        raise NotImplementedError

    def extras(self, b: int) -> dict:
        """Extra :class:`EMResult` fields of file ``b`` (acceptance, step size)."""
        return {}


def share_settled(shares: Sequence[float], tol: float, window: int) -> bool:
    """The speech-share stopping rule: True when ``tol > 0``, at least ``2 window``
    iterations ran and the mean speech share of the last ``window`` iterations is less than
    ``tol`` below the mean of the ``window`` before (a share that rises also stops).

    Why (issue 15, README "Stopping on the speech share"): the share falls while the NMF
    takes over the noise; on low-SNR files it keeps falling for hundreds of iterations and
    every one of them helps, while on files where the noise model has what it can explain
    it levels off and further iterations only let the noise model eat speech."""
    if tol <= 0 or len(shares) < 2 * window:
        return False
    prev = sum(shares[-2 * window:-window]) / window
    cur = sum(shares[-window:]) / window
    return prev - cur < tol


def speech_share(power: torch.Tensor, speech_var: torch.Tensor, nmf: NMFNoise,
                 moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[float]:
    """Per file, the fraction of the mixture power that the Wiener filters of the E-step's
    samples keep: ``mean_r sum_ft (g v_r / Vx_r)^2 P / sum_ft P`` (padded frames have
    ``P = 0``). ``speech_var`` is ``(samples, batch, freq, time)``; ``moments`` the E-step's
    ``(1 / Vx, P / Vx^2)`` when it has them."""
    gvs = nmf.g * speech_var
    inv = moments[0] if moments is not None else (gvs + nmf.noise_variance()).reciprocal()
    kept = ((gvs * inv).square() * power).sum(dim=(2, 3)).mean(0)  # (batch,)
    return (kept / power.sum(dim=(1, 2)).clamp_min(1e-30)).tolist()


def converged(objective: Sequence[float], tol: float, window: int) -> bool:
    """The stopping rule of every algorithm: True when ``tol > 0``, at least ``2 window``
    iterations ran and the mean objective of the last ``window`` iterations differs from the
    mean of the ``window`` before by at most ``tol`` times the latter's magnitude."""
    if tol <= 0 or len(objective) < 2 * window:
        return False
    prev = sum(objective[-2 * window:-window]) / window
    cur = sum(objective[-window:]) / window
    return abs(cur - prev) <= tol * abs(prev)


def _freeze(new: NMFNoise, old: NMFNoise, active: torch.Tensor) -> NMFNoise:
    if bool(active.all()):
        return new
    a3 = active[:, None, None]
    return NMFNoise(torch.where(a3, new.W, old.W), torch.where(a3, new.H, old.H),
                    torch.where(a3, new.g, old.g))


def run_em(step_class: type[InferenceStep], prior: Prior, mixture_stfts: torch.Tensor,
           lengths: Sequence[int], config: EMConfig,
           generators: Sequence[torch.Generator | None] | None = None) -> list[EMResult]:
    """Enhance a batch of mixtures with one inference algorithm (see the module docstring).

    Args:
        step_class: the algorithm (a registered :class:`InferenceStep` subclass).
        prior: a pretrained prior (left unchanged).
        mixture_stfts: complex STFTs ``(batch, freq, time)``, right-padded: file ``b`` holds
            ``lengths[b]`` valid frames, then anything (treated as zeros).
        lengths: valid frames per file, ints in ``[1, time]``.
        config: the algorithm's config (an instance of ``step_class.config_class``).
        generators: one random generator per file (on the mixtures' device); None draws
            from torch's global generator.

    Returns:
        One :class:`EMResult` per file, cut to its length: speech and noise
        ``(1, freq, lengths[b])``, ``W (1, freq, rank)``, ``H (1, rank, lengths[b])``,
        ``g (1, 1, lengths[b])``.

    Raises:
        ValueError: wrong shape or frequency size, lengths out of range, or a generator
            list of the wrong size.
        TypeError: a config of another algorithm.
    """
    if not isinstance(config, step_class.config_class):
        raise TypeError(f"algorithm {step_class.name!r} takes a "
                        f"{step_class.config_class.__name__}, got {type(config).__name__}")
    mixture, power, mask, lengths = mixture_power(prior, mixture_stfts, lengths)
    n_files = len(lengths)
    generators = [None] * n_files if generators is None else list(generators)
    if len(generators) != n_files:
        raise ValueError(f"need one generator per file ({n_files}), got {len(generators)}")
    if n_files > 1 and not step_class.batched:
        return [run_em(step_class, prior, mixture[b:b + 1, :, :n], [n], config, [gen])[0]
                for b, (n, gen) in enumerate(zip(lengths, generators))]

    step = step_class(prior, mixture, power, mask, lengths, config, generators)
    step.init_latents()
    nmf = initial_noise(power, lengths, config.nmf_rank, config.init_noise_level, generators,
                        config.noise_init, config.floor_quantile)
    nmf = step.start(nmf)
    objectives: list[list[float]] = [[] for _ in range(n_files)]
    shares: list[list[float]] = [[] for _ in range(n_files)]
    iterations = [0] * n_files
    active = [True] * n_files
    for it in range(1, config.iterations + 1):
        step.active = torch.tensor(active, device=power.device)
        estep = step.e_step(nmf)
        with torch.no_grad():
            share = (speech_share(power, estep.speech_var, nmf, estep.moments)
                     if config.share_tol > 0 else None)
            nmf = _freeze(step.m_step(nmf, estep), nmf, step.active)
        step.after_m_step(nmf)
        for b in range(n_files):
            if active[b]:
                objectives[b].append(estep.objective[b])
                iterations[b] = it
                if share is not None:
                    shares[b].append(share[b])
                if (converged(objectives[b], config.tol, config.tol_window)
                        or share_settled(shares[b], config.share_tol, config.share_window)):
                    active[b] = False
        if not any(active):
            break
    step.active = torch.ones(n_files, dtype=torch.bool, device=power.device)
    with torch.no_grad():
        gain = step.wiener_gain(nmf)
        if config.atten_lim_db is not None:
            gain = gain.clamp_min(attenuation_floor(config.atten_lim_db))
        speech, noise = gain * mixture, (1.0 - gain) * mixture
    return [EMResult(speech[b:b + 1, :, :n], noise[b:b + 1, :, :n],
                     NMFNoise(nmf.W[b:b + 1], nmf.H[b:b + 1, :, :n], nmf.g[b:b + 1, :, :n]),
                     objectives[b], iterations[b], speech_share=shares[b], **step.extras(b))
            for b, n in enumerate(lengths)]
