"""Temporal-convolutional VAE prior (TCVAE): a dynamical speech prior without a per-frame loop.

Generative model: ``z_t ~ N(0, I)`` independently per frame (as the VAE and the RVAE); the
speech variance of frame ``t`` is ``v_t = exp(TCN_dec(z_{1:T})_t)``, with ``TCN_dec`` a stack
of residual blocks of non-causal dilated 1-D convolutions over time, so that ``v_t`` depends on
the latents of the frames within the decoder's receptive field around ``t`` (31 frames, about
0.5 s, with the default dilations 1, 2, 4, 8 and kernel 3). This is the non-causal RVAE
(Leglaive et al., ICASSP 2020) with the bidirectional LSTM replaced by a temporal
convolutional network (Bai, Kolter, Koltun, "An empirical evaluation of generic convolutional
and recurrent networks for sequence modeling", arXiv 2018; dilations as in WaveNet, van den
Oord et al., 2016).

Inference model: mean field over frames given the whole input,
``q(z | s) = prod_t N(z_t; mu_t(s), diag sigma_t^2(s))``, with ``mu`` and ``log sigma^2``
computed by a TCN of the same kind over the log-power spectrogram. The posterior parameters do
not depend on the drawn latents, so one pass of convolutions gives every frame at once:
training and VEM run with batched matrix products over all frames (no recurrence), at a cost
per frame a few times the frame-wise VAE's. The exact posterior of this model does not
factorise over frames (the decoder couples neighbouring latents, so ``z_t`` given ``s`` also
depends on the other latents, the dependence the RVAE's encoder keeps through ``z_{1:t-1}``;
see Girin et al., Foundations and Trends in ML, 2021, on the exact posterior structure of
dynamical VAEs); dropping it for a mean-field family over frames is a choice of ours, made for
speed, at the price of a looser ELBO.

Block: ``h <- h + W_out act(conv_dilated(norm(h) * mask))`` (residual; ``norm`` none by
default, or a per-frame layer norm over channels, which mixes no frames and no batch items, so
it behaves the same for batch 1 in per-file VEM and for long files at test time -- batch norm
would not; ``act`` GELU, tanh or the WaveNet gate ``tanh(a) * sigmoid(b)``). Each stack
starts with a 1x1 convolution and tanh (``513 -> hidden`` in the encoder, ``latent -> hidden``
in the decoder) and ends with 1x1 convolutions (``hidden -> 2 x latent`` and
``hidden -> 513``). ``W_out`` is zero-initialised, so that a new model is the frame-wise VAE of
the same end layers; :meth:`TCVAE.from_vae` copies a trained VAE's end layers and so starts
from exactly that VAE.

Padding: with a ``mask`` of valid frames (right padding), the input of every convolution that
mixes frames is zeroed past each sequence's end, which equals the zero padding the sequence
gets alone: the valid frames of a padded batch are those of each sequence on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..stft import DEFAULT_STFT, STFTConfig
from .base import EPS, Posterior, Prior, StandardNormalLatent, register_prior

__all__ = ["TCVAE", "TCVAEConfig"]

ACTIVATIONS = ("gelu", "tanh", "gated")
NORMS = ("layer", "none")


@dataclass(frozen=True)
class TCVAEConfig:
    """TCVAE architecture.

    Attributes:
        n_freq: frequency bins (513 for the default STFT).
        latent_dim: dimension of ``z_t`` (16, as the VAE and the RVAE).
        hidden_dim: channels of both temporal convolutional stacks (128).
        encoder_dilations: dilation of each residual block of the encoder, in order;
            ``()`` makes the encoder frame-wise.
        decoder_dilations: the same for the decoder; ``()`` makes it frame-wise.
        kernel_size: odd kernel size of the dilated convolutions (3). A stack's receptive
            field is ``1 + (kernel_size - 1) * sum(dilations)`` frames.
        activation: ``"gelu"``, ``"tanh"`` or ``"gated"`` (``tanh(a) * sigmoid(b)``, twice
            the convolution weights).
        norm: ``"none"`` (default) or ``"layer"`` (per-frame layer norm over channels
            before each convolution). The zero-initialised residual branches train stably
            without normalisation (SkipInit: De & Smith, NeurIPS 2020), and the layer norm
            doubled the CPU time of a training step (strided reductions over channels).
        encoder_input: ``"log-power"`` (``log(P + 1e-10)``) or ``"power"``.

    Raises:
        ValueError: a non-positive size, an even kernel, a dilation < 1, or an unknown
            activation, norm or encoder input.
    """

    n_freq: int = 513
    latent_dim: int = 16
    hidden_dim: int = 128
    encoder_dilations: tuple[int, ...] = (1, 2, 4, 8)
    decoder_dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    activation: str = "gelu"
    norm: str = "none"
    encoder_input: str = "log-power"

    def __post_init__(self):
        for name in ("n_freq", "latent_dim", "hidden_dim", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred convolutions), got "
                             f"{self.kernel_size}")
        for name in ("encoder_dilations", "decoder_dilations"):
            if any(int(d) < 1 for d in getattr(self, name)):
                raise ValueError(f"{name} must be >= 1 each, got {getattr(self, name)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got "
                             f"{self.activation!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.encoder_input not in ("log-power", "power"):
            raise ValueError(f"encoder_input must be 'log-power' or 'power', "
                             f"got {self.encoder_input!r}")

    def receptive_field(self, stack: str = "decoder") -> int:
        """Frames that one output frame of ``stack`` (``"encoder"`` or ``"decoder"``) sees."""
        dilations = self.decoder_dilations if stack == "decoder" else self.encoder_dilations
        return 1 + (self.kernel_size - 1) * sum(dilations)


class _ChannelNorm(nn.Module):
    """Layer norm over the channel axis of ``(batch, channels, time)``, frame by frame."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class _Block(nn.Module):
    """Pre-norm residual block ``h + W_out act(conv_dilated(norm(h) * mask))``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, activation: str,
                 norm: str):
        super().__init__()
        self.norm = _ChannelNorm(channels) if norm == "layer" else None
        self.gated = activation == "gated"
        self.act = {"gelu": F.gelu, "tanh": torch.tanh, "gated": None}[activation]
        self.conv = nn.Conv1d(channels, 2 * channels if self.gated else channels,
                              kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)  # the block starts as the identity
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = h if self.norm is None else self.norm(h)
        if mask is not None:
            x = x * mask  # padded frames enter the convolution as its zero padding
        x = self.conv(x)
        if self.gated:
            a, b = x.chunk(2, dim=1)
            x = torch.tanh(a) * torch.sigmoid(b)
        else:
            x = self.act(x)
        return h + self.out(x)


class _TemporalStack(nn.Module):
    """``tanh(1x1 conv)`` into ``hidden`` channels, then the residual blocks."""

    def __init__(self, in_channels: int, config: TCVAEConfig, dilations: tuple[int, ...]):
        super().__init__()
        self.proj = nn.Conv1d(in_channels, config.hidden_dim, 1)
        self.blocks = nn.ModuleList(
            _Block(config.hidden_dim, config.kernel_size, int(d), config.activation,
                   config.norm) for d in dilations)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = torch.tanh(self.proj(x))
        for block in self.blocks:
            h = block(h, mask)
        return h


def _frame_mask(mask: torch.Tensor | None, lead: tuple[int, ...], n_frames: int,
                like: torch.Tensor) -> torch.Tensor | None:
    """A ``(batch, time)`` 0/1 mask broadcast to ``(prod(lead), 1, time)`` (``batch`` the last
    of ``lead``), in ``like``'s dtype and device; ValueError on a mask of another shape."""
    if mask is None:
        return None
    batch = lead[-1] if lead else 1
    if tuple(mask.shape) != (batch, n_frames):
        raise ValueError(f"mask must have shape (batch, time) = {(batch, n_frames)}, got "
                         f"{tuple(mask.shape)}")
    m = (mask > 0).to(device=like.device, dtype=like.dtype)
    return m.expand(*lead, n_frames).reshape(-1, 1, n_frames)


@register_prior("tcvae")
class TCVAE(StandardNormalLatent, Prior):
    """Temporal-convolutional VAE prior (see the module docstring for the model).

    Shape:
        - encode: power ``(batch, freq, time)`` -> Posterior ``(batch, latent, time)``
        - sample_posterior: z ``(batch, latent, time)`` or ``(samples, batch, latent, time)``;
          the posterior's parameters ``(batch, latent, time)`` (shared by the draws)
        - decode: z ``(..., latent, time)`` -> variance ``(..., freq, time)`` (linear power)
        - kl: ``(..., batch, time)``; log_prior: ``(..., time)``
        - masks: ``(batch, time)``, 0/1, right padding

    References:
        Leglaive, Alameda-Pineda, Girin, Horaud, "A recurrent variational autoencoder for
        speech enhancement", ICASSP 2020 (the non-causal dynamical prior this replaces the
        BLSTM of); Bai, Kolter, Koltun, arXiv:1803.01271, 2018 (temporal convolutional
        networks); van den Oord et al., "WaveNet", arXiv:1609.03499, 2016 (dilations, gate);
        Girin et al., "Dynamical variational autoencoders: a comprehensive review",
        Foundations and Trends in Machine Learning, 2021.
    """

    config_class = TCVAEConfig
    frame_factorised = False  # v_t depends on the neighbouring latents

    def __init__(self, config: TCVAEConfig = TCVAEConfig(),
                 stft_config: STFTConfig = DEFAULT_STFT):
        super().__init__(config, stft_config)
        f, h, lat = config.n_freq, config.hidden_dim, config.latent_dim
        self.encoder_stack = _TemporalStack(f, config, config.encoder_dilations)
        self.encoder_mean = nn.Conv1d(h, lat, 1)
        self.encoder_logvar = nn.Conv1d(h, lat, 1)
        self.decoder_stack = _TemporalStack(lat, config, config.decoder_dilations)
        self.decoder_logvar = nn.Conv1d(h, f, 1)

    # -- encoder ------------------------------------------------------------------------
    def encoder_parameters(self):
        """Parameters of the inference network (fine-tuned per file by VEM)."""
        for m in (self.encoder_stack, self.encoder_mean, self.encoder_logvar):
            yield from m.parameters()

    def encoder_features(self, power: torch.Tensor) -> torch.Tensor:
        """The encoder's input features for a power spectrogram (same shape):
        ``log(P + 1e-10)`` or ``P`` after ``config.encoder_input``."""
        if self.config.encoder_input == "log-power":
            return torch.log(power + EPS)
        return power

    def encode(self, power: torch.Tensor, mask: torch.Tensor | None = None) -> Posterior:
        """``q(z | power) = prod_t N(mean_t, exp(logvar_t))``, every frame in one pass.

        Args:
            power: power spectrogram ``(batch, freq, time)``.
            mask: optional ``(batch, time)`` 0/1 of valid frames (right padding); frames
                past a sequence's end then do not influence its valid frames.

        Returns:
            Posterior with mean and log-variance ``(batch, latent, time)``.

        Raises:
            ValueError: ``power`` not of shape ``(batch, n_freq, time)`` or a mask of
                another shape than ``(batch, time)``.
        """
        if power.dim() != 3 or power.shape[1] != self.config.n_freq:
            raise ValueError(f"power must have shape (batch, {self.config.n_freq}, time), got "
                             f"{tuple(power.shape)}")
        m = _frame_mask(mask, power.shape[:1], power.shape[-1], power)
        h = self.encoder_stack(self.encoder_features(power), m)
        return Posterior(self.encoder_mean(h), self.encoder_logvar(h))

    def sample_posterior(self, power: torch.Tensor, generator: torch.Generator | None = None,
                         num_samples: int | None = None, noise_scale: float = 1.0,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Posterior]:
        """Draws ``z = mean + noise_scale * exp(logvar / 2) * eps`` from :meth:`encode`
        (with the mask), as :meth:`Prior.sample_posterior` draws them (same noise order).

        Returns:
            ``(z, posterior)``: ``z (batch, latent, time)`` or
            ``(num_samples, batch, latent, time)``; posterior ``(batch, latent, time)``.

        Raises:
            ValueError: ``noise_scale < 0``, or what :meth:`encode` raises.
        """
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        post = self.encode(power, mask=mask)
        shape = post.mean.shape if num_samples is None else (num_samples, *post.mean.shape)
        eps = torch.randn(shape, generator=generator, device=post.mean.device,
                          dtype=post.mean.dtype)
        if noise_scale != 1.0:
            eps = eps * noise_scale
        return post.mean + torch.exp(0.5 * post.logvar) * eps, post

    # -- decoder ------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Speech variance ``exp(TCN_dec(z))`` (linear power units).

        Args:
            z: latents ``(..., latent, time)``.
            mask: optional ``(batch, time)`` 0/1 of valid frames (right padding), ``batch``
                the last leading dimension of ``z``.

        Returns:
            ``(..., freq, time)``.

        Raises:
            ValueError: ``z`` without the latent axis of size ``latent_dim``, or a bad mask.
        """
        if z.dim() < 2 or z.shape[-2] != self.latent_dim:
            raise ValueError(f"z must have shape (..., {self.latent_dim}, time), got "
                             f"{tuple(z.shape)}")
        lead, n_frames = z.shape[:-2], z.shape[-1]
        x = z.reshape(-1, self.latent_dim, n_frames)
        h = self.decoder_stack(x, _frame_mask(mask, tuple(lead), n_frames, x))
        v = torch.exp(self.decoder_logvar(h))
        return v.reshape(*lead, self.config.n_freq, n_frames)

    # -- warm start ---------------------------------------------------------------------
    @classmethod
    def from_vae(cls, vae: Prior, config: TCVAEConfig | None = None) -> TCVAE:
        """A TCVAE that starts as a trained frame-wise VAE: its encoder and decoder end layers
        are the VAE's and every residual block is the identity (zero output weights), so
        :meth:`encode` and :meth:`decode` equal the VAE's until training moves the blocks.

        Args:
            vae: a :class:`~speechvae.priors.VAE` with one hidden layer.
            config: the TCVAE's architecture (default: the default one with the VAE's sizes);
                ``hidden_dim``, ``latent_dim``, ``n_freq`` and ``encoder_input`` must match
                the VAE.

        Raises:
            ValueError: not a one-hidden-layer VAE, or sizes that do not match.
        """
        from .vae import VAE

        if not isinstance(vae, VAE) or len(vae.config.hidden_dims) != 1:
            raise ValueError("from_vae needs a frame-wise VAE with one hidden layer, got "
                             f"{type(vae).__name__} {getattr(vae, 'config', None)}")
        vc = vae.config
        if config is None:
            config = TCVAEConfig(n_freq=vc.n_freq, latent_dim=vc.latent_dim,
                                 hidden_dim=vc.hidden_dims[0], encoder_input=vc.encoder_input)
        mine = (config.n_freq, config.latent_dim, config.hidden_dim, config.encoder_input)
        theirs = (vc.n_freq, vc.latent_dim, vc.hidden_dims[0], vc.encoder_input)
        if mine != theirs:
            raise ValueError(f"TCVAE (n_freq, latent_dim, hidden_dim, encoder_input) {mine} "
                             f"!= the VAE's {theirs}")
        p = next(vae.parameters())
        prior = cls(config, vae.stft_config).to(device=p.device, dtype=p.dtype)
        pairs = [(prior.encoder_stack.proj, vae.encoder_body[0]),
                 (prior.encoder_mean, vae.encoder_mean),
                 (prior.encoder_logvar, vae.encoder_logvar),
                 (prior.decoder_stack.proj, vae.decoder_body[0]),
                 (prior.decoder_logvar, vae.decoder_logvar)]
        with torch.no_grad():
            for conv, linear in pairs:
                conv.weight.copy_(linear.weight.unsqueeze(-1))
                conv.bias.copy_(linear.bias)
            for stack in (prior.encoder_stack, prior.decoder_stack):
                for block in stack.blocks:
                    block.out.weight.zero_()
                    block.out.bias.zero_()
        return prior
