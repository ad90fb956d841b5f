"""Markov chain Monte Carlo building blocks: kernels, a chain driver, a GIG sampler.

The layout follows pyro's split between a *kernel* and a *driver*:

* a kernel (:func:`rw_metropolis_step`, :func:`mala_step`) does one Metropolis–Hastings step.
  It is a pure function of the chain state, a step size and a ``torch.Generator``, and returns
  the new state and the acceptance probabilities;
* the driver (:class:`MarkovChain`) owns the state, the step size, its adaptation during
  warm-up, and the numbers of warm-up and kept steps.

Targets are log densities over latent sequences ``z`` of shape ``(..., latent, time)``, given
as callables returning *per-frame* terms ``(..., time)`` whose sum over time is the log
density (up to a constant). When the target factorises over frames (``frame_factorised``),
each frame is an independent sub-chain and is accepted or rejected on its own; otherwise the
terms are summed and a proposal is accepted or rejected for the whole sequence (optionally
moving only a block of frames at a time, see ``block``). Leading dimensions (chains, batch)
are independent chains throughout.

Shapes: ``z (..., latent, time)``; per-frame log densities and acceptance probabilities
``(..., time)`` (frame-factorised) or ``(...,)`` (whole sequence).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

__all__ = [
    "ChainState",
    "LogDensity",
    "LogDensityGrad",
    "MarkovChain",
    "autograd_log_density",
    "bind_kernel",
    "frame_blocks",
    "init_state",
    "mala_step",
    "rw_metropolis_step",
    "sample_gig",
]

#: ``z -> (per-frame log density (..., time), aux or None)``. ``aux`` is any tensor of shape
#: ``(..., X, time)`` computed with the log density (e.g. the decoded speech variance) that
#: should move with ``z`` when a proposal is accepted.
LogDensity = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
#: As :data:`LogDensity`, plus the gradient of the summed log density with respect to ``z``.
LogDensityGrad = Callable[[torch.Tensor],
                          tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]


@dataclass(frozen=True)
class ChainState:
    """The state of a batch of Markov chains on latent sequences.

    Attributes:
        z: current latent sequence, ``(..., latent, time)``.
        log_prob: per-frame log target at ``z``, ``(..., time)`` (sum over time = log
            density up to a constant).
        aux: optional tensor ``(..., X, time)`` computed with ``log_prob`` (kept in step
            with ``z``), e.g. the decoded speech variance.
        grad: gradient of the summed log target at ``z`` (gradient-based kernels only),
            ``(..., latent, time)``.
    """

    z: torch.Tensor
    log_prob: torch.Tensor
    aux: torch.Tensor | None = None
    grad: torch.Tensor | None = None


def autograd_log_density(log_density: LogDensity) -> LogDensityGrad:
    """Wrap a log density so that it also returns its gradient (by autograd).

    Args:
        log_density: callable ``z -> (log_prob (..., time), aux)``, differentiable in ``z``
            (it must not switch gradients off inside).

    Returns:
        callable ``z -> (log_prob, aux, grad)`` with ``grad`` of the shape of ``z``, the
        gradient of ``log_prob.sum()``; every output is detached.

    Shape:
        ``z (..., latent, time)``; ``log_prob (..., time)`` (or ``(..., 1)``).

    Raises:
        RuntimeError: from autograd, if ``log_density`` does not depend differentiably on
            ``z``.

    References:
        Roberts & Tweedie, Bernoulli 1996 (the gradient drives the Langevin proposal).
    """

    def with_grad(z: torch.Tensor):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            lp, aux = log_density(z)
            (grad,) = torch.autograd.grad(lp.sum(), z)
        return lp.detach(), None if aux is None else aux.detach(), grad

    return with_grad


def init_state(log_density: LogDensity | LogDensityGrad, z: torch.Tensor,
               with_grad: bool = False) -> ChainState:
    """Evaluate the target at a starting point.

    Args:
        log_density: a :data:`LogDensity`, or a :data:`LogDensityGrad` if ``with_grad``.
        z: starting point ``(..., latent, time)``.
        with_grad: also store the gradient (needed by :func:`mala_step`).

    Returns:
        :class:`ChainState` at ``z`` (``z`` detached).

    Shape:
        ``z (..., latent, time)``; ``log_prob (..., time)``.

    Raises:
        whatever ``log_density`` raises (nothing is checked here).

    References:
        Pyro's kernel/driver split (``pyro.infer.mcmc``): the state a kernel works on.
    """
    if with_grad:
        lp, aux, grad = log_density(z)
        return ChainState(z.detach(), lp, aux, grad)
    with torch.no_grad():
        lp, aux = log_density(z)
    return ChainState(z.detach(), lp, aux)


def _accept(state: ChainState, proposal: ChainState, log_ratio: torch.Tensor,
            generator: torch.Generator | None, frame_factorised: bool
            ) -> tuple[ChainState, torch.Tensor]:
    """Accept or reject ``proposal`` (per frame or per sequence) given the log MH ratio,
    ``(..., time)`` for a frame-factorised target, else ``(...,)`` (see :func:`_log_ratio`).
    A NaN ratio (e.g. an overflowing decoder) counts as a rejection.
    """
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
    log_u = torch.rand(log_ratio.shape, generator=generator, device=log_ratio.device,
                       dtype=log_ratio.dtype).log()
    accepted = log_u < log_ratio
    # broadcast the decision over the latent / frequency axes (and time if whole-sequence)
    frame_mask = accepted[..., None, :] if frame_factorised else accepted[..., None, None]
    lp_mask = accepted if frame_factorised else accepted[..., None]

    def pick(new, old, mask):
        return None if new is None else torch.where(mask, new, old)

    new = ChainState(
        z=torch.where(frame_mask, proposal.z, state.z),
        log_prob=torch.where(lp_mask, proposal.log_prob, state.log_prob),
        aux=pick(proposal.aux, state.aux, frame_mask),
        grad=pick(proposal.grad, state.grad, frame_mask),
    )
    return new, log_ratio.clamp(max=0.0).exp()


def _log_ratio(lp_new: torch.Tensor, lp_old: torch.Tensor, log_q_ratio: torch.Tensor | None,
               frame_factorised: bool) -> torch.Tensor:
    """``log pi(z') - log pi(z) [+ log q(z|z') - log q(z'|z)]``: per frame ``(..., time)``,
    or summed over the sequence ``(...,)``. Each term is summed on its own, so a target may
    give its log density as per-frame terms ``(..., time)`` or as one total ``(..., 1)``."""
    if frame_factorised:
        return lp_new - lp_old if log_q_ratio is None else lp_new - lp_old + log_q_ratio
    out = (lp_new - lp_old).sum(-1)
    return out if log_q_ratio is None else out + log_q_ratio.sum(-1)


def _block_mask(block: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor | None:
    """A ``(..., 1, time)`` 0/1 mask of the frames a proposal may move, or None (all)."""
    if block is None:
        return None
    block = torch.as_tensor(block, device=z.device)
    return block.to(z.dtype).unsqueeze(-2)


def rw_metropolis_step(state: ChainState, log_density: LogDensity,
                       proposal_var: float | torch.Tensor,
                       generator: torch.Generator | None = None,
                       frame_factorised: bool = True,
                       block: torch.Tensor | None = None) -> tuple[ChainState, torch.Tensor]:
    """One random-walk Metropolis–Hastings step, ``z' = z + sqrt(proposal_var) * N(0, I)``.

    The proposal is symmetric, so ``log a = log pi(z') - log pi(z)``; per frame when the
    target factorises over frames (each frame is then its own chain), else summed over the
    sequence.

    Args:
        state: current :class:`ChainState` (``grad`` is ignored and dropped).
        log_density: the target, ``z -> (per-frame log density (..., time), aux)``.
        proposal_var: variance of the Gaussian increments; a float or a tensor broadcastable
            to the per-frame shape ``(..., time)``.
        generator: random generator (on ``z``'s device).
        frame_factorised: accept per frame (True) or per sequence (False).
        block: optional ``(..., time)`` 0/1 mask of the frames the proposal moves (the other
            frames stay); with a non-factorised target this gives blocked updates.

    Returns:
        ``(new_state, accept_prob)``, ``accept_prob = min(1, a)`` of shape ``(..., time)``
        (frame-factorised) or ``(...,)``.

    Shape:
        ``z (..., latent, time)``.

    Raises:
        RuntimeError: from ``log_density`` only (no checks here, for speed).

    References:
        Metropolis et al., J. Chem. Phys. 1953; Hastings, Biometrika 1970; for speech
        enhancement with a VAE prior: Leglaive, Girin, Horaud, MLSP 2018.
    """
    z = state.z
    step = torch.as_tensor(proposal_var, device=z.device, dtype=z.dtype)
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    noise = noise * step.sqrt().unsqueeze(-2) if step.dim() else noise * step.sqrt()
    mask = _block_mask(block, z)
    if mask is not None:
        noise = noise * mask
    z_new = z + noise
    with torch.no_grad():
        lp_new, aux_new = log_density(z_new)
    proposal = ChainState(z_new, lp_new, aux_new)
    log_ratio = _log_ratio(lp_new, state.log_prob, None, frame_factorised)
    return _accept(replace(state, grad=None), proposal, log_ratio, generator, frame_factorised)


def mala_step(state: ChainState, log_density: LogDensityGrad, step_size: float | torch.Tensor,
              generator: torch.Generator | None = None, frame_factorised: bool = True,
              block: torch.Tensor | None = None) -> tuple[ChainState, torch.Tensor]:
    """One Metropolis-adjusted Langevin step.

    Proposal ``z' = z + (eps / 2) grad log pi(z) + sqrt(eps) * N(0, I)``, accepted with
    probability ``min(1, a)``,

        log a = log pi(z') - log pi(z) + log q(z | z') - log q(z' | z),
        log q(b | a) = -|b - a - (eps / 2) grad log pi(a)|^2 / (2 eps)   (+ const),

    per frame when the target factorises over frames (the gradient of a frame's term then
    depends on that frame only, so each frame is an exact MALA chain of its own), else summed
    over the sequence. With ``block``, only the frames of the block move and the proposal
    densities are taken over those coordinates.

    Args:
        state: current :class:`ChainState`, with ``grad`` (see :func:`init_state`).
        log_density: ``z -> (per-frame log density, aux, grad of the summed log density)``.
        step_size: ``eps`` (variance of the noise), a float or a tensor broadcastable to the
            per-frame shape ``(..., time)``.
        generator: random generator (on ``z``'s device).
        frame_factorised: accept per frame (True) or per sequence (False).
        block: optional ``(..., time)`` 0/1 mask of the frames to move.

    Returns:
        ``(new_state, accept_prob)`` as :func:`rw_metropolis_step`.

    Shape:
        ``z (..., latent, time)``.

    Raises:
        ValueError: ``state.grad`` is missing.

    References:
        Roberts & Tweedie, "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli 1996; Roberts & Rosenthal, JRSS-B 1998 (optimal
        acceptance 0.574); for unsupervised speech enhancement: Sadeghi & Serizel,
        "Posterior sampling algorithms for unsupervised speech enhancement with recurrent
        variational autoencoder", arXiv:2309.10439, 2023.
    """
    if state.grad is None:
        raise ValueError("mala_step needs a state with a gradient (init_state(..., "
                         "with_grad=True))")
    z = state.z
    eps = torch.as_tensor(step_size, device=z.device, dtype=z.dtype)
    eps = eps.unsqueeze(-2) if eps.dim() else eps  # per frame -> broadcast over latent
    mask = _block_mask(block, z)
    one = 1.0 if mask is None else mask
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    z_new = z + one * (0.5 * eps * state.grad + eps.sqrt() * noise)
    lp_new, aux_new, grad_new = log_density(z_new)
    proposal = ChainState(z_new, lp_new, aux_new, grad_new)
    fwd = one * (z_new - z - 0.5 * eps * state.grad)
    bwd = one * (z - z_new - 0.5 * eps * grad_new)
    log_q_ratio = ((fwd.square() - bwd.square()) / (2 * eps)).sum(-2)  # (..., time)
    log_ratio = _log_ratio(lp_new, state.log_prob, log_q_ratio, frame_factorised)
    return _accept(state, proposal, log_ratio, generator, frame_factorised)


Kernel = Callable[[ChainState, torch.Tensor, torch.Generator | None],
                  tuple[ChainState, torch.Tensor]]


def _mean_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Average ``x`` over the dimensions along which ``shape`` broadcasts."""
    if x.shape == shape:
        return x
    return x.sum_to_size(shape) * (math.prod(shape) / x.numel())


class MarkovChain:
    """Driver of a (batch of) Markov chain(s): warm-up with step-size adaptation, then
    kept samples.

    During :meth:`warmup`, if ``target_accept`` is set, the step size is adapted by a
    Robbins–Monro recursion on its logarithm,
    ``log eps <- log eps + adapt_gain * (mean acceptance - target_accept)``, the mean being
    taken over the dimensions along which the step size is shared (e.g. over chains for a
    per-frame step size). :meth:`sample` never adapts, so the kept steps form a
    homogeneous Markov chain with the target as invariant distribution.

    Args:
        kernel: ``(state, step_size, generator) -> (state, accept_prob)``, e.g.
            ``functools.partial(mala_step, log_density=target)`` with the arguments named.
        state: initial :class:`ChainState`.
        step_size: initial step size (tensor broadcastable to the acceptance shape, or a
            float).
        generator: random generator of every draw.
        target_accept: acceptance rate aimed at during warm-up (None: no adaptation).
        adapt_gain: gain of the adaptation.

    Attributes:
        state, step_size, kernel: public, so that an EM algorithm can re-target the chain
            (replace the kernel and re-score the state) after its M-step.
        steps: kernel steps run so far.
        last_accept: mean acceptance probability of the last :meth:`sample` call.

    References:
        Robbins & Monro 1951; Andrieu & Thoms, "A tutorial on adaptive MCMC", Stat. Comput.
        2008 (adaptation restricted to warm-up keeps the kept samples valid).
    """

    def __init__(self, kernel: Kernel, state: ChainState, step_size: float | torch.Tensor,
                 generator: torch.Generator | None = None, target_accept: float | None = None,
                 adapt_gain: float = 0.5):
        self.kernel = kernel
        self.state = state
        self.step_size = torch.as_tensor(step_size, device=state.z.device, dtype=state.z.dtype)
        self.generator = generator
        self.target_accept = target_accept
        self.adapt_gain = adapt_gain
        self.steps = 0
        self.last_accept = math.nan

    def step(self, adapt: bool = False) -> torch.Tensor:
        """Run one kernel step (adapting the step size if ``adapt`` and ``target_accept``).

        Returns:
            the acceptance probabilities of the step, ``(..., time)`` or ``(...,)``.
        """
        self.state, accept = self.kernel(self.state, self.step_size, self.generator)
        self.steps += 1
        if adapt and self.target_accept is not None:
            if self.step_size.dim():
                while accept.dim() < self.step_size.dim():  # per-sequence acceptance
                    accept = accept.unsqueeze(-1)
                acc = _mean_to(accept, self.step_size.shape)
            else:
                acc = accept.mean()
            self.step_size = self.step_size * torch.exp(
                self.adapt_gain * (acc - self.target_accept))
        return accept

    def warmup(self, n: int) -> float:
        """Run ``n`` steps (adapting the step size if ``target_accept`` is set).

        Returns:
            the mean acceptance probability over those steps (nan if ``n == 0``).
        """
        total = 0.0
        for _ in range(n):
            total += float(self.step(adapt=True).mean())
        return total / n if n else math.nan

    def sample(self, n: int, thin: int = 1) -> Iterator[ChainState]:
        """Yield ``n`` states, each after ``thin`` kernel steps (no adaptation).

        The mean acceptance probability of those steps is in :attr:`last_accept` once the
        iterator is exhausted.
        """
        total, count = 0.0, 0
        for _ in range(n):
            for _ in range(thin):
                total += float(self.step().mean())
                count += 1
            yield self.state
        self.last_accept = total / count if count else math.nan


def frame_blocks(n_frames: int, block_frames: int | None, device,
                 frame_factorised: bool = False) -> Iterator[torch.Tensor] | None:
    """Endless cycle of ``(time,)`` 0/1 masks of consecutive blocks of ``block_frames``
    frames (the ``block`` argument of the kernels), or None when the target factorises over
    frames, no blocking is asked for, or one block would cover the sequence."""
    if frame_factorised or block_frames is None or block_frames >= n_frames:
        return None
    masks = []
    for start in range(0, n_frames, block_frames):
        m = torch.zeros(n_frames, device=device)
        m[start:start + block_frames] = 1.0
        masks.append(m)
    return itertools.cycle(masks)


def bind_kernel(step_fn, target, frame_factorised: bool,
                blocks: Iterator[torch.Tensor] | None) -> Kernel:
    """A :class:`MarkovChain` kernel ``(state, step_size, generator) -> (state, accept)``
    from :func:`rw_metropolis_step` or :func:`mala_step` and a target; with ``blocks``
    (:func:`frame_blocks`), each call moves the next block of frames."""

    def kernel(state, step_size, generator):
        block = None if blocks is None else next(blocks)
        return step_fn(state, target, step_size, generator,
                       frame_factorised=frame_factorised, block=block)

    return kernel


# -- generalised inverse Gaussian ----------------------------------------------------------

def _gig_logq(x: torch.Tensor, lam: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Log quasi-density ``(lam - 1) log x - omega (x + 1/x) / 2`` (``-inf`` for x <= 0)."""
    pos = x > 0
    xs = torch.where(pos, x, torch.ones_like(x))
    val = (lam - 1) * torch.log(xs) - 0.5 * omega * (xs + 1 / xs)
    return torch.where(pos, val, torch.full_like(x, -math.inf))


def _gig_standard(lam: torch.Tensor, omega: torch.Tensor, generator, max_rounds: int = 10_000
                  ) -> torch.Tensor:
    """Draws of the two-parameter GIG, density ``∝ x^(lam-1) exp(-omega (x + 1/x) / 2)``,
    for ``lam >= 0``, ``omega > 0`` (float64, flat tensors of equal length).

    Hörmann & Leydold (2014), with their three regimes: ratio-of-uniforms with mode shift
    (``lam >= 1`` or ``omega > 1``), ratio-of-uniforms without mode shift (``lam < 1``,
    ``min(1/2, 2/3 sqrt(1 - lam)) <= omega <= 1``), and their rejection algorithm with a
    three-piece hat (smaller ``omega``).
    """
    n = lam.numel()
    dev = lam.device
    one = torch.ones_like(lam)
    r = torch.sqrt((lam - 1).square() + omega.square())
    mode = torch.where(lam >= 1, (lam - 1 + r) / omega, omega / (r + 1 - lam))
    shift = (lam >= 1) | (omega > 1)
    no_shift = ~shift & (omega >= torch.minimum(0.5 * one, 2 / 3 * torch.sqrt(
        (1 - lam).clamp_min(0))))
    hat = ~shift & ~no_shift
    lq_mode = _gig_logq(mode, lam, omega)

    # regime 1: mode shift; bounding rectangle from the roots of the cubic
    # x^3 + a2 x^2 + a1 x + m whose roots are the extrema of (x - m) sqrt(f(x))
    a2 = -2 * (lam + 1) / omega - mode
    a1 = 2 * mode * (lam - 1) / omega - 1
    p1 = a1 - a2.square() / 3
    q1 = 2 * a2.pow(3) / 27 - a2 * a1 / 3 + mode
    p1s = torch.where(shift, p1, -one)  # p1 < 0 in this regime; placeholders elsewhere
    phi = torch.acos((-q1 / 2 * torch.sqrt(-27 / p1s.pow(3))).clamp(-1, 1))
    s1 = -torch.sqrt(-4 * p1s / 3)
    root1 = s1 * torch.cos(phi / 3 + math.pi / 3) - a2 / 3
    root2 = -s1 * torch.cos(phi / 3) - a2 / 3
    v1min = (root1 - mode) * torch.exp(0.5 * (_gig_logq(root1, lam, omega) - lq_mode))
    v1max = (root2 - mode) * torch.exp(0.5 * (_gig_logq(root2, lam, omega) - lq_mode))

    # regime 2: no shift
    xplus = ((1 + lam) + torch.sqrt((1 + lam).square() + omega.square())) / omega
    u2max = torch.exp(0.5 * lq_mode)
    v2max = xplus * torch.exp(0.5 * _gig_logq(xplus, lam, omega))

    # regime 3: three-piece hat (lam < 1, small omega)
    x0 = omega / (1 - lam).clamp_min(1e-300)
    xs = torch.maximum(x0, 2 / omega)
    k1 = torch.exp(lq_mode)
    area1 = k1 * x0
    k2 = torch.where(x0 < 2 / omega, torch.exp(-omega), torch.zeros_like(omega))
    lam_pos = lam > 0
    lam_safe = torch.where(lam_pos, lam, one)
    area2_pos = k2 * ((2 / omega).pow(lam_safe) - x0.pow(lam_safe)) / lam_safe
    area2_zero = k2 * torch.log(2 / omega.square())
    area2 = torch.where(x0 < 2 / omega, torch.where(lam_pos, area2_pos, area2_zero),
                        torch.zeros_like(omega))
    k3 = xs.pow(lam - 1)
    area3 = 2 * k3 * torch.exp(-xs * omega / 2) / omega
    area = area1 + area2 + area3

    out = torch.empty_like(lam)
    pending = torch.arange(n, device=dev)
    regimes = [(shift, _gig_try_shift), (no_shift, _gig_try_noshift), (hat, _gig_try_hat)]
    consts = {"mode": mode, "lq_mode": lq_mode, "v1min": v1min, "v1max": v1max,
              "u2max": u2max, "v2max": v2max, "x0": x0, "xs": xs, "k1": k1, "k2": k2,
              "k3": k3, "area1": area1, "area2": area2, "area": area, "lam_safe": lam_safe,
              "lam_pos": lam_pos, "lam": lam, "omega": omega}
    for _ in range(max_rounds):
        if pending.numel() == 0:
            return out
        # several candidates per pending draw and round (fewer, larger tensor operations)
        tries = 4
        k = pending.numel()
        u = torch.rand((tries, k), generator=generator, device=dev, dtype=lam.dtype)
        w = torch.rand((tries, k), generator=generator, device=dev, dtype=lam.dtype)
        x = torch.zeros((tries, k), device=dev, dtype=lam.dtype)
        ok = torch.zeros((tries, k), device=dev, dtype=torch.bool)
        for in_regime, attempt in regimes:
            sel = in_regime[pending]
            if not bool(sel.any()):
                continue
            idx = pending[sel]
            c = {key: val[idx] for key, val in consts.items()}
            xr, okr = attempt(u[:, sel], w[:, sel], c)
            x[:, sel], ok[:, sel] = xr, okr
        ok &= (x > 0) & torch.isfinite(x)
        # first accepted candidate of each pending draw
        any_ok = ok.any(0)
        first = ok.to(torch.int8).argmax(0)
        chosen = x.gather(0, first[None])[0]
        out[pending[any_ok]] = chosen[any_ok]
        pending = pending[~any_ok]
    raise RuntimeError(f"GIG sampler: {pending.numel()} draws not accepted after "
                       f"{max_rounds} rounds")


def _gig_try_shift(u, w, c):
    """Ratio-of-uniforms with mode shift (u in (0, 1), v in (vmin, vmax))."""
    x = (c["v1min"] + (c["v1max"] - c["v1min"]) * w) / u + c["mode"]
    return x, 2 * torch.log(u) <= _gig_logq(x, c["lam"], c["omega"]) - c["lq_mode"]


def _gig_try_noshift(u, w, c):
    """Ratio-of-uniforms without mode shift (u in (0, umax), v in (0, vmax))."""
    x = c["v2max"] * w / (c["u2max"] * u)
    return x, 2 * torch.log(c["u2max"] * u) <= _gig_logq(x, c["lam"], c["omega"])


def _gig_try_hat(u, w, c):
    """Hörmann & Leydold's rejection from a three-piece hat (lam < 1, small omega)."""
    lam, om = c["lam"], c["omega"]
    a1, a2, k2, k3 = c["area1"], c["area2"], c["k2"], c["k3"]
    v = c["area"] * w
    in1, in2 = v <= a1, (v > a1) & (v <= a1 + a2)
    ls = c["lam_safe"]
    x_a = c["x0"] * v / a1
    x_b = torch.where(c["lam_pos"],
                      (c["x0"].pow(ls) + (v - a1) * ls / k2.clamp_min(1e-300))
                      .clamp_min(0).pow(1 / ls),
                      om * torch.exp((v - a1) * torch.exp(om)))
    zz = torch.exp(-c["xs"] * om / 2) - om * (v - a1 - a2) / (2 * k3)
    x_c = -2 / om * torch.log(zz.clamp_min(1e-300))
    x = torch.where(in1, x_a, torch.where(in2, x_b, x_c))
    h = torch.where(in1, c["k1"].expand_as(x),
                    torch.where(in2, k2 * x.clamp_min(1e-300).pow(lam - 1),
                                k3 * torch.exp(-x * om / 2)))
    return x, torch.log(u * h) <= _gig_logq(x, lam, om)


def sample_gig(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws from the generalised inverse Gaussian ``GIG(p, a, b)``.

    Density ``f(x) = (a/b)^(p/2) / (2 K_p(sqrt(ab))) x^(p-1) exp(-(a x + b / x) / 2)``,
    ``x > 0``. With ``x = sqrt(b/a) y`` the problem reduces to the two-parameter form with
    ``omega = sqrt(ab)``; a negative ``p`` is handled by ``1/y ~ GIG(-p, omega, omega)``.
    The draws are made in float64 and returned in the dtype of ``p``/``a``/``b``.

    Args:
        p: order (any real), broadcastable with ``a`` and ``b``.
        a: positive rate of the ``x`` term.
        b: positive rate of the ``1/x`` term.
        generator: random generator (on the tensors' device); the same seed gives the same
            draws.

    Returns:
        tensor of the broadcast shape of ``p, a, b``.

    Shape:
        any (broadcast).

    Raises:
        ValueError: a non-positive or non-finite ``a`` or ``b``.
        RuntimeError: a draw not accepted after 10,000 rejection rounds (cannot happen for
            valid parameters in practice: the acceptance rate is bounded away from zero).

    References:
        Hörmann & Leydold, "Generating generalized inverse Gaussian random variates",
        Statistics and Computing 24(4), 2014 (the algorithm of ``scipy.stats.geninvgauss``);
        Dagpunar, Commun. Stat. Simul. Comput. 1989 (ratio-of-uniforms with mode shift).
    """
    device = next((t.device for t in (p, a, b)
                   if isinstance(t, torch.Tensor) and t.device.type != "cpu"), None)
    p, a, b = torch.broadcast_tensors(*(torch.as_tensor(t, device=device) for t in (p, a, b)))
    dtype = torch.promote_types(torch.promote_types(p.dtype, a.dtype), b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    if not (torch.all(a > 0) and torch.all(b > 0) and torch.all(torch.isfinite(a))
            and torch.all(torch.isfinite(b))):
        raise ValueError("sample_gig: a and b must be positive and finite")
    p64, a64, b64 = (t.to(torch.float64).reshape(-1) for t in (p, a, b))
    omega = torch.sqrt(a64 * b64)
    y = _gig_standard(p64.abs(), omega, generator)
    y = torch.where(p64 < 0, 1 / y, y)
    return (torch.sqrt(b64 / a64) * y).reshape(p.shape).to(dtype)
