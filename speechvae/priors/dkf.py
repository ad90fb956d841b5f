"""Deep Kalman filter prior (DKF; Krishnan, Shalit, Sontag, AAAI 2017), in the version of the
dynamical-VAE review (Girin et al. 2021) and its speech-enhancement use (Bie et al. 2022).

Generative model: a first-order Markov chain of latents with the *gated transition* of
Krishnan et al.,

    gate_t    = sigmoid(W2 relu(W1 z_{t-1} + b1) + b2)
    prop_t    = W4 relu(W3 z_{t-1} + b3) + b4                  (proposed mean)
    mean_t    = (1 - gate_t) * (W_mu z_{t-1} + b_mu) + gate_t * prop_t
    var_t     = softplus(W_v relu(prop_t) + b_v) + 1e-6
    z_t | z_{t-1} ~ N(mean_t, diag(var_t)),   z_0 = 0,

and a frame-wise emission ``v_t = exp(MLP(z_t))`` (tanh layers, then linear).

Inference model: ``q(z_t | z_{t-1}, s_{t:T})`` Gaussian (the structure of the exact posterior,
Krishnan et al. 2017, Sec. 4): the encoder features of the power spectrogram go through a
dense tanh layer and an LSTM run *backward* in time (``g^s_t`` from ``s_{t:T}``); the previous
latent through tanh layers to the same width (``g^z_t``); the combiner averages them,
``g_t = (g^s_t + g^z_t) / 2``, and tanh layers give the mean and log-variance of ``z_t``.
Draws are sequential in ``t`` (see :mod:`speechvae.priors.recurrence`).

The KL term of the ELBO is, per frame, the analytic KL between ``q(z_t | z_{t-1}, s)`` and
``p(z_t | z_{t-1})`` at the drawn ``z_{t-1}`` (Girin et al. 2021, the DKF section): a
one-sample estimate of the sequence KL.

Sizes follow the review's public code for speech (``dense_x_gx=256, dim_RNN_gx=128,
dense_ztm1_g=32,64, dense_g_z=64,32, dense_z_x=32,64,128,256``, latent 16). Choices of ours:
``var_t`` is a variance (as in that code; Krishnan et al. call the softplus output sigma) with
a floor of 1e-6 that keeps ``log var`` finite; ``W_mu`` starts as the identity (Krishnan et
al.'s initialisation); the encoder reads ``log(P + 1e-10)`` by default.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..stft import DEFAULT_STFT, STFTConfig
from .base import Posterior, register_prior
from .recurrence import markov_posterior
from .sequential import SequentialPrior, reverse_padded

__all__ = ["DKF", "DKFConfig"]

VAR_FLOOR = 1e-6


@dataclass(frozen=True)
class DKFConfig:
    """DKF architecture.

    Attributes:
        n_freq: frequency bins (513 for the default STFT).
        latent_dim: dimension of ``z_t`` (16).
        encoder_dense_dims: tanh layers applied to the encoder features of each frame before
            the backward LSTM (``(256,)``; may be empty).
        rnn_dim: units of the backward LSTM over the spectrogram (128); the latent branch of
            the combiner is mapped to this width too.
        combiner_z_dims: hidden tanh layers from ``z_{t-1}`` to the combiner (``(32, 64)``,
            followed by a tanh layer to ``rnn_dim``).
        combiner_dims: tanh layers from the combined ``g_t`` to the mean and log-variance
            (``(64, 32)``; may be empty).
        decoder_dims: tanh layers of the emission MLP (``(32, 64, 128, 256)``).
        transition_dim: hidden width of the gate and proposed-mean networks of the
            transition (16, the latent size, as the review's code).
        encoder_input: ``"log-power"`` or ``"power"``.
        transition_var_floor: added to the transition variance (``1e-6``, keeps
            ``log var`` finite; the DVAE_SE code of Bie et al., TASLP 2022 adds none: 0).
    """

    n_freq: int = 513
    latent_dim: int = 16
    encoder_dense_dims: tuple[int, ...] = (256,)
    rnn_dim: int = 128
    combiner_z_dims: tuple[int, ...] = (32, 64)
    combiner_dims: tuple[int, ...] = (64, 32)
    decoder_dims: tuple[int, ...] = (32, 64, 128, 256)
    transition_dim: int = 16
    encoder_input: str = "log-power"
    transition_var_floor: float = VAR_FLOOR

    def __post_init__(self):
        if self.encoder_input not in ("log-power", "power"):
            raise ValueError(f"encoder_input must be 'log-power' or 'power', "
                             f"got {self.encoder_input!r}")
        for name in ("n_freq", "latent_dim", "rnn_dim", "transition_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.transition_var_floor < 0:
            raise ValueError(f"transition_var_floor must be >= 0, got "
                             f"{self.transition_var_floor}")


def _linears(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))


def _tanh_chain(x: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
    for layer in layers:
        x = torch.tanh(layer(x))
    return x


@register_prior("dkf")
class DKF(SequentialPrior):
    """Deep Kalman filter prior with a gated transition and a backward-LSTM encoder.

    Shape:
        - sample_posterior: power ``(batch, freq, time)`` -> z and Posterior
          ``(batch, latent, time)`` (``(samples, batch, latent, time)`` with ``num_samples``)
        - decode: z ``(..., latent, time)`` -> variance ``(..., freq, time)``
        - kl (needs ``z``): ``(..., batch, time)``; log_prior: ``(..., time)``

    References:
        Krishnan, Shalit, Sontag, "Structured inference networks for nonlinear state space
        models", AAAI 2017; Girin et al., "Dynamical variational autoencoders: a
        comprehensive review", Foundations and Trends in Machine Learning, 2021; Bie,
        Leglaive, Alameda-Pineda, Girin, "Unsupervised speech enhancement using dynamical
        variational autoencoders", IEEE/ACM TASLP 2022.
    """

    config_class = DKFConfig

    def __init__(self, config: DKFConfig = DKFConfig(),
                 stft_config: STFTConfig = DEFAULT_STFT):
        super().__init__(config, stft_config)
        f, lat, r, k = config.n_freq, config.latent_dim, config.rnn_dim, config.transition_dim
        # inference network
        self.encoder_dense = _linears([f, *config.encoder_dense_dims])
        self.encoder_rnn = nn.LSTM(([f, *config.encoder_dense_dims])[-1], r)
        self.encoder_z = _linears([lat, *config.combiner_z_dims, r])
        self.encoder_combiner = _linears([r, *config.combiner_dims])
        last = ([r, *config.combiner_dims])[-1]
        self.encoder_mean = nn.Linear(last, lat)
        self.encoder_logvar = nn.Linear(last, lat)
        # transition p(z_t | z_{t-1})
        self.gate_hidden = nn.Linear(lat, k)
        self.gate_out = nn.Linear(k, lat)
        self.proposal_hidden = nn.Linear(lat, k)
        self.proposal_out = nn.Linear(k, lat)
        self.transition_mean = nn.Linear(lat, lat)
        self.transition_var = nn.Linear(lat, lat)
        with torch.no_grad():  # Krishnan et al. 2017: the linear mean path starts as identity
            self.transition_mean.weight.copy_(torch.eye(lat))
            self.transition_mean.bias.zero_()
        # emission
        self.decoder_body = _linears([lat, *config.decoder_dims])
        self.decoder_logvar = nn.Linear(([lat, *config.decoder_dims])[-1], f)

    # -- encoder ------------------------------------------------------------------------
    def encoder_parameters(self):
        """Parameters of the inference network (fine-tuned per file by VEM)."""
        for m in (self.encoder_dense, self.encoder_rnn, self.encoder_z,
                  self.encoder_combiner, self.encoder_mean, self.encoder_logvar):
            yield from m.parameters()

    def _posterior(self, power, eps, lengths):
        draws = eps.shape[0]
        x = _tanh_chain(self.encoder_features(power).permute(2, 0, 1), self.encoder_dense)
        back, _ = self.encoder_rnn(reverse_padded(x, lengths))
        gs = reverse_padded(back, lengths)  # (T, B, R): from s_{t:T}
        eps_t = self._to_time_major(eps)
        if self._use_reference():
            z, mean, logvar = self._reference_recurrence(self._per_draw(gs, draws), eps_t)
        else:
            z, mean, logvar = markov_posterior(
                self._per_draw(0.5 * gs, draws), eps_t,
                [(m.weight, m.bias) for m in self.encoder_z],
                [(m.weight, m.bias) for m in self.encoder_combiner],
                (self.encoder_mean.weight, self.encoder_mean.bias),
                (self.encoder_logvar.weight, self.encoder_logvar.bias))
        return tuple(self._from_time_major(v, draws) for v in (z, mean, logvar))

    def _grouped_posterior(self, params, power, eps, lengths):
        def layers(name, count):
            return [(params[f"{name}.{i}.weight"], params[f"{name}.{i}.bias"])
                    for i in range(count)]

        def features(p, pw):  # half the backward recurrence over the spectrogram
            x = self.encoder_features(pw).permute(2, 0, 1)  # (T, 1, F)
            for i in range(len(self.encoder_dense)):
                x = torch.tanh(F.linear(x, p(f"encoder_dense.{i}.weight"),
                                        p(f"encoder_dense.{i}.bias")))
            back = self._call(self.encoder_rnn, "encoder_rnn.", p, x.flip(0))[0]
            return 0.5 * back.flip(0)

        a = self._per_file(params, power, lengths, features)  # (T, B, R)
        a = a.unsqueeze(2).expand(-1, -1, eps.shape[2], -1)
        return markov_posterior(
            a, eps, layers("encoder_z", len(self.encoder_z)),
            layers("encoder_combiner", len(self.encoder_combiner)),
            (params["encoder_mean.weight"], params["encoder_mean.bias"]),
            (params["encoder_logvar.weight"], params["encoder_logvar.bias"]))

    def _reference_recurrence(self, gs: torch.Tensor, eps: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The combiner loop written plainly (modules stepped in Python under autograd):
        the reference the fast loop is tested against. ``gs (time, draws, R)``,
        ``eps (time, draws, latent)``."""
        z = gs.new_zeros((gs.shape[1], self.latent_dim))  # z_0 = 0
        zs, means, logvars = [], [], []
        for t in range(gs.shape[0]):
            g = 0.5 * (_tanh_chain(z, self.encoder_z) + gs[t])
            g = _tanh_chain(g, self.encoder_combiner)
            mean, logvar = self.encoder_mean(g), self.encoder_logvar(g)
            z = mean + torch.exp(0.5 * logvar) * eps[t]
            zs.append(z)
            means.append(mean)
            logvars.append(logvar)
        return torch.stack(zs), torch.stack(means), torch.stack(logvars)

    # -- transition, decoder, prior ----------------------------------------------------
    def transition(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``p(z_t | z_{t-1})`` (gated transition).

        Shape:
            ``z_prev (..., latent)`` -> two ``(..., latent)`` tensors.
        """
        gate = torch.sigmoid(self.gate_out(F.relu(self.gate_hidden(z_prev))))
        proposal = self.proposal_out(F.relu(self.proposal_hidden(z_prev)))
        mean = (1 - gate) * self.transition_mean(z_prev) + gate * proposal
        var = (F.softplus(self.transition_var(F.relu(proposal)))
               + self.config.transition_var_floor)
        return mean, torch.log(var)

    def _transition_seq(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transition parameters of every frame of ``z (..., latent, time)`` given the frame
        before (``z_0 = 0``): two ``(..., latent, time)`` tensors."""
        zt = z.transpose(-1, -2)  # (..., T, L)
        prev = torch.cat([torch.zeros_like(zt[..., :1, :]), zt[..., :-1, :]], -2)
        mean, logvar = self.transition(prev)
        return mean.transpose(-1, -2), logvar.transpose(-1, -2)

    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frame-wise emission ``exp(MLP(z_t))``: ``(..., latent, time)`` ->
        ``(..., freq, time)`` (the mask changes nothing)."""
        h = _tanh_chain(z.transpose(-1, -2), self.decoder_body)
        return torch.exp(self.decoder_logvar(h)).transpose(-1, -2)

    def kl(self, posterior: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        """Per frame, ``KL(q(z_t | z_{t-1}, s) || p(z_t | z_{t-1}))`` in closed form at the
        drawn ``z_{t-1}`` (``z_0 = 0``): ``(..., batch, time)``.

        Raises:
            ValueError: ``z`` is None (the prior's parameters depend on the drawn past).
        """
        if z is None:
            raise ValueError("the DKF's KL needs the drawn latents z (its prior "
                             "p(z_t | z_{t-1}) depends on them)")
        p_mean, p_logvar = self._transition_seq(z)
        q_mean, q_logvar = posterior.mean, posterior.logvar
        return 0.5 * (p_logvar - q_logvar + (q_logvar.exp() + (q_mean - p_mean).square())
                      * torch.exp(-p_logvar) - 1.0).sum(dim=-2)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z_t | z_{t-1})`` per frame up to the constant ``-latent/2 log(2 pi)``:
        ``(..., time)`` (the sum over time is ``log p(z)`` of the sequence)."""
        mean, logvar = self._transition_seq(z)
        return -0.5 * ((z - mean).square() * torch.exp(-logvar) + logvar).sum(dim=-2)

    def sample_latent(self, num_frames: int, batch: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw the Markov chain ``z_t ~ p(z_t | z_{t-1})`` frame by frame (``z_0 = 0``):
        ``(batch, latent, num_frames)``."""
        p = next(self.parameters())
        eps = torch.randn(num_frames, batch, self.latent_dim, generator=generator,
                          device=p.device, dtype=p.dtype)
        z = eps.new_zeros((batch, self.latent_dim))
        out = []
        with torch.no_grad():
            for t in range(num_frames):
                mean, logvar = self.transition(z)
                z = mean + torch.exp(0.5 * logvar) * eps[t]
                out.append(z)
        return torch.stack(out, -1)
