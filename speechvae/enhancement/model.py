"""The mixture model shared by every inference algorithm: NMF noise, gain, M-step, Wiener
filter, the E-step target ``p(z | x)``, and the settings every algorithm has.

Mixture model (Leglaive, Girin, Horaud, MLSP 2018): ``x_ft | z ~ N_c(0, Vx_ft)`` with
``Vx = g_t v_ft(z) + (W H)_ft``; ``W`` of shape ``(batch, freq, rank)``, ``H`` of shape
``(batch, rank, time)``, per-frame gain ``g`` of shape ``(batch, 1, time)``.

Given samples ``v_r`` of the speech variance, the M-step decreases

    C(W, H, g) = sum_r sum_ft [ P_ft / Vx_r,ft + log Vx_r,ft ]

with the multiplicative majorisation-minimisation updates of the Itakura–Saito NMF (exponent
1/2; Févotte & Idier, Neural Computation 2011), which never increase C. Every quantity stays
positive. With a temporal-continuity weight ``lambda > 0`` (``EMConfig.nmf_smoothness``) the
M-step decreases ``C + lambda * S(H)`` instead, where

    S(H) = sum_k sum_t [ h_k,t / h_k,t-1 + h_k,t-1 / h_k,t - 2 ]  (over valid frames)

is zero for constant activations and scale-invariant (a symmetric form of the inverse-gamma
Markov chain prior on the activations of Févotte, Bertin & Durrieu, Neural Computation 2009;
temporal continuity as in Virtanen, IEEE TASLP 2007): the noise model then cannot follow the
syllable-rate envelope of speech, which it otherwise takes from the speech model (issue 15).

Shapes: mixtures ``(batch, freq, time)``, right-padded when files of different lengths share
a batch, with a ``(batch, time)`` 0/1 mask of valid frames (None: every frame valid).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..priors.base import Prior
from .samplers import ChainState

__all__ = ["GAINS", "NOISE_INITS", "EMConfig", "LatentPosterior", "NMFNoise",
           "attenuation_floor", "average_wiener", "continuity_penalty", "gain_options",
           "init_nmf", "initial_noise", "m_step", "mixture_cost", "mixture_power", "noise_floor", "normalise", "time_major",
           "wiener_gain"]

#: Speech gain models: one gain per frame (the papers), one per signal, or none (``g = 1``).
GAINS = ("frame", "global", "none")

#: NMF starts: random ``W`` and ``H`` (flat expected spectrum), or ``W`` shaped by the
#: mixture's per-frequency noise floor (see :func:`init_nmf`).
NOISE_INITS = ("random", "floor")


def _check_int(config, name: str, low: int = 1) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {low}, "
                         f"got {value!r}")


@dataclass(frozen=True)
class EMConfig:
    """The settings every inference algorithm shares (the EM driver's), checked on creation.

    Each algorithm's config subclasses this and adds its own fields; its class attribute
    ``algorithm`` names the registered algorithm, so the config object alone says which
    algorithm runs (:func:`speechvae.enhancement.algorithm_for_config`).

    Attributes:
        iterations: maximum number of EM iterations (Gibbs sweeps for ``bando``).
        nmf_rank: NMF rank ``K`` of the noise model.
        tol: stopping rule, the same for every algorithm: stop when the mean objective over
            the last ``tol_window`` iterations differs from the mean over the ``tol_window``
            before by at most ``tol`` times the latter (relative change; 0 disables it; the
            iteration cap always applies).
        tol_window: iterations per window of the stopping rule.
        m_steps: passes of the NMF/gain updates per iteration.
        gain: ``"frame"`` (a speech gain ``g_t`` per frame, as in the papers), ``"global"``
            (one gain per signal) or ``"none"`` (``g = 1``).
        init_noise_level: initial level of ``W H`` relative to the mean mixture power.
        noise_init: ``"random"`` (uniform random ``W``, ``H``) or ``"floor"`` (each column of
            ``W`` a random perturbation of the mixture's per-frequency noise floor, the
            ``floor_quantile`` quantile of the power over frames; see :func:`init_nmf`).
        floor_quantile: quantile in ``(0, 1)`` of the ``"floor"`` start.
        atten_lim_db: suppression limit, the largest attenuation in dB the final Wiener gain
            may apply: the driver raises the amplitude gain to at least
            ``10 ** (-atten_lim_db / 20)`` (as DeepFilterNet's ``--atten-lim-db``); None: no
            limit.
        nmf_smoothness: weight ``lambda`` of the temporal-continuity penalty ``S(H)`` on the
            NMF activations (module docstring); 0 (default): none.
        share_tol: the speech-share stopping rule (:func:`~speechvae.enhancement.em.
            share_settled`): stop a file once its speech share -- the fraction of the
            mixture power its Wiener filter keeps, from each iteration's speech-variance
            samples -- fell by less than ``share_tol`` (absolute) from the mean over one
            ``share_window`` of iterations to the mean over the next; 0 (default here): off.
            The iteration cap always applies.
        share_window: iterations per window of the speech-share rule.

    Raises:
        ValueError: a count below 1, an unknown gain or noise start, a negative ``tol`` or
            ``nmf_smoothness``, a ``share_tol`` outside ``[0, 1]``, a
            non-positive ``init_noise_level``, a quantile outside ``(0, 1)`` or a negative
            ``atten_lim_db``.
    """

    iterations: int = 50
    nmf_rank: int = 8
    tol: float = 0.0
    tol_window: int = 10
    m_steps: int = 1
    gain: str = "frame"
    init_noise_level: float = 1.0
    noise_init: str = "random"
    floor_quantile: float = 0.2
    atten_lim_db: float | None = None
    nmf_smoothness: float = 0.0
    share_tol: float = 0.0
    share_window: int = 25

    def __post_init__(self):
        if not self.nmf_smoothness >= 0:
            raise ValueError(f"nmf_smoothness must be >= 0, got {self.nmf_smoothness}")
        if not 0 <= self.share_tol <= 1:
            raise ValueError(f"share_tol must be in [0, 1], got {self.share_tol}")
        for name in ("iterations", "nmf_rank", "tol_window", "m_steps", "share_window"):
            _check_int(self, name)
        if self.gain not in GAINS:
            raise ValueError(f"gain must be one of {', '.join(GAINS)}, got {self.gain!r}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")
        if not self.init_noise_level > 0:
            raise ValueError(f"init_noise_level must be positive, got {self.init_noise_level}")
        if self.noise_init not in NOISE_INITS:
            raise ValueError(f"noise_init must be one of {', '.join(NOISE_INITS)}, "
                             f"got {self.noise_init!r}")
        if not 0 < self.floor_quantile < 1:
            raise ValueError(f"floor_quantile must be in (0, 1), got {self.floor_quantile}")
        if self.atten_lim_db is not None and not self.atten_lim_db >= 0:
            raise ValueError(f"atten_lim_db must be >= 0 dB or None, got {self.atten_lim_db}")


def attenuation_floor(atten_lim_db: float | None) -> float:
    """The smallest amplitude gain a suppression limit of ``atten_lim_db`` dB allows,
    ``10 ** (-atten_lim_db / 20)`` (0 for None: no limit)."""
    return 0.0 if atten_lim_db is None else 10.0 ** (-float(atten_lim_db) / 20.0)


def gain_options(gain: str, smoothness: float = 0.0) -> dict:
    """Keyword arguments of :func:`m_step` for a gain setting (see :data:`GAINS`) and a
    temporal-continuity weight (``EMConfig.nmf_smoothness``)."""
    return {"update_gain": gain != "none", "global_gain": gain == "global",
            "smoothness": smoothness}


def continuity_penalty(H: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``S(H)`` of the module docstring per batch item, ``(batch,)``: the sum over components
    and pairs of adjacent valid frames of ``h_t / h_t-1 + h_t-1 / h_t - 2`` (>= 0, zero for
    constant rows, unchanged when a row is scaled)."""
    prev, cur = H[..., :-1], H[..., 1:]
    if mask is not None:  # padded activations may be 0: never divide by them
        pair = (mask[:, None, 1:] * mask[:, None, :-1]) > 0
        prev, cur = torch.where(pair, prev, 1.0), torch.where(pair, cur, 1.0)
    return (prev / cur + cur / prev - 2.0).sum(dim=(1, 2))


def _smooth_h_update(H: torch.Tensor, num: torch.Tensor, den: torch.Tensor, weight: float,
                     valid: torch.Tensor | None) -> torch.Tensor:
    """The activation update with the continuity penalty: frames of one parity at a time,
    each minimising the majoriser ``A h + B / h`` of ``C + weight * S`` with its neighbours
    fixed (``A = den + weight (1/h_t-1 + 1/h_t+1)``, ``B = h^2 num + weight (h_t-1 +
    h_t+1)``, a neighbour counted only where valid): ``h = sqrt(B / A)``, so the penalised
    cost never increases. ``num``/``den`` are the unpenalised update's ``W^T (P / Vx^2)`` and
    ``W^T (1 / Vx)`` at the current ``H``."""
    t = H.shape[-1]
    if valid is None:
        valid = torch.ones((H.shape[0], 1, t), dtype=H.dtype, device=H.device)
    else:
        valid = valid[:, None, :].to(H.dtype)
    zero = H.new_zeros((*H.shape[:-1], 1))
    vzero = valid.new_zeros((*valid.shape[:-1], 1))
    left_ok = torch.cat([vzero, valid[..., :-1]], -1) * valid  # frame t-1 valid (and t)
    right_ok = torch.cat([valid[..., 1:], vzero], -1) * valid
    parity = torch.arange(t, device=H.device) % 2
    base_b = H.square() * num
    for side in (0, 1):
        left = torch.cat([zero, H[..., :-1]], -1)
        right = torch.cat([H[..., 1:], zero], -1)
        a = den + weight * (left_ok / left.clamp_min(TINY) + right_ok / right.clamp_min(TINY))
        b = base_b + weight * (left_ok * left + right_ok * right)
        new = (b / a.clamp_min(TINY)).sqrt()
        H = torch.where((parity == side) & (valid > 0), new, H)
    return H

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


def wiener_gain(noise_var: torch.Tensor, speech_vars) -> torch.Tensor:
    """The Wiener gain ``vs / (vs + W H)`` averaged over posterior samples.

    Args:
        noise_var: ``W H``, ``(batch, freq, time)``.
        speech_vars: iterable of scaled speech variances ``g v(z_r)``, each
            ``(..., batch, freq, time)``; leading axes (e.g. chains) are averaged too.

    Returns:
        ``(batch, freq, time)``, in ``[0, 1]``.
    """
    gain = torch.zeros_like(noise_var)
    n = 0
    with torch.no_grad():
        for vs in speech_vars:
            g = vs / (vs + noise_var)
            gain += g.reshape(-1, *gain.shape).mean(0)
            n += 1
    gain /= max(n, 1)
    return gain


def average_wiener(mixture_stft: torch.Tensor, noise_var: torch.Tensor, speech_vars,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech and noise STFT estimates from :func:`wiener_gain`: ``(gain x, (1 - gain) x)``,
    complex ``(batch, freq, time)`` each; they sum to the mixture ``x``."""
    gain = wiener_gain(noise_var, speech_vars)
    return gain * mixture_stft, (1.0 - gain) * mixture_stft


def time_major(x: torch.Tensor) -> torch.Tensor:
    """The same ``(..., freq, time)`` values stored with frequency as the fastest axis.

    The priors' decoders produce this layout (one frame = one contiguous row); putting the
    mixture in it too keeps the element-wise passes of the inference on contiguous memory.
    """
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def mixture_power(prior: Prior, mixture_stfts: torch.Tensor, lengths) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor | None, list[int]]:
    """Check a batch of mixture STFTs against a prior and return what the EM driver needs.

    Args:
        prior: the speech prior (its STFT size is checked).
        mixture_stfts: complex ``(batch, freq, time)``, right-padded.
        lengths: valid frames per file, ``batch`` ints in ``[1, time]``.

    Returns:
        ``(mixture, power, mask, lengths)``: the mixtures with padded frames zeroed, their
        power spectrogram (time-major layout, :func:`time_major`), the ``(batch, time)``
        0/1 mask of valid frames (None when no frame is padded) and the lengths as ints.

    Raises:
        ValueError: wrong shape or frequency size, or lengths out of range.
    """
    if mixture_stfts.dim() != 3:
        raise ValueError(f"mixture_stfts must have shape (batch, freq, time), "
                         f"got {tuple(mixture_stfts.shape)}")
    n_files, n_freq, n_frames = mixture_stfts.shape
    if n_freq != prior.stft_config.n_freq:
        raise ValueError(f"mixture has {n_freq} frequency bins, the prior expects "
                         f"{prior.stft_config.n_freq}")
    lengths = [int(n) for n in (lengths.tolist() if torch.is_tensor(lengths) else lengths)]
    if len(lengths) != n_files or not all(1 <= n <= n_frames for n in lengths):
        raise ValueError(f"lengths must be {n_files} frame counts in [1, {n_frames}], "
                         f"got {lengths}")
    if all(n == n_frames for n in lengths):
        return mixture_stfts, time_major(mixture_stfts.abs().square()), None, lengths
    dev = mixture_stfts.device
    valid = torch.arange(n_frames, device=dev)[None, :] < torch.tensor(lengths, device=dev)[:, None]
    mixture = torch.where(valid[:, None, :], mixture_stfts, 0)
    power = time_major(mixture.abs().square())
    return mixture, power, valid.to(power.dtype), lengths


def initial_noise(power: torch.Tensor, lengths: list[int], rank: int, level: float,
                  generators, method: str = "random", quantile: float = 0.2) -> NMFNoise:
    """The NMF start of every algorithm: each file's :func:`init_nmf` drawn alone from its
    own generator on its valid frames (so a file gets the same start in any batch), ``H``
    scaled by ``level``, zero-padded (``H = 0``, ``g = 1``) to the batch's frame count.

    ``method`` and ``quantile`` are :func:`init_nmf`'s (see :data:`NOISE_INITS`).

    Shapes: ``power (batch, freq, time)`` -> ``W (batch, freq, rank)``,
    ``H (batch, rank, time)``, ``g (batch, 1, time)``.
    """
    n_frames = power.shape[-1]
    parts = []
    for b, (n, gen) in enumerate(zip(lengths, generators)):
        one = init_nmf(power[b:b + 1, :, :n], rank, gen, method=method, quantile=quantile)
        pad = n_frames - n
        parts.append(NMFNoise(one.W, torch.nn.functional.pad(one.H * level, (0, pad)),
                              torch.nn.functional.pad(one.g, (0, pad), value=1.0)))
    if len(parts) == 1:
        return parts[0]
    return NMFNoise(*(torch.cat([getattr(x, k) for x in parts]) for k in ("W", "H", "g")))


def noise_floor(power: torch.Tensor, quantile: float, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Per-frequency noise floor of a power spectrogram: the ``quantile`` quantile of each
    bin's power over the (valid) frames (linear interpolation, as :func:`torch.quantile`, but
    with no limit on the size), as in minimum-statistics noise estimation (Martin, IEEE TSAP
    2001), without its bias correction (only the spectral shape is used).

    Shapes: ``power (batch, freq, time)``, ``mask (batch, time)`` -> ``(batch, freq, 1)``.
    """
    if mask is None:
        return _quantile(power, quantile)
    return torch.stack([_quantile(power[b][:, mask[b] > 0], quantile)
                        for b in range(power.shape[0])])


def _quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    # quantile over the last axis, kept as size 1
    values = x.sort(dim=-1).values
    pos = q * (values.shape[-1] - 1)
    lo = int(pos)
    hi = min(lo + 1, values.shape[-1] - 1)
    return torch.lerp(values[..., lo:lo + 1], values[..., hi:hi + 1], pos - lo)


def init_nmf(power: torch.Tensor, rank: int, generator: torch.Generator | None = None,
             mask: torch.Tensor | None = None, method: str = "random",
             quantile: float = 0.2) -> NMFNoise:
    """Random positive initialisation scaled so that ``W H`` has the mean level of ``power``.

    Args:
        power: mixture power spectrogram ``(batch, freq, time)``.
        rank: NMF rank ``K``.
        mask: optional ``(batch, time)`` 0/1 of valid frames (padded frames get ``H = 0``).
        method: ``"random"``: ``W``, ``H`` uniform in ``[0.1, 1.1)``, so the expected noise
            spectrum is flat; ``"floor"``: each column of ``W`` is the per-frequency noise
            floor (:func:`noise_floor`) times a uniform ``[0.1, 1.1)`` perturbation, so the
            start has the spectral shape of the mixture's quietest frames (the same random
            draws either way).
        quantile: quantile of the ``"floor"`` start, in ``(0, 1)``.

    Raises:
        ValueError: unknown ``method``.
    """
    if method not in NOISE_INITS:
        raise ValueError(f"method must be one of {', '.join(NOISE_INITS)}, got {method!r}")
    b, f, t = power.shape
    dev, dt = power.device, power.dtype
    W = torch.rand((b, f, rank), generator=generator, device=dev, dtype=dt) + 0.1
    H = torch.rand((b, rank, t), generator=generator, device=dev, dtype=dt) + 0.1
    if method == "floor":
        floor = noise_floor(power, quantile, mask)
        W = W * (floor / floor.mean(dim=1, keepdim=True).clamp_min(TINY)).clamp_min(1e-6)
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
           global_gain: bool = False, moments: tuple[torch.Tensor, torch.Tensor] | None = None,
           smoothness: float = 0.0) -> NMFNoise:
    """One pass of the square-root multiplicative updates: ``W``, then ``H`` and ``g`` together.

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
        smoothness: weight of the temporal-continuity penalty on ``H`` (module docstring);
            0: the plain update. The penalised cost ``C + smoothness * S(H)`` never
            increases.

    Returns:
        Updated, normalised parameters (new tensors).

    References:
        Leglaive, Girin, Horaud, MLSP 2018, eqs. (17)-(19); Févotte & Idier 2011;
        Févotte, Bertin, Durrieu, Neural Computation 2009 (smoothness).
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
    # H and g from one majorisation point: with W fixed, V = W H + g v is linear in each
    # activation and in each gain, so the auxiliary function of Févotte & Idier (2011) is
    # separable in all of them and their simultaneous updates still never increase C
    inv, p_inv2 = inverse(W, H)
    a, b = sums(inv, p_inv2)
    Wt = W.transpose(1, 2)
    if smoothness > 0:
        H = _smooth_h_update(H, Wt @ a, Wt @ b, smoothness, mask)
    else:
        H = H * ((Wt @ a) / (Wt @ b).clamp_min(TINY)).sqrt()
    if update_gain:
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

    References:
        Leglaive, Girin, Horaud, IEEE MLSP 2018 (the MCEM target).
    """

    def __init__(self, prior: Prior, power: torch.Tensor, nmf: NMFNoise):
        self.prior = prior
        self.power = power
        self.nmf = nmf
        self.noise_var = nmf.noise_variance()

    def log_likelihood(self, speech_var: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per frame up to a constant, ``-sum_f [log Vx + P / Vx]``.

        Args:
            speech_var: decoded speech variance ``v`` (linear power),
                ``(..., batch, freq, time)``.

        Returns:
            ``(..., batch, time)``.
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

    def mean_cost(self, states: list[ChainState], n_bins: int) -> float:
        """Mean per-bin cost ``P / Vx + log Vx`` of chain states whose ``log_prob`` is this
        target's, read off their log densities
        (``log_prob - log p(z)``), so no pass over the ``(freq, time)`` tensors."""
        with torch.no_grad():
            total = sum(float((s.log_prob - self.prior.log_prior(s.z)).sum()) for s in states)
        return -total / n_bins

    def rescore(self, state: ChainState) -> ChainState:
        """The same chain position (a chain state whose ``aux`` is ``v(z)``) scored under this target, e.g. after an M-step changed the noise
        parameters: re-uses the carried speech variance, so no decoder pass unless a
        gradient is needed."""
        if state.grad is not None:
            lp, v, grad = self.with_grad(state.z)
            return ChainState(state.z, lp, v, grad)
        with torch.no_grad():
            lp = self.log_likelihood(state.aux) + self.prior.log_prior(state.z)
        return ChainState(state.z, lp, state.aux)
