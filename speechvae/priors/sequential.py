"""Shared machinery of the priors with a sequential encoder (RVAE, DKF).

Their inference networks condition frame ``t`` on latents drawn at earlier frames,
``q(z_t | z_{1:t-1}, s)``, so a draw is made frame by frame and the Gaussian parameters of
each frame depend on the draw. :class:`SequentialPrior` implements the prior interface's
:meth:`~SequentialPrior.sample_posterior` and :meth:`~SequentialPrior.encode` (the encoder mean
path) on top of one method a subclass provides, ``_posterior(power, eps, lengths)``; it also
handles padding masks and the choice between the fast and the reference recurrence.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import EPS, MethodView, Posterior, Prior

__all__ = ["RECURRENCES", "SequentialPrior", "mask_lengths", "reverse_padded"]

#: Implementations of the sequential encoder loop: ``"fast"`` (fused loop with hand-written
#: backpropagation through time, :mod:`speechvae.priors.recurrence`) and ``"reference"``
#: (``nn.LSTMCell`` / ``nn.Linear`` stepped in Python under autograd). Same model, same
#: numbers to float rounding.
RECURRENCES = ("fast", "reference")


def mask_lengths(mask: torch.Tensor | None, batch: int, n_frames: int) -> torch.Tensor | None:
    """Valid lengths ``(batch,)`` (int64) of a right-padded 0/1 mask ``(batch, time)``.

    Raises:
        ValueError: a mask of another shape, or one whose valid frames are not a prefix
            (a 0 followed by a 1).
    """
    if mask is None:
        return None
    if tuple(mask.shape) != (batch, n_frames):
        raise ValueError(f"mask must have shape (batch, time) = {(batch, n_frames)}, got "
                         f"{tuple(mask.shape)}")
    valid = mask > 0
    lengths = valid.sum(-1)
    prefix = torch.arange(n_frames, device=mask.device) < lengths[:, None]
    if not torch.equal(valid, prefix):
        raise ValueError("mask must mark a prefix of valid frames in each sequence (right "
                         "padding)")
    return lengths.long()


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of a time-major ``(time, batch, ...)`` tensor within its valid
    length (padded frames stay in place, after the reversed valid ones). Its own inverse;
    with ``lengths=None``, ``x.flip(0)``.

    Shape:
        ``x (time, batch, ...)``, ``lengths (batch,)``.
    """
    if lengths is None:
        return x.flip(0)
    n_frames = x.shape[0]
    t = torch.arange(n_frames, device=x.device)[:, None]
    n = lengths.to(x.device)[None, :]
    idx = torch.where(t < n, n - 1 - t, t)  # (time, batch)
    idx = idx.reshape(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


class SequentialPrior(Prior):
    """Base of priors whose encoder depends on the drawn past.

    A subclass implements ``_posterior(power, eps, lengths) -> (z, mean, logvar)`` with
    ``eps`` of shape ``(draws, batch, latent, time)`` and every output of that shape.

    Attributes:
        recurrence: ``"fast"`` (default) or ``"reference"``, see :data:`RECURRENCES`; an
            implementation choice, not part of the model or its checkpoint.
    """

    frame_factorised = False

    def __init__(self, config, stft_config):
        super().__init__(config, stft_config)
        self.recurrence = "fast"

    def encoder_features(self, power: torch.Tensor) -> torch.Tensor:
        """The encoder's input features for a power spectrogram (same shape):
        ``log(P + 1e-10)`` or ``P`` after ``config.encoder_input``."""
        if self.config.encoder_input == "log-power":
            return torch.log(power + EPS)
        return power

    def _check_power(self, power: torch.Tensor) -> None:
        if power.dim() != 3 or power.shape[1] != self.config.n_freq:
            raise ValueError(f"power must have shape (batch, {self.config.n_freq}, time), got "
                             f"{tuple(power.shape)}")

    def _use_reference(self) -> bool:
        if self.recurrence not in RECURRENCES:
            raise ValueError(f"recurrence must be one of {RECURRENCES}, got "
                             f"{self.recurrence!r}")
        return self.recurrence == "reference"

    def sample_posterior(self, power: torch.Tensor, generator: torch.Generator | None = None,
                         num_samples: int | None = None, noise_scale: float = 1.0,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Posterior]:
        """Draws ``z ~ q(z | power)`` frame by frame, and each frame's Gaussian parameters
        given the draw's past (see :meth:`Prior.sample_posterior`).

        The noise ``eps`` is drawn at once as ``(num_samples or 1, batch, latent, time)``;
        all draws go through the recurrence as one batch.

        Returns:
            ``(z, posterior)``, both ``(batch, latent, time)``, or
            ``(num_samples, batch, latent, time)``.

        Raises:
            ValueError: a power spectrogram not of shape ``(batch, n_freq, time)``, a bad
                mask, or ``noise_scale < 0``.
        """
        self._check_power(power)
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        batch, _, n_frames = power.shape
        draws = 1 if num_samples is None else num_samples
        eps = torch.randn((draws, batch, self.latent_dim, n_frames), generator=generator,
                          device=power.device, dtype=power.dtype)
        if noise_scale != 1.0:
            eps = eps * noise_scale
        z, mean, logvar = self._posterior(power, eps, mask_lengths(mask, batch, n_frames))
        if num_samples is None:
            z, mean, logvar = z[0], mean[0], logvar[0]
        return z, Posterior(mean, logvar)

    def encode(self, power: torch.Tensor, mask: torch.Tensor | None = None) -> Posterior:
        """The posterior along the encoder mean path: frame ``t``'s mean and log-variance
        given the posterior means of frames ``1..t-1`` (no randomness).

        Shape:
            power ``(batch, freq, time)`` -> Posterior ``(batch, latent, time)``.
        """
        self._check_power(power)
        batch, _, n_frames = power.shape
        eps = power.new_zeros((1, batch, self.latent_dim, n_frames))
        _, mean, logvar = self._posterior(power, eps, mask_lengths(mask, batch, n_frames))
        return Posterior(mean[0], logvar[0])

    def _posterior(self, power: torch.Tensor, eps: torch.Tensor,
                   lengths: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def posterior_draws(self, params: dict[str, torch.Tensor], power: torch.Tensor,
                        eps: torch.Tensor, lengths: list[int]
                        ) -> tuple[torch.Tensor, Posterior]:
        """Per-file draws with per-file encoder parameters (see
        :meth:`Prior.posterior_draws`): one file runs the fast recurrence with its
        parameters substituted; several run :meth:`grouped_posterior` (the per-frame loop
        once for the batch).

        Returns:
            ``(z, posterior)``, each ``(draws, batch, latent, time)``.
        """
        if power.shape[0] == 1:
            self._check_power(power)
            z, mean, logvar = torch.func.functional_call(
                MethodView(self), {f"prior.{k}": v[0] for k, v in params.items()},
                ("_posterior", power, eps, None))
        else:
            z, mean, logvar = self.grouped_posterior(params, power, eps, lengths)
        return z, Posterior(mean, logvar)

    def grouped_posterior(self, params: dict[str, torch.Tensor], power: torch.Tensor,
                          eps: torch.Tensor, lengths: Sequence[int]
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior draws for a batch of files, each with its own encoder parameters.

        File ``b`` uses ``params[name][b]`` for every encoder parameter ``name`` (as in
        :meth:`named_parameters`; batched VEM fine-tunes one copy of the encoder per file).
        The recurrences over the spectrogram run file by file on each file's valid frames
        (one fused call each); the sequential loop over the drawn latents runs once for the
        whole batch (grouped :mod:`~speechvae.priors.recurrence`). Frames past a file's
        length get values that depend on valid frames only and must be masked by the caller.
        Equal, per file, to :meth:`sample_posterior`'s draws for the same ``eps`` with that
        file's parameters, to float rounding.

        Args:
            params: encoder parameters stacked on a leading batch axis, ``(batch, ...)``
                each (differentiable: gradients flow to them).
            power: power spectrogram ``(batch, freq, time)``, right-padded.
            eps: standard normal noise ``(draws, batch, latent, time)`` (zero past each
                file's length).
            lengths: valid frames per file, ``batch`` ints in ``[1, time]``.

        Returns:
            ``(z, mean, logvar)``, each ``(draws, batch, latent, time)``.

        Raises:
            ValueError: a missing encoder parameter, or shapes that do not agree.

        References:
            The encoders of Leglaive et al., ICASSP 2020 (RVAE) and Krishnan et al., AAAI 2017
            (DKF); per-file fine-tuning as in VEM (Leglaive et al. 2020; Bie et al., TASLP
            2022).
        """
        self._check_power(power)
        n_files, _, n_frames = power.shape
        lengths = [int(n) for n in lengths]
        if eps.dim() != 4 or eps.shape[1:] != (n_files, self.latent_dim, n_frames):
            raise ValueError(f"eps must have shape (draws, {n_files}, {self.latent_dim}, "
                             f"{n_frames}), got {tuple(eps.shape)}")
        if len(lengths) != n_files or not all(1 <= n <= n_frames for n in lengths):
            raise ValueError(f"lengths must be {n_files} frame counts in [1, {n_frames}], "
                             f"got {lengths}")
        encoder = {id(p) for p in self.encoder_parameters()}
        names = {n for n, p in self.named_parameters() if id(p) in encoder}
        if not names <= params.keys():
            raise ValueError(f"params lacks encoder parameters {sorted(names - params.keys())}")
        z, mean, logvar = self._grouped_posterior(params, power, eps.permute(3, 1, 0, 2),
                                                  lengths)
        return tuple(x.permute(2, 1, 3, 0) for x in (z, mean, logvar))

    def _grouped_posterior(self, params: dict[str, torch.Tensor], power: torch.Tensor,
                           eps: torch.Tensor, lengths: list[int]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``eps (time, batch, draws, latent)`` -> ``(z, mean, logvar)`` of that shape."""
        raise NotImplementedError

    def _per_file(self, params: dict[str, torch.Tensor], power: torch.Tensor,
                  lengths: list[int], features) -> torch.Tensor:
        """``features(p, power_b)`` for each file ``b`` on its valid frames, with ``p(name)``
        its parameter ``name``, a ``(length_b, 1, D)`` result each; zero-padded and stacked:
        ``(time, batch, D)``."""
        n_frames = power.shape[-1]
        parts = []
        for b, n in enumerate(lengths):
            out = features(lambda name, b=b: params[name][b], power[b:b + 1, :, :n])
            parts.append(torch.nn.functional.pad(out, (0, 0, 0, 0, 0, n_frames - n)))
        return torch.cat(parts, 1)

    @staticmethod
    def _call(module: torch.nn.Module, prefix: str, param, *args):
        """``module(*args)`` with each parameter ``prefix + name`` taken from ``param``."""
        return torch.func.functional_call(
            module, {n: param(prefix + n) for n, _ in module.named_parameters()}, args)

    @staticmethod
    def _to_time_major(eps: torch.Tensor) -> torch.Tensor:
        """``(draws, batch, latent, time)`` -> ``(time, draws * batch, latent)``."""
        r, b, lat, n_frames = eps.shape
        return eps.permute(3, 0, 1, 2).reshape(n_frames, r * b, lat)

    @staticmethod
    def _from_time_major(x: torch.Tensor, draws: int) -> torch.Tensor:
        """``(time, draws * batch, latent)`` -> ``(draws, batch, latent, time)``."""
        n_frames, n, lat = x.shape
        return x.reshape(n_frames, draws, n // draws, lat).permute(1, 2, 3, 0)

    @staticmethod
    def _per_draw(x: torch.Tensor, draws: int) -> torch.Tensor:
        """Per-sequence features ``(time, batch, F)`` repeated for every draw:
        ``(time, draws * batch, F)`` (draw-major, as :meth:`_to_time_major`)."""
        if draws == 1:
            return x
        n_frames, b, f = x.shape
        return x.unsqueeze(1).expand(n_frames, draws, b, f).reshape(n_frames, draws * b, f)
