"""Frame-wise VAE prior (Leglaive, Girin, Horaud, MLSP 2018).

Generative model: ``z_t ~ N(0, I)`` independently per frame, ``s_ft | z_t ~ N_c(0, v_f(z_t))``
with ``log v(z_t)`` given by an MLP decoder. Inference model: ``q(z_t | s_t)`` Gaussian with
mean and log-variance from an MLP encoder of the frame's (log-)power spectrum.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from ..stft import DEFAULT_STFT, STFTConfig
from .base import EPS, Posterior, Prior, StandardNormalLatent, register_prior

__all__ = ["VAE", "VAEConfig"]


@dataclass(frozen=True)
class VAEConfig:
    """Frame-wise VAE architecture.

    Attributes:
        n_freq: input/output frequency bins (513 for the default STFT).
        hidden_dims: widths of the hidden tanh layers, encoder side (mirrored in the decoder).
        latent_dim: dimension of ``z_t``.
        encoder_input: ``"log-power"`` (``log(P + 1e-10)``, the default here) or ``"power"``
            (the raw power spectrogram, as in Leglaive et al. 2018).
    """

    n_freq: int = 513
    hidden_dims: tuple[int, ...] = (128,)
    latent_dim: int = 16
    encoder_input: str = "log-power"

    def __post_init__(self):
        if self.encoder_input not in ("log-power", "power"):
            raise ValueError(f"encoder_input must be 'log-power' or 'power', "
                             f"got {self.encoder_input!r}")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers)


@register_prior("vae")
class VAE(StandardNormalLatent, Prior):
    """Frame-wise VAE prior.

    Shape:
        - encode: power ``(batch, freq, time)`` -> Posterior with ``(batch, latent, time)``
        - decode: z ``(..., latent, time)`` -> variance ``(..., freq, time)``

    References:
        Kingma & Welling, ICLR 2014; Leglaive, Girin, Horaud, "A variance modeling framework
        based on variational autoencoders for speech enhancement", MLSP 2018.
    """

    config_class = VAEConfig
    frame_factorised = True  # z_t iid N(0, I) and v_t = decoder(z_t)

    def __init__(self, config: VAEConfig = VAEConfig(), stft_config: STFTConfig = DEFAULT_STFT):
        super().__init__(config, stft_config)
        dims = [config.n_freq, *config.hidden_dims]
        self.encoder_body = _mlp(dims)
        self.encoder_mean = nn.Linear(dims[-1], config.latent_dim)
        self.encoder_logvar = nn.Linear(dims[-1], config.latent_dim)
        self.decoder_body = _mlp([config.latent_dim, *reversed(config.hidden_dims)])
        # the decoder mirrors the encoder: its last hidden layer is the encoder's first
        last = config.hidden_dims[0] if config.hidden_dims else config.latent_dim
        self.decoder_logvar = nn.Linear(last, config.n_freq)

    def encoder_input(self, power: torch.Tensor) -> torch.Tensor:
        """The encoder's input features for a power spectrogram (same shape)."""
        if self.config.encoder_input == "log-power":
            return torch.log(power + EPS)
        return power

    def encode(self, power: torch.Tensor) -> Posterior:
        h = self.encoder_body(self.encoder_input(power).transpose(-1, -2))
        return Posterior(self.encoder_mean(h).transpose(-1, -2),
                         self.encoder_logvar(h).transpose(-1, -2))

    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.decoder_body(z.transpose(-1, -2))  # frame-wise: the mask changes nothing
        return torch.exp(self.decoder_logvar(h)).transpose(-1, -2)


    def encoder_parameters(self):
        """Parameters of the inference network (fine-tuned per file by VEM)."""
        for m in (self.encoder_body, self.encoder_mean, self.encoder_logvar):
            yield from m.parameters()
