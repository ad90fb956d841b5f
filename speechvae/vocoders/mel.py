"""Mel analysis of WaveGlow and the bridge from the toolkit's power spectrograms.

WaveGlow is conditioned on ``log(clamp(mel_magnitude, 1e-5))`` with its own analysis
(public models: 22.05 kHz, Hann window, n_fft 1024, hop 256, 80 Slaney mel bands on
0–8 kHz). The toolkit's priors decode 513-bin *power* spectrograms at 16 kHz (sine window,
n_fft 1024, hop 256). :func:`power_to_waveglow_mel` maps the latter onto the former:

1. ``magnitude = sqrt(power)``.
2. **Mel projection on the 16 kHz bins.** The 16 kHz bins (15.6 Hz apart) cover 0–8 kHz,
   exactly WaveGlow's mel range. The filterbank is ``librosa.filters.mel(sr=16000,
   n_fft=1024, n_mels=80, fmin=0, fmax=8000, norm="slaney")``: the same triangles in Hz
   (same mel band edges) as WaveGlow's 22.05 kHz / 1024-point filterbank (21.5 Hz bins),
   sampled on the 16 kHz grid.
3. **Magnitude scale.** A filter with Slaney normalisation sums to ``1 / bin spacing`` over
   the bins, and a broadband signal's STFT magnitude grows as
   ``sqrt(sample_rate * sum(window**2))``. :func:`bridge_gain` is the ratio of the two
   analyses for a broadband signal (0.738 from the toolkit's 16 kHz sine-window STFT to
   WaveGlow's 22.05 kHz Hann analysis; 1 when the settings agree). Strongly tonal bands
   differ from it by up to the ratio of the window sums (about 6 %, 0.06 in log units).
4. **Frame rate.** A 16 kHz hop of 256 is 16 ms, a 22.05 kHz hop of 256 is 11.6 ms. To keep
   durations, the log-mel is linearly interpolated in time at the WaveGlow frame instants
   (22050 / 16000 = 1.378 times more frames).

WaveGlow's output is then at its own rate (22.05 kHz); :class:`~.WaveGlowVocoder` resamples
it to the toolkit's rate (16 kHz) with soxr, so every vocoder returns waveforms at the
spectrogram's rate.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..stft import STFTConfig, _window
from .base import require_librosa
from .waveglow import DEFAULT_WAVEGLOW, WaveGlowConfig

__all__ = ["bridge_gain", "mel_filterbank", "power_to_waveglow_mel", "waveglow_mel"]


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
                   ) -> torch.Tensor:
    """Slaney-normalised mel filterbank from librosa, ``(n_mels, n_fft // 2 + 1)``."""
    librosa = require_librosa()
    if fmax > sample_rate / 2:
        raise ValueError(f"fmax {fmax} Hz is above the Nyquist frequency of "
                         f"{sample_rate} Hz")
    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                             fmax=fmax, norm="slaney")
    return torch.from_numpy(np.asarray(fb, dtype=np.float64))


def _wg_window(config: WaveGlowConfig, dtype=torch.float64) -> torch.Tensor:
    if config.win_length != config.n_fft:
        raise ValueError("win_length != n_fft is not supported")
    stft = STFTConfig(config.sample_rate, config.n_fft, config.hop_length, config.window)
    return _window(stft, dtype=dtype)


def waveglow_mel(audio: torch.Tensor, config: WaveGlowConfig = DEFAULT_WAVEGLOW
                 ) -> torch.Tensor:
    """WaveGlow's own mel analysis: ``log(clamp(mel_filterbank @ |STFT|, mel_floor))``.

    Args:
        audio: ``(batch, samples)`` or ``(samples,)`` at ``config.sample_rate``, full scale 1.

    Returns:
        ``(batch, n_mels, frames)`` (or without batch), ``frames = 1 + samples // hop``
        (centred, reflect-padded frames), same dtype as ``audio``.
    """
    win = _wg_window(config).to(audio.dtype)
    spec = torch.stft(audio, config.n_fft, config.hop_length, config.win_length, window=win,
                      center=True, pad_mode="reflect", return_complex=True).abs()
    fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin,
                        config.fmax).to(audio.dtype)
    return torch.log(torch.clamp(fb @ spec, min=config.mel_floor))


def bridge_gain(stft_config: STFTConfig, config: WaveGlowConfig) -> float:
    """Mel-magnitude ratio (WaveGlow analysis / toolkit analysis) for a broadband signal.

    ``sqrt(fs * sum(w**2)) * n_fft / fs`` of the WaveGlow analysis over the same quantity
    of the toolkit's STFT (see the module docstring).
    """
    w_t = _wg_window(config)
    w_s = _window(stft_config, dtype=torch.float64)

    def scale(fs, w, n_fft):
        return math.sqrt(fs * float((w * w).sum())) * n_fft / fs

    return (scale(config.sample_rate, w_t, config.n_fft)
            / scale(stft_config.sample_rate, w_s, stft_config.n_fft))


def target_length(num_samples: int, stft_config: STFTConfig, config: WaveGlowConfig) -> int:
    """Number of samples at WaveGlow's rate for ``num_samples`` at the toolkit's rate."""
    return round(num_samples * config.sample_rate / stft_config.sample_rate)


def power_to_waveglow_mel(power: torch.Tensor, stft_config: STFTConfig,
                          config: WaveGlowConfig = DEFAULT_WAVEGLOW,
                          num_samples: int | None = None) -> torch.Tensor:
    """Bridge: toolkit power spectrogram -> WaveGlow log-mel (see the module docstring).

    Args:
        power: ``(batch, freq, frames)`` or ``(freq, frames)``, linear power,
            ``freq = stft_config.n_freq``.
        stft_config: the STFT the power was computed with.
        config: the WaveGlow model's analysis settings.
        num_samples: length of the signal at the toolkit's rate (default
            ``(frames - 1) * hop``); fixes the number of WaveGlow frames.

    Returns:
        ``(batch, n_mels, frames_wg)`` (or without batch), ``frames_wg = 1 +
        target_length // config.hop_length``; float32.

    Raises:
        ValueError: wrong number of frequency bins, or a mel range above the toolkit's
            Nyquist frequency.
    """
    single = power.ndim == 2
    p = (power[None] if single else power).double()
    if p.shape[1] != stft_config.n_freq:
        raise ValueError(f"power has {p.shape[1]} bins, expected {stft_config.n_freq}")
    fb = mel_filterbank(stft_config.sample_rate, stft_config.n_fft, config.n_mels,
                        config.fmin, config.fmax)
    mel = bridge_gain(stft_config, config) * (fb @ p.sqrt())
    log_mel = torch.log(torch.clamp(mel, min=config.mel_floor))
    frames_s = p.shape[-1]
    if num_samples is None:
        num_samples = (frames_s - 1) * stft_config.hop_length
    frames_t = 1 + target_length(num_samples, stft_config, config) // config.hop_length
    # frame j of WaveGlow is at j * hop_t / fs_t seconds = that many toolkit frames:
    pos = (torch.arange(frames_t, dtype=torch.float64) * config.hop_length
           / config.sample_rate / stft_config.frame_s).clamp(max=frames_s - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=frames_s - 1)
    frac = (pos - lo).to(log_mel.dtype)
    out = log_mel[..., lo] * (1 - frac) + log_mel[..., hi] * frac
    out = out.float()
    return out[0] if single else out
