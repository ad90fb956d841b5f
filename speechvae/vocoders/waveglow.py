"""WaveGlow: a flow-based vocoder conditioned on log-mel spectrograms.

Written from the paper (Prenger, Valle, Catanzaro, "WaveGlow: a flow-based generative network
for speech synthesis", ICASSP 2019). The audio is folded into groups of ``n_group`` samples
(a "squeeze" to ``n_group`` channels); each of ``n_flows`` steps applies an invertible 1x1
convolution (a learned channel rotation, Kingma & Dhariwal 2018) and an affine coupling layer
whose scale and shift come from a WaveNet-like network ``WN`` fed with half the channels and
the upsampled mel spectrogram. Every ``n_early_every`` flows, ``n_early_size`` channels are
output early (sent straight to ``z``).

Module attribute names follow NVIDIA's public release (``upsample``, ``WN.{k}.start``,
``WN.{k}.in_layers.{i}``, ``WN.{k}.res_skip_layers.{i}``, ``WN.{k}.cond_layer``,
``WN.{k}.end``, ``convinv.{k}.conv.weight``) so that released weights load after weight-norm
folding; see :mod:`speechvae.vocoders.waveglow_checkpoint`.

Shapes: audio ``(batch, samples)``; mel ``(batch, n_mels, frames)``, natural-log magnitude
mel, ``samples = frames * hop_length``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WN", "Invertible1x1Conv", "WaveGlow", "WaveGlowConfig", "waveglow_loss"]


@dataclass(frozen=True)
class WaveGlowConfig:
    """WaveGlow architecture and the mel analysis it is conditioned on.

    The defaults are the paper's / the public checkpoints' (22.05 kHz, 80 bands, 12 flows);
    the 256-channel universal model sets ``n_channels=256``. Models trained with
    ``recipes/waveglow`` at 16 kHz set ``sample_rate=16000`` (and may use the toolkit's sine
    window, making the bridge from the toolkit's spectrograms exact up to the mel projection).

    Attributes:
        sample_rate: audio rate in Hz.
        n_fft, win_length, hop_length: mel analysis STFT sizes in samples.
        window: ``"hann"`` (NVIDIA's analysis) or ``"sine"`` (the toolkit's).
        n_mels, fmin, fmax: mel bands and their range in Hz (Slaney mel filterbank).
        mel_floor: magnitude floor before the log (``log(clamp(mel, mel_floor))``).
        n_flows, n_group, n_early_every, n_early_size: flow structure.
        n_layers, n_channels, kernel_size: the WN coupling network.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    window: str = "hann"
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    mel_floor: float = 1e-5
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    n_layers: int = 8
    n_channels: int = 512
    kernel_size: int = 3

    def __post_init__(self):
        if self.n_group % 2 or self.n_early_size % 2:
            raise ValueError("n_group and n_early_size must be even")
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.window not in ("hann", "sine"):
            raise ValueError(f"window must be 'hann' or 'sine', got {self.window!r}")
        if self.remaining_channels(self.n_flows) < 2:
            raise ValueError("too many early outputs for n_group")

    def remaining_channels(self, flow: int) -> int:
        """Channels still transformed at flow ``flow`` (after the early outputs before it)."""
        early = flow // self.n_early_every  # early outputs at flows every, 2*every, ...
        return self.n_group - self.n_early_size * early

    @property
    def n_remaining_channels(self) -> int:
        """Channels left after the last early output (those of the last flow)."""
        return self.remaining_channels(self.n_flows - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: the public checkpoints' settings (22.05 kHz, 512 channels)
DEFAULT_WAVEGLOW = WaveGlowConfig()


class Invertible1x1Conv(nn.Module):
    """Invertible 1x1 convolution ``z = W x`` over channels, W initialised as a random
    rotation (det +1). Its log-determinant enters the flow's log-likelihood."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1, bias=False)
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(w[:, :, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, channels, groups)`` -> (same shape, ``log|det|`` summed over the
        batch and the groups, a scalar)."""
        w = self.conv.weight.squeeze(-1)
        logdet = x.shape[0] * x.shape[2] * torch.linalg.slogdet(w.double())[1].to(x.dtype)
        return F.conv1d(x, self.conv.weight), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight.squeeze(-1)
        w_inv = torch.linalg.inv(w.double()).to(z.dtype)
        return F.conv1d(z, w_inv[:, :, None])


class WN(nn.Module):
    """WaveNet-like network of the affine coupling: dilated convolutions (dilation 2^i),
    gated tanh/sigmoid units conditioned on the upsampled mel, residual and skip 1x1
    convolutions. The last layer is zero-initialised, so each coupling starts as identity.

    Shape:
        ``x (batch, n_in, groups)``, ``cond (batch, n_cond, groups)`` ->
        ``(batch, 2 * n_in, groups)`` (shift, then log-scale).
    """

    def __init__(self, n_in: int, n_cond: int, n_layers: int, n_channels: int,
                 kernel_size: int):
        super().__init__()
        self.n_layers, self.n_channels = n_layers, n_channels
        self.start = nn.Conv1d(n_in, n_channels, 1)
        self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)
        # one 1x1 conv for the conditioning of every layer (NVIDIA's later "cond_layer";
        # older releases had one per layer, "cond_layers.{i}", merged at load time)
        self.cond_layer = nn.Conv1d(n_cond, 2 * n_channels * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = 2 ** i
            self.in_layers.append(nn.Conv1d(n_channels, 2 * n_channels, kernel_size,
                                            dilation=d, padding=d * (kernel_size - 1) // 2))
            out = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(nn.Conv1d(n_channels, out, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.start(x)
        skip = torch.zeros_like(h)
        cond = self.cond_layer(cond)
        c = self.n_channels
        for i in range(self.n_layers):
            a = self.in_layers[i](h) + cond[:, 2 * c * i: 2 * c * (i + 1)]
            acts = torch.tanh(a[:, :c]) * torch.sigmoid(a[:, c:])
            rs = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                h = h + rs[:, :c]
                skip = skip + rs[:, c:]
            else:
                skip = skip + rs
        return self.end(skip)


class WaveGlow(nn.Module):
    """WaveGlow flow (Prenger, Valle, Catanzaro, ICASSP 2019).

    Args:
        config: :class:`WaveGlowConfig`.

    Shape:
        - :meth:`forward`: mel ``(batch, n_mels, frames)``, audio ``(batch, samples)`` with
          ``samples`` a multiple of ``n_group`` and at most ``frames * hop_length`` ->
          ``z (batch, n_group, samples // n_group)`` plus log-det terms.
        - :meth:`infer`: mel ``(batch, n_mels, frames)`` -> audio
          ``(batch, frames * hop_length)``.
    """

    def __init__(self, config: WaveGlowConfig = WaveGlowConfig()):
        super().__init__()
        self.config = c = config
        self.upsample = nn.ConvTranspose1d(c.n_mels, c.n_mels, c.win_length,
                                           stride=c.hop_length)
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        for k in range(c.n_flows):
            ch = c.remaining_channels(k)
            self.convinv.append(Invertible1x1Conv(ch))
            self.WN.append(WN(ch // 2, c.n_mels * c.n_group, c.n_layers, c.n_channels,
                              c.kernel_size))

    def _early(self, k: int) -> bool:
        return k > 0 and k % self.config.n_early_every == 0

    def _condition(self, mel: torch.Tensor, groups: int) -> torch.Tensor:
        """Upsample the mel to the sample rate and fold it like the audio:
        ``(batch, n_mels * n_group, groups)``."""
        g = self.config.n_group
        up = self.upsample(mel)[:, :, : groups * g]
        if up.shape[-1] < groups * g:
            raise ValueError(f"mel of {mel.shape[-1]} frames is too short for "
                             f"{groups * g} samples")
        b, m, _ = up.shape
        return up.reshape(b, m, groups, g).permute(0, 1, 3, 2).reshape(b, m * g, groups)

    def forward(self, mel: torch.Tensor, audio: torch.Tensor):
        """Audio -> latent ``z`` with the log-determinant terms of the training loss.

        Returns:
            ``(z, log_s_list, log_det_w_list)``: ``z (batch, n_group, groups)`` (early
            outputs first), the coupling log-scales (one tensor per flow) and the 1x1
            convolutions' log-determinants (one scalar per flow, summed over batch and
            groups).
        """
        c = self.config
        if audio.shape[-1] % c.n_group:
            raise ValueError(f"audio length {audio.shape[-1]} is not a multiple of "
                             f"n_group={c.n_group}")
        groups = audio.shape[-1] // c.n_group
        cond = self._condition(mel, groups)
        x = audio.reshape(audio.shape[0], groups, c.n_group).transpose(1, 2)
        outputs, log_s_list, log_det_list = [], [], []
        for k in range(c.n_flows):
            if self._early(k):
                outputs.append(x[:, : c.n_early_size])
                x = x[:, c.n_early_size:]
            x, log_det = self.convinv[k](x)
            log_det_list.append(log_det)
            half = x.shape[1] // 2
            x0, x1 = x[:, :half], x[:, half:]
            out = self.WN[k](x0, cond)
            shift, log_s = out[:, :half], out[:, half:]
            x1 = torch.exp(log_s) * x1 + shift
            log_s_list.append(log_s)
            x = torch.cat([x0, x1], 1)
        outputs.append(x)
        return torch.cat(outputs, 1), log_s_list, log_det_list

    def inverse(self, mel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The exact inverse of :meth:`forward`: ``z (batch, n_group, groups)`` -> audio
        ``(batch, groups * n_group)``."""
        c = self.config
        groups = z.shape[-1]
        cond = self._condition(mel, groups)
        n_early = sum(self._early(k) for k in range(c.n_flows))
        split = n_early * c.n_early_size
        early, x = z[:, :split], z[:, split:]
        for k in reversed(range(c.n_flows)):
            half = x.shape[1] // 2
            x0, x1 = x[:, :half], x[:, half:]
            out = self.WN[k](x0, cond)
            shift, log_s = out[:, :half], out[:, half:]
            x1 = (x1 - shift) * torch.exp(-log_s)
            x = self.convinv[k].inverse(torch.cat([x0, x1], 1))
            if self._early(k):
                x = torch.cat([early[:, split - c.n_early_size: split], x], 1)
                split -= c.n_early_size
        return x.transpose(1, 2).reshape(z.shape[0], -1)

    @torch.no_grad()
    def infer(self, mel: torch.Tensor, sigma: float = 0.6,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample audio given the mel: ``z ~ N(0, sigma^2 I)`` through :meth:`inverse`.

        Args:
            mel: ``(batch, n_mels, frames)`` natural-log magnitude mel.
            sigma: standard deviation of ``z`` (the paper samples with 0.6).
            generator: random generator (explicit randomness).

        Returns:
            ``(batch, frames * hop_length)``.
        """
        c = self.config
        groups = mel.shape[-1] * c.hop_length // c.n_group
        z = sigma * torch.randn(mel.shape[0], c.n_group, groups, generator=generator,
                                device=mel.device, dtype=mel.dtype)
        return self.inverse(mel, z)


def waveglow_loss(z: torch.Tensor, log_s_list, log_det_list, sigma: float = 1.0
                  ) -> torch.Tensor:
    """WaveGlow negative log-likelihood per audio sample (up to a constant).

    ``-log p(x) = sum(z^2) / (2 sigma^2) - sum(log_s) - sum(log|det W|)`` divided by the
    number of samples ``z.numel()``.

    References:
        Prenger, Valle, Catanzaro, ICASSP 2019, eq. (1)-(5).
    """
    log_s_total = sum(ls.sum() for ls in log_s_list)
    log_det_total = sum(log_det_list)
    nll = (z * z).sum() / (2 * sigma ** 2) - log_s_total - log_det_total
    return nll / z.numel()
