"""The prior interface, the prior registry and self-describing checkpoints.

A *prior* is a generative model of clean-speech power spectrograms with a latent variable
``z``: a decoder gives the speech variance ``v = decoder(z)`` (so that ``s_ft | z ~
N_c(0, v_ft)``), an encoder gives a Gaussian approximate posterior ``q(z | power)``, and the
prior knows the KL divergence to its own ``p(z)``. Inference algorithms use only this
interface, so every registered prior plugs into every algorithm:

* :meth:`Prior.sample_posterior` -- reparameterised draws ``z ~ q(z | power)`` together with
  the per-frame Gaussian parameters they were drawn from. For a frame-wise encoder (the VAE)
  these parameters do not depend on the draw; for a sequential encoder
  ``q(z_t | z_{1:t-1}, power)`` (RVAE, DKF) they do, since each frame's mean and variance
  are computed from the frames drawn before it, so draws are made frame by frame.
* :meth:`Prior.encode` -- the posterior along the *encoder mean path* (for a sequential
  encoder, each frame conditioned on the posterior means of the frames before it): the
  deterministic starting point of the MCMC chains.
* :meth:`Prior.decode`, :meth:`Prior.kl`, :meth:`Prior.log_prior`,
  :meth:`Prior.encoder_parameters`.

Shapes: power spectrograms ``(batch, freq, time)``; latents ``(batch, latent, time)``, with
a leading ``num_samples`` axis for several draws; masks ``(batch, time)`` of 0/1 marking
valid frames, each sequence's valid frames first (right padding).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..checkpoint import CheckpointError, atomic_torch_save, safe_torch_load, versions
from ..registry import ClassRegistry
from ..stft import DEFAULT_STFT, STFTConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "Posterior",
    "Prior",
    "StandardNormalLatent",
    "available_priors",
    "get_prior_class",
    "load_checkpoint",
    "register_prior",
    "save_prior",
]

CHECKPOINT_FORMAT = "speechvae-prior"
CHECKPOINT_VERSION = 1


_REGISTRY = ClassRegistry("prior")


@dataclass
class Posterior:
    """Diagonal Gaussian ``q(z | .)`` with ``mean`` and ``logvar`` of shape
    ``(batch, latent, time)`` (or ``(samples, batch, latent, time)`` for the per-draw
    parameters of a sequential encoder, see :meth:`Prior.sample_posterior`)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def rsample(self, generator: torch.Generator | None = None,
                num_samples: int | None = None) -> torch.Tensor:
        """Reparameterised sample(s): ``(batch, latent, time)``, or
        ``(num_samples, batch, latent, time)`` if ``num_samples`` is given."""
        shape = self.mean.shape if num_samples is None else (num_samples, *self.mean.shape)
        eps = torch.randn(shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl_standard_normal(self) -> torch.Tensor:
        """``KL(q || N(0, I))`` per frame, summed over the latent axis: ``(..., batch,
        time)`` for parameters of shape ``(..., batch, latent, time)``."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - self.logvar - 1.0).sum(dim=-2)


class Prior(nn.Module):
    """Base class of clean-speech priors.

    Subclasses set ``config_class`` (a frozen dataclass) and implement :meth:`encode`,
    :meth:`decode`, :meth:`kl`, :meth:`log_prior` and :meth:`encoder_parameters` (and
    :meth:`sample_posterior` when the encoder depends on the drawn past, see
    :class:`~speechvae.priors.sequential.SequentialPrior`). They are registered with
    :func:`register_prior`.

    Attributes:
        frame_factorised: True when ``log p(z)`` and the decoder both factorise over frames
            (``v_t`` depends on ``z_t`` only and ``p(z) = prod_t p(z_t)``), so that the
            posterior of ``z`` given the mixture factorises over frames too and the MCMC
            samplers may accept or reject each frame on its own. The safe default is False
            (whole-sequence or blocked acceptance); the frame-wise VAE sets True.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    frame_factorised: ClassVar[bool] = False

    def __init__(self, config, stft_config: STFTConfig = DEFAULT_STFT):
        super().__init__()
        n_freq = getattr(config, "n_freq", None)
        if n_freq is not None and n_freq != stft_config.n_freq:
            raise ValueError(f"n_freq {n_freq} != STFT bins {stft_config.n_freq}")
        self.config = config
        self.stft_config = stft_config

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, power: torch.Tensor) -> Posterior:
        """Approximate posterior ``q(z | power)``; power ``(batch, freq, time)``.

        For a sequential encoder ``q(z_t | z_{1:t-1}, power)`` this is the posterior along
        the encoder mean path: frame ``t``'s mean and log-variance given the posterior
        *means* of frames ``1..t-1`` (deterministic; the MCMC chains start from its mean).
        Draws with the right dependence on the past come from :meth:`sample_posterior`.
        """
        raise NotImplementedError

    def sample_posterior(self, power: torch.Tensor, generator: torch.Generator | None = None,
                         num_samples: int | None = None, noise_scale: float = 1.0,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Posterior]:
        """Reparameterised draws ``z ~ q(z | power)`` and the Gaussian parameters of each
        frame given the draw's past.

        ``z_t = mean_t + noise_scale * exp(logvar_t / 2) * eps_t``, ``eps ~ N(0, I)``;
        ``noise_scale = 1`` samples ``q`` itself, ``0`` gives the encoder mean path (the
        noise is drawn all the same, so the generator advances equally). Differentiable
        with respect to the encoder parameters (as VEM needs).

        This default serves priors whose posterior parameters do not depend on the drawn
        latents (the frame-wise VAE): :meth:`encode` once, then draw, in the order of
        :meth:`Posterior.rsample`. Priors with a sequential encoder override it.

        Args:
            power: power spectrogram ``(batch, freq, time)``.
            generator: random generator (on ``power``'s device).
            num_samples: number of draws (None: one draw without the sample axis).
            noise_scale: scale of the noise (see above), ``>= 0``.
            mask: optional ``(batch, time)`` 0/1 of valid frames (right padding); frames
                past a sequence's end do not influence its valid frames. Ignored by
                frame-wise encoders.

        Returns:
            ``(z, posterior)``: ``z`` of shape ``(batch, latent, time)``, or
            ``(num_samples, batch, latent, time)``; ``posterior`` of the shape of ``z``, or
            ``(batch, latent, time)`` when it does not depend on the draw (frame-wise
            encoder).

        Raises:
            ValueError: ``noise_scale < 0`` (and whatever :meth:`encode` raises).

        References:
            Kingma & Welling, ICLR 2014 (reparameterisation); Leglaive et al., ICASSP 2020
            (sequential draws of the RVAE encoder).
        """
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        posterior = self.encode(power)
        if noise_scale == 1.0:
            return posterior.rsample(generator, num_samples), posterior
        shape = (posterior.mean.shape if num_samples is None
                 else (num_samples, *posterior.mean.shape))
        eps = torch.randn(shape, generator=generator, device=posterior.mean.device,
                          dtype=posterior.mean.dtype)
        z = posterior.mean + noise_scale * torch.exp(0.5 * posterior.logvar) * eps
        return z, posterior

    def posterior_draws(self, params: dict[str, torch.Tensor], power: torch.Tensor,
                        eps: torch.Tensor, lengths: list[int]
                        ) -> tuple[torch.Tensor, Posterior]:
        """Reparameterised draws of ``q(z | power)`` for a batch of files, each file with its
        own encoder parameters: what per-file inference (VEM fine-tunes one copy of the
        encoder per file) needs, with no knowledge of the prior's kind.

        File ``b`` uses ``params[name][b]`` for every encoder parameter ``name`` (as in
        :meth:`named_parameters`); gradients flow to ``params``. File ``b``'s draws equal
        :meth:`sample_posterior`'s with those parameters for the same noise ``eps[:, b]``,
        to float rounding, and its valid frames do not depend on its padded ones.

        This default serves encoders whose parameters do not depend on the draw: the
        encoder runs under :func:`torch.func.vmap` over the files (with the padding mask,
        see :meth:`encode`), then ``z = mean + exp(logvar / 2) eps``. Priors with a
        sequential encoder override it.

        Args:
            params: encoder parameters stacked on a leading file axis, ``(batch, ...)``.
            power: power spectrogram ``(batch, freq, time)``, right-padded.
            eps: standard normal noise ``(draws, batch, latent, time)``.
            lengths: valid frames per file, ``batch`` ints in ``[1, time]``.

        Returns:
            ``(z, posterior)``: ``z (draws, batch, latent, time)``; the posterior
            ``(batch, latent, time)`` (shared by the draws) or, for a sequential encoder,
            ``(draws, batch, latent, time)``.

        References:
            Kingma & Welling, ICLR 2014 (reparameterisation); per-file encoder fine-tuning
            as in VEM (Leglaive et al., ICASSP 2020; Bie et al., TASLP 2022).
        """
        view = MethodView(self)
        named = {f"prior.{k}": v for k, v in params.items()}
        n_files, _, n_frames = power.shape
        if n_files == 1:
            mean, logvar = torch.func.functional_call(
                view, {k: v[0] for k, v in named.items()}, ("encode_pair", power, None))
        else:
            mask = (torch.arange(n_frames, device=power.device)[None, :]
                    < torch.tensor(lengths, device=power.device)[:, None]).to(power.dtype)

            def one(p, x, m):
                mean, logvar = torch.func.functional_call(view, p, ("encode_pair", x[None],
                                                                    m[None]))
                return mean[0], logvar[0]

            mean, logvar = torch.func.vmap(one)(named, power, mask)
        return mean + torch.exp(0.5 * logvar) * eps, Posterior(mean, logvar)

    def encode_pair(self, power: torch.Tensor, mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode` as a ``(mean, logvar)`` pair of tensors (for functional calls);
        ``mask`` is passed on when given (encoders that mix frames must honour it)."""
        if mask is None or self.frame_factorised:  # a frame-wise encoder ignores padding
            post = self.encode(power)
        else:
            post = self.encode(power, mask=mask)
        return post.mean, post.logvar

    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Speech variance ``v`` (linear power units), ``(..., freq, time)`` from
        ``z`` of shape ``(..., latent, time)``. ``mask`` (``(batch, time)``, right padding,
        optional): frames past a sequence's end must not influence its valid frames (only
        matters for decoders that look ahead in time)."""
        raise NotImplementedError

    def kl(self, posterior: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        """``KL(q(z|.) || p(z))`` per frame, shape ``(..., batch, time)`` for a posterior
        (and ``z``) of shape ``(..., batch, latent, time)``: analytic where the prior
        allows; for a Markov prior, the analytic KL of frame ``t`` to
        ``p(z_t | z_{t-1})`` at the drawn ``z_{t-1}`` (a one-sample estimate of the
        sequence KL; ``z`` is then required)."""
        raise NotImplementedError

    def encoder_parameters(self):
        """Parameters of the inference network (those VEM fine-tunes per file)."""
        raise NotImplementedError

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` per frame up to a constant, shape ``(..., time)``, from ``z`` of
        shape ``(..., latent, time)``; the sum over time is ``log p(z)`` of the sequence
        (for a Markov prior, the term of frame t is ``log p(z_t | z_{t-1})``)."""
        raise NotImplementedError

    def sample_latent(self, num_frames: int, batch: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``z ~ p(z)``: ``(batch, latent, num_frames)`` (for a Markov prior, frame by
        frame). Used to generate speech from the prior alone."""
        raise NotImplementedError(f"prior {self.name!r} cannot sample its latent prior")

    def neg_elbo(self, power: torch.Tensor, beta: float = 1.0,
                 generator: torch.Generator | None = None,
                 mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training loss: Itakura–Saito divergence between ``power`` and the decoded variance
        plus ``beta`` times the KL term, with one reparameterised sample.

        Args:
            power: clean power spectrogram ``(batch, freq, time)``.
            beta: weight of the KL term.
            mask: optional ``(batch, time)`` of 0/1 marking valid frames (right padding:
                each sequence's valid frames first; the loss then does not depend on the
                padded frames).

        Returns:
            dict with ``loss`` (scalar, mean per valid frame), ``is`` and ``kl`` (same units).

        References:
            Leglaive, Girin, Horaud, MLSP 2018 (IS-divergence VAE for speech spectra);
            Girin et al., "Dynamical variational autoencoders: a comprehensive review",
            Foundations and Trends in ML, 2021 (the same loss for sequential models).
        """
        z, posterior = self.sample_posterior(power, generator, mask=mask)
        variance = self.decode(z, mask=mask)
        is_div = itakura_saito(power, variance).sum(dim=1)  # (batch, time)
        kl = self.kl(posterior, z)
        if mask is None:
            mask = torch.ones_like(kl)
        n = mask.sum().clamp_min(1.0)
        is_term = (is_div * mask).sum() / n
        kl_term = (kl * mask).sum() / n
        return {"loss": is_term + beta * kl_term, "is": is_term, "kl": kl_term}

    def forward(self, power: torch.Tensor, beta: float = 1.0,
                generator: torch.Generator | None = None,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training loss, :meth:`neg_elbo`: calling the module (or its
        ``DistributedDataParallel`` wrapper) computes it, so that DDP sees the forward pass
        and averages the gradients over processes."""
        return self.neg_elbo(power, beta=beta, generator=generator, mask=mask)

    # -- checkpoints -------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Save a self-describing checkpoint atomically; see :func:`save_prior`."""
        return save_prior(self, path, metadata)


class MethodView(nn.Module):
    """Holds a prior as the submodule ``prior`` and calls one of its methods by name, so
    that :func:`torch.func.functional_call` can run any method with substituted
    parameters (named ``"prior." + name``)."""

    def __init__(self, prior: Prior):
        super().__init__()
        self.prior = prior

    def forward(self, method: str, *args):
        return getattr(self.prior, method)(*args)


class StandardNormalLatent:
    """Mixin for priors whose latent prior is ``z_t ~ N(0, I)`` iid over frames (the VAE and
    the RVAE): analytic per-frame KL, ``log p(z)`` and sampling. Put it before the
    :class:`Prior` base in the class bases."""

    def kl(self, posterior: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        """``KL(q || N(0, I))`` per frame, ``(..., batch, time)`` (for a sequential encoder,
        analytic given the drawn past, which the posterior's parameters already hold)."""
        return posterior.kl_standard_normal()

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z_t; 0, I)`` per frame up to a constant: ``(..., time)``."""
        return -0.5 * z.square().sum(dim=-2)

    def sample_latent(self, num_frames: int, batch: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``z_t ~ N(0, I)`` iid per frame: ``(batch, latent, num_frames)``."""
        p = next(self.parameters())
        return torch.randn(batch, self.latent_dim, num_frames, generator=generator,
                           device=p.device, dtype=p.dtype)


EPS = 1e-10


def itakura_saito(power: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Element-wise Itakura–Saito divergence ``P/v - log(P/v) - 1`` (``P`` floored at 1e-10).

    Shape: any (broadcast); non-negative everywhere.
    """
    ratio = power.clamp_min(EPS) / variance
    return ratio - torch.log(ratio) - 1.0


def register_prior(name: str) -> Callable[[type[Prior]], type[Prior]]:
    """Class decorator adding a prior to the registry under ``name`` (ValueError if another
    class has that name)."""
    return _REGISTRY.register(name)


def get_prior_class(name: str) -> type[Prior]:
    """The registered prior class called ``name``; raises KeyError listing the choices."""
    return _REGISTRY.get(name)


def available_priors() -> list[str]:
    """Names of the registered priors."""
    return _REGISTRY.names()


def save_prior(prior: Prior, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``{format, name, config, stft, state_dict, versions, metadata}`` to ``path``.

    The file is written to a temporary name in the same folder and renamed, so a reader
    never sees a partial checkpoint. Only tensors and plain Python values are stored, so the
    file loads with ``torch.load(..., weights_only=True)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "name": prior.name,
        "config": dataclasses.asdict(prior.config),
        "stft": prior.stft_config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in prior.state_dict().items()},
        "versions": versions(),
        "metadata": dict(metadata or {}),
    }
    atomic_torch_save(payload, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu",
                    expected_stft: STFTConfig | None = None) -> Prior:
    """Rebuild a prior from a checkpoint written by :func:`save_prior`.

    Args:
        path: checkpoint file.
        map_location: device for the tensors.
        expected_stft: if given, the checkpoint's STFT config must equal it.

    Raises:
        CheckpointError: unsafe/corrupt file, not a speechvae prior, unknown prior name,
            config or weights that do not match the class, or an STFT mismatch.
    """
    payload = safe_torch_load(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a speechvae prior checkpoint")
    try:
        cls = get_prior_class(payload["name"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    try:
        config = cls.config_class(**_tuplify(payload["config"]))
        stft_config = STFTConfig.from_dict(payload["stft"])
    except TypeError as exc:
        raise CheckpointError(f"{path}: config does not match prior {cls.name!r} ({exc})")
    if expected_stft is not None and stft_config != expected_stft:
        raise CheckpointError(f"{path}: trained with {stft_config}, expected {expected_stft}")
    prior = cls(config, stft_config)
    try:
        prior.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config "
                              f"({str(exc).splitlines()[0]})") from None
    prior.metadata = payload.get("metadata", {})
    prior.eval()
    return prior.to(map_location)


def _tuplify(d: dict) -> dict:
    """Lists in stored configs become tuples (frozen dataclasses hold tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
