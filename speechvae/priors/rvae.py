"""Recurrent VAE prior (RVAE; Leglaive, Alameda-Pineda, Girin, Horaud, ICASSP 2020).

Generative model: ``z_t ~ N(0, I)`` independently per frame; the speech variance of frame ``t``
is ``v_t = exp(W h_t + b)`` with ``h_t`` the output of an LSTM over the latent sequence,
forward (``h_t`` from ``z_{1:t}``: the *causal* RVAE) or bidirectional (``h_t`` from
``z_{1:T}``: the *non-causal* RVAE).

Inference model: ``q(z | s) = prod_t q(z_t | z_{1:t-1}, s)`` Gaussian. The exact posterior of
the causal model depends on ``s_{t:T}`` only (``s_{1:t-1}`` depend on ``z_{1:t-1}`` alone);
that of the non-causal model on the whole ``s_{1:T}`` (paper, Sec. 3). Accordingly the encoder
runs an LSTM over the encoder features of the power spectrogram *backward* in time (causal)
or in both directions (non-causal), an LSTM *forward* over the drawn ``z_{1:t-1}``, and
combines the two by dense tanh layers into the mean and log-variance of ``z_t``. Draws are
sequential in ``t``; see :mod:`speechvae.priors.recurrence` for the fast loop.

Sizes follow the authors' code (``RVAE(input_dim=513, h_dim=128, z_dim=16, num_LSTM=1,
num_dense_enc=1)``): LSTMs of 128 units, one dense layer of 128 units with tanh, latent 16.

Choices of ours (documented, not the paper's): the encoder reads ``log(P + 1e-10)`` by default
(``encoder_input="log-power"``, as our frame-wise VAE; the authors' code feeds the power
spectrogram, ``"power"``), and a padding mask is honoured by reversing each sequence within
its valid length for the backward recurrences.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..stft import DEFAULT_STFT, STFTConfig
from .base import StandardNormalLatent, register_prior
from .recurrence import lstm_posterior
from .sequential import SequentialPrior, mask_lengths, reverse_padded

__all__ = ["RVAE", "RVAEConfig"]


@dataclass(frozen=True)
class RVAEConfig:
    """RVAE architecture.

    Attributes:
        n_freq: frequency bins (513 for the default STFT).
        latent_dim: dimension of ``z_t`` (16).
        hidden_dim: units of every LSTM (encoder over ``s``, encoder over ``z``, decoder),
            per direction (128).
        dense_dims: widths of the encoder's tanh layers combining the two recurrences
            (``(128,)``, the authors' ``num_dense_enc=1``); empty: the mean and
            log-variance layers read the concatenated recurrences directly (the published
            DVAE_SE RVAE of Bie et al., TASLP 2022).
        causal: True: forward-LSTM decoder and backward-LSTM encoder over ``s_{t:T}``;
            False: bidirectional decoder and bidirectional encoder over ``s_{1:T}``.
        encoder_input: ``"log-power"`` or ``"power"`` (see the module docstring).
        encoder_z_initial_step: False (default): frame 1's z-LSTM state is zero (no past
            latent); True: the z-LSTM is stepped once on ``z_0 = 0`` from the zero state
            before frame 1, as the DVAE_SE code does.
    """

    n_freq: int = 513
    latent_dim: int = 16
    hidden_dim: int = 128
    dense_dims: tuple[int, ...] = (128,)
    causal: bool = True
    encoder_input: str = "log-power"
    encoder_z_initial_step: bool = False

    def __post_init__(self):
        if self.encoder_input not in ("log-power", "power"):
            raise ValueError(f"encoder_input must be 'log-power' or 'power', "
                             f"got {self.encoder_input!r}")
        if any(d < 1 for d in self.dense_dims):
            raise ValueError(f"dense_dims must be positive widths, got {self.dense_dims}")
        for name in ("n_freq", "latent_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@register_prior("rvae")
class RVAE(StandardNormalLatent, SequentialPrior):
    """Recurrent VAE prior, causal or non-causal (``config.causal``).

    Shape:
        - sample_posterior: power ``(batch, freq, time)`` -> z and Posterior
          ``(batch, latent, time)`` (``(samples, batch, latent, time)`` with ``num_samples``)
        - decode: z ``(..., latent, time)`` -> variance ``(..., freq, time)``
        - kl: ``(..., batch, time)``; log_prior: ``(..., time)``

    References:
        Leglaive, Alameda-Pineda, Girin, Horaud, "A recurrent variational autoencoder for
        speech enhancement", ICASSP 2020; Girin, Leglaive, Bie, Diard, Hueber,
        Alameda-Pineda, "Dynamical variational autoencoders: a comprehensive review",
        Foundations and Trends in Machine Learning, 2021.
    """

    config_class = RVAEConfig

    def __init__(self, config: RVAEConfig = RVAEConfig(),
                 stft_config: STFTConfig = DEFAULT_STFT):
        super().__init__(config, stft_config)
        f, h, lat = config.n_freq, config.hidden_dim, config.latent_dim
        n_dir = 1 if config.causal else 2
        # encoder: recurrence(s) over the spectrogram, LSTM over the drawn latents, dense
        self.encoder_s_backward = nn.LSTM(f, h)
        self.encoder_s_forward = None if config.causal else nn.LSTM(f, h)
        self.encoder_z_cell = nn.LSTMCell(lat, h)
        dims = [n_dir * h + h, *config.dense_dims]  # dense_dims may be empty
        self.encoder_dense = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.encoder_mean = nn.Linear(dims[-1], lat)
        self.encoder_logvar = nn.Linear(dims[-1], lat)
        # decoder: LSTM over z (forward, plus backward if non-causal), linear log-variance
        self.decoder_forward = nn.LSTM(lat, h)
        self.decoder_backward = None if config.causal else nn.LSTM(lat, h)
        self.decoder_logvar = nn.Linear(n_dir * h, f)

    # -- encoder ------------------------------------------------------------------------
    def encoder_parameters(self):
        """Parameters of the inference network (fine-tuned per file by VEM)."""
        for m in (self.encoder_s_backward, self.encoder_s_forward, self.encoder_z_cell,
                  self.encoder_dense, self.encoder_mean, self.encoder_logvar):
            if m is not None:
                yield from m.parameters()

    def _spectrogram_recurrence(self, power: torch.Tensor, lengths: torch.Tensor | None
                                ) -> torch.Tensor:
        """``g^s``: ``(time, batch, n_dir * hidden)``, backward over ``s_{t:T}`` (and
        forward over ``s_{1:t}``, first, if non-causal)."""
        x = self.encoder_features(power).permute(2, 0, 1)  # (T, B, F)
        back, _ = self.encoder_s_backward(reverse_padded(x, lengths))
        back = reverse_padded(back, lengths)
        if self.encoder_s_forward is None:
            return back
        fwd, _ = self.encoder_s_forward(x)
        return torch.cat([fwd, back], -1)

    def _posterior(self, power, eps, lengths):
        draws = eps.shape[0]
        gs = self._spectrogram_recurrence(power, lengths)  # (T, B, Hs)
        eps_t = self._to_time_major(eps)  # (T, R*B, L)
        if self._use_reference():
            z, mean, logvar = self._reference_recurrence(self._per_draw(gs, draws), eps_t)
        else:
            n_s = gs.shape[-1]
            layers = self._combining_layers(dict(self.named_parameters()).__getitem__)
            (w_first, b_first), dense, out_mean, out_logvar, first_tanh = layers
            a = F.linear(gs, w_first[:, :n_s], b_first)  # all frames at once
            cell = self.encoder_z_cell
            z, mean, logvar = lstm_posterior(
                self._per_draw(a, draws), eps_t, cell.weight_ih, cell.weight_hh,
                cell.bias_ih, cell.bias_hh, w_first[:, n_s:], dense, out_mean, out_logvar,
                first_tanh=first_tanh, initial_step=self.config.encoder_z_initial_step)
        return tuple(self._from_time_major(x, draws) for x in (z, mean, logvar))

    def _combining_layers(self, p):
        """The encoder's layers after the recurrences as :func:`lstm_posterior` takes them:
        ``(first (weight, bias), further dense layers, mean layer, logvar layer,
        first_tanh)``, with ``p(name)`` giving the parameter ``name`` (possibly stacked per
        file). Without a dense stack the first "combining layer" is the mean and log-variance
        layers stacked (linear), followed by constant selections of its two halves."""
        if self.encoder_dense:
            n = len(self.encoder_dense)
            dense = [(p(f"encoder_dense.{i}.weight"), p(f"encoder_dense.{i}.bias"))
                     for i in range(1, n)]
            return ((p("encoder_dense.0.weight"), p("encoder_dense.0.bias")), dense,
                    (p("encoder_mean.weight"), p("encoder_mean.bias")),
                    (p("encoder_logvar.weight"), p("encoder_logvar.bias")), True)
        w_m, b_m = p("encoder_mean.weight"), p("encoder_mean.bias")
        w_v, b_v = p("encoder_logvar.weight"), p("encoder_logvar.bias")
        first = (torch.cat([w_m, w_v], -2), torch.cat([b_m, b_v], -1))
        lat = self.config.latent_dim
        eye = torch.eye(2 * lat, device=w_m.device, dtype=w_m.dtype)
        lead = w_m.shape[:-2]  # (groups,) when stacked per file
        sel_m = eye[:lat].expand(*lead, lat, 2 * lat)
        sel_v = eye[lat:].expand(*lead, lat, 2 * lat)
        zero = b_m.new_zeros(b_m.shape)
        return first, [], (sel_m, zero), (sel_v, zero), False

    def _grouped_posterior(self, params, power, eps, lengths):
        n_s = self.config.hidden_dim * (1 if self.config.causal else 2)

        def features(p, pw):  # the spectrogram part of the first combining layer
            x = self.encoder_features(pw).permute(2, 0, 1)  # (T, 1, F)
            back = self._call(self.encoder_s_backward, "encoder_s_backward.", p,
                              x.flip(0))[0].flip(0)
            if self.encoder_s_forward is not None:
                fwd = self._call(self.encoder_s_forward, "encoder_s_forward.", p, x)[0]
                back = torch.cat([fwd, back], -1)
            (w_first, b_first) = self._combining_layers(p)[0]
            return F.linear(back, w_first[:, :n_s], b_first)

        a = self._per_file(params, power, lengths, features)  # (T, B, D1)
        a = a.unsqueeze(2).expand(-1, -1, eps.shape[2], -1)  # (T, B, R, D1)
        (w_first, _), dense, out_mean, out_logvar, first_tanh = \
            self._combining_layers(params.__getitem__)
        return lstm_posterior(
            a, eps, params["encoder_z_cell.weight_ih"], params["encoder_z_cell.weight_hh"],
            params["encoder_z_cell.bias_ih"], params["encoder_z_cell.bias_hh"],
            w_first[..., n_s:], dense, out_mean, out_logvar, first_tanh=first_tanh,
            initial_step=self.config.encoder_z_initial_step)

    def _reference_recurrence(self, gs: torch.Tensor, eps: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder loop written plainly (``nn.LSTMCell`` and ``nn.Linear`` stepped in
        Python under autograd), as in the authors' code: the reference the fast loop is
        tested against. ``gs (time, draws, Hs)``, ``eps (time, draws, latent)``."""
        n_frames, n, _ = gs.shape
        h = gs.new_zeros((n, self.config.hidden_dim))
        c = torch.zeros_like(h)
        zs, means, logvars = [], [], []
        z = gs.new_zeros((n, self.config.latent_dim))  # z_0 = 0
        step0 = self.config.encoder_z_initial_step
        for t in range(n_frames):
            # the state of frame t summarises z_{1:t-1}; at t = 0 zero, or with
            # encoder_z_initial_step the state after one step on z_0 = 0
            if t > 0 or step0:
                h, c = self.encoder_z_cell(z, (h, c))
            d = torch.cat([gs[t], h], -1)
            for layer in self.encoder_dense:
                d = torch.tanh(layer(d))
            mean, logvar = self.encoder_mean(d), self.encoder_logvar(d)
            z = mean + torch.exp(0.5 * logvar) * eps[t]
            zs.append(z)
            means.append(mean)
            logvars.append(logvar)
        return torch.stack(zs), torch.stack(means), torch.stack(logvars)

    # -- decoder and prior --------------------------------------------------------------
    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Speech variance ``exp(W h_t + b)``, ``h_t`` the decoder LSTM(s) over ``z``.

        Shape:
            z ``(..., latent, time)`` -> ``(..., freq, time)``; ``mask (batch, time)``
            with ``batch`` the last leading dimension of ``z``.
        """
        lead, (lat, n_frames) = z.shape[:-2], z.shape[-2:]
        x = z.reshape(-1, lat, n_frames).permute(2, 0, 1)  # (T, N, L)
        h, _ = self.decoder_forward(x)
        if self.decoder_backward is not None:
            lengths = None
            if mask is not None:
                lengths = mask_lengths(mask, mask.shape[0], n_frames)
                lengths = lengths.repeat(x.shape[1] // lengths.shape[0])
            back, _ = self.decoder_backward(reverse_padded(x, lengths))
            h = torch.cat([h, reverse_padded(back, lengths)], -1)
        v = torch.exp(self.decoder_logvar(h))  # (T, N, F)
        return v.permute(1, 2, 0).reshape(*lead, self.config.n_freq, n_frames)

