"""Vocoders: from power spectrograms back to waveforms (Griffin–Lim, WaveGlow).

Every vocoder implements :class:`Vocoder` (``sample_rate``, ``__call__(power) ->
waveform``) and is built by name with :func:`get_vocoder`::

    from speechvae.vocoders import get_vocoder
    wav = get_vocoder("griffin-lim")(power)          # (freq, time) -> (samples,)
    wav = get_vocoder("waveglow", checkpoint="waveglow_256channels_universal_v5.pt")(power)

Griffin–Lim and the WaveGlow mel bridge need librosa: ``pip install speechvae[editing]``.
"""
from .base import Vocoder, available_vocoders, get_vocoder, register_vocoder
from .griffinlim import GriffinLim, GriffinLimConfig, griffin_lim_known_frames
from .mel import bridge_gain, power_to_waveglow_mel, waveglow_mel
from .waveglow import WaveGlow, WaveGlowConfig, waveglow_loss
from .waveglow_checkpoint import RestrictedUnpickler, load_waveglow, save_waveglow
from .waveglow_vocoder import WaveGlowVocoder, WaveGlowVocoderConfig

__all__ = [
    "GriffinLim",
    "GriffinLimConfig",
    "RestrictedUnpickler",
    "Vocoder",
    "WaveGlow",
    "WaveGlowConfig",
    "WaveGlowVocoder",
    "WaveGlowVocoderConfig",
    "available_vocoders",
    "bridge_gain",
    "get_vocoder",
    "griffin_lim_known_frames",
    "load_waveglow",
    "power_to_waveglow_mel",
    "register_vocoder",
    "save_waveglow",
    "waveglow_loss",
    "waveglow_mel",
]
