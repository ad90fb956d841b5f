"""Latent source–filter edits of real speech: f0 shift, formant edit, whispering.

Two methods (:attr:`EditConfig.method`):

* ``"relative"`` (default, issue 16): what the VAE cannot represent is carried from the
  input. The latent edit (step 3 below) is applied as the change it makes to the decoded
  spectral envelope, ``E[v(z_new)] / E[v(z)]`` (:mod:`.envelope`), on the input.
  f0 edits: the voiced frames are resynthesised as harmonics of the *target* f0 whose phases
  accumulate from the target track and whose amplitudes sample the input's short-time
  envelope (:mod:`.harmonic`; for voices below 160 Hz an all-pole model fitted to the
  input's harmonic peaks, discrete all-pole modelling; above, WORLD's CheapTrick; by
  default without the latent envelope change, which
  moved F1 by 15–30 %, ``recipes/editing/README.md``), cross-faded with the untouched input
  on unvoiced frames. Formant edits and whispering: the input's power times the envelope
  change (for whispering on a flat, random-phase excitation), with the input's phase
  (formant edits) or Griffin–Lim (whispering); relative formant edits measure the formant they
  reach (Praat Burg), correct the latent target and warn when the target is not reached.
  With no latent change the input comes back exactly.
* ``"latent"``: the decoder-only pipeline below.

Pipeline of the ``"latent"`` method (Sadok et al., Speech Communication 2023, §4–5, with the
changes listed below; steps 1–3 are shared by both methods):

1. The input is resampled to the prior's rate and peak-normalised; its STFT gives the power
   spectrogram ``P`` and the latent ``z`` (posterior mean of the encoder, frame by frame).
2. Voicing and the input's f0 contour come from Praat's autocorrelation pitch tracker
   (Boersma 1993, through praat-parselmouth), sampled at the STFT frame centres. Only
   voiced frames are edited.
3. On voiced frames the latent moves inside the factor's subspace,
   ``z_new = z - U U^T z + U g(y)`` (:meth:`FactorSubspace.move`), or leaves it
   (whispering: ``z - U_0 U_0^T z``). For f0 edits the part of ``z_new`` outside the f0
   subspace is then moved a little so that the decoded spectrum follows the target's
   harmonic comb (:func:`harmonic_refinement`, ours, not in the paper). ``z_new`` is decoded
   to a speech variance ``v(z_new)``. Each
   edited frame is scaled by ``sum_f P_ft / sum_f v_ft(z)`` (the input frame's energy over
   the energy of its unedited reconstruction), so that an edit changes the spectral shape
   and not the loudness.
4. Waveform: with Griffin–Lim (default), unvoiced frames keep the input's STFT exactly
   (magnitude and phase) and only the edited frames are iterated
   (:func:`~speechvae.vocoders.griffin_lim_known_frames`). The edited frames start from a
   phase that suits the edit: the STFT phase of a pulse train (the source of the
   source–filter model) at the target f0 for f0 edits and at the input's f0 for formant
   edits (by default this phase is kept as it is, ``EditConfig.excitation_iter = 0``, see
   there), a random phase for whispering (no periodic source). Another vocoder
   (WaveGlow) vocodes the whole spectrogram, with the input's power on unvoiced frames.

Changes from the paper: unvoiced frames are left untouched (the authors' code edits every
frame); the harmonic-comb refinement of f0 edits (without it, the input's pitch, kept outside
the f0 subspace, won on about 40 % of the files of a pitch corpus at 150 and 200 Hz;
``recipes/editing/README.md``); the subspaces are learned from several series of vowels (see
:mod:`~speechvae.editing.subspaces`); the per-frame energy normalisation and the
edit-specific initial phase of Griffin–Lim (the paper used WaveGlow).

Shapes: waveforms ``(time,)`` float32; spectrograms ``(freq, frames)``; latents
``(latent, frames)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import AudioError, AudioWarning, check_waveform, resample
from ..priors.base import Prior
from ..stft import STFTConfig, stft
from .common import (
    FACTORS,
    VOICING_METHODS,
    edit_voicing,
    frame_f0,
    harvest_f0,
    import_pyworld,
)
from .envelope import envelope_ratio
from .harmonic import ENVELOPE_KINDS
from .subspaces import SourceFilterSubspaces

__all__ = [
    "EDIT_METHODS",
    "Analysis",
    "EditConfig",
    "Editor",
    "default_editing_prior",
    "frame_f0",
    "harmonic_comb",
    "harmonic_refinement",
    "load_editor",
    "pulse_train",
    "shipped_subspaces",
]

#: edit methods of :class:`EditConfig` (the first is the default)
EDIT_METHODS = ("relative", "latent")

_PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained" / "editing"


@dataclass(frozen=True)
class EditConfig:
    """Settings of the edits.

    Attributes:
        method: ``"relative"`` (default): the edit is applied to the input as the change it
            makes to the decoded spectral envelope (:mod:`speechvae.editing.envelope`), f0
            edits take their harmonics and phase from a pulse train at the target f0, and
            the input's fine structure, formants and phase are kept otherwise.
            ``"latent"``: the earlier method, voiced frames resynthesised from the decoder
            alone (Sadok et al. 2023, with the changes listed in the module docstring).
        f0_envelope: relative f0 edits only: ``"input"`` (default) keeps the input's
            envelope as it is; ``"edit"`` multiplies it by the envelope change of the latent
            f0 edit (``E[v(z_edited)] / E[v(z)]``). Measured in ``recipes/editing/README.md``.
        envelope: relative f0 edits: the input envelope the harmonics sample
            (:func:`~speechvae.editing.harmonic.short_time_envelope`). ``"auto"`` (default):
            ``"cheaptrick"`` for voices whose median f0 is at or above ``high_voice_hz``,
            ``"dap"`` below (:meth:`Editor.envelope_kind`; ``"dap"`` without ``pyworld``).
            ``"dap"``: on voiced frames the discrete all-pole model (El-Jaroudi & Makhoul
            1991) of the input's harmonic peaks, with the ``"lpc"`` envelope as anchors
            between them (``anchor_weight``); ``"cheaptrick"``: WORLD's pitch-adaptive
            envelope (Morise 2015, ``pyworld``) at the level of the ``"lpc"`` one, which
            lowered the F1 drift of high (female) voices most and that of low voices at
            upward shifts least; ``"lpc"``: all-pole shape of the whole frame, smooth
            between the input's harmonics but pulled toward single harmonics when they are
            sparse (the default before; its F1 drift was above WORLD's on FDA at
            150–250 Hz and at ±0 st); ``"cepstrum"``: the regularised discrete cepstrum
            (Cappé & Moulines 1996) of the same samples; ``"true"``: true envelope, through
            the harmonic peaks. Measured in ``recipes/editing/README.md``.
        anchor_weight: ``envelope="dap"`` / ``"cepstrum"``: weight (against 1 for a
            harmonic) of the anchor samples of the ``"lpc"`` envelope at the midpoints
            between harmonics, which keep the all-pole fit from drawing sharp peaks between
            the harmonics, where harmonics at another f0 sample it.
        anchor_weight_same_f0, anchor_full_st: the anchor weight of a frame whose target f0
            is the input's (``±0 st``: the harmonics sample the fitted points themselves),
            rising linearly to ``anchor_weight`` at a shift of ``anchor_full_st`` semitones
            (0: ``anchor_weight`` everywhere). On the first 4 s of 3 dev and 4 FDA files the
            F1 drift at ±0 st was 2.82 / 2.43 % (dev / FDA) with weight 2 throughout and
            2.44 / 1.88 % with 0.5 at ±0 st; with no anchors at ±0 st, 2.36 / 1.94 % but pyin
            kept 92.4 / 89.8 % of the voiced frames instead of 96.4 / 96.3 %.
        high_voice_hz: ``envelope="auto"``: median input f0 (Hz) from which CheapTrick is
            taken instead of DAP.
        cepstrum_order, cepstrum_smoothness: ``envelope="cepstrum"``: order and roughness
            weight of :func:`~speechvae.editing.harmonic.cepstrum_fit`.
        harmonic_phase: relative f0 edits: ``"zero"`` (default: each harmonic's phase is
            ``k`` times the phase accumulated from the target f0) or ``"minimum"`` (plus the
            envelope's minimum phase).
        voicing_threshold: relative f0 edits: a sample is taken from the harmonic
            resynthesis where the voicing of the frames, linearly interpolated (0..1), is
            above this; below 0.5 the edited stretches grow by ``0.5 - t`` frames at each end
            (0.25: 4 ms), which raised pyin's voiced frames kept at 300 Hz from 90.0 to 91.6 %
            (4 files; ``recipes/editing/README.md``).
        voicing: relative f0 edits: which frames are rebuilt at the target f0. ``"praat"``:
            the frames Praat calls voiced (as for the latent edit); ``"praat+harvest"``
            (default): also those WORLD's Harvest (Morise, Interspeech 2017) calls voiced
            (f0 from Harvest there; needs ``pyworld``, ``pip install
            speechvae[editing-bench]``, else Praat's alone with a warning), so that frames
            left at the input's pitch next to edited ones do not break a listener's or a
            tracker's f0 track (:func:`~speechvae.editing.common.edit_voicing`). On the
            first 4 s of 3 dev and 4 FDA files at 300 Hz it raised pyin's voiced frames
            kept from 87.1 / 84.3 % to 92.4 / 97.0 % (dev / FDA).
        voicing_gap_s: relative f0 edits: unvoiced gaps up to this long (s, default 50 ms)
            between voiced frames are rebuilt too, the f0 interpolated across them (0:
            none; 92.4 / 97.0 % -> 92.8 / 97.4 % in the same probe).
        lpc_order: relative f0 edits with ``envelope="lpc"`` or ``"dap"``: order of the
            all-pole envelope. None (default): from the input's median f0, ``2 + rate / 1000`` (18
            at 16 kHz) for voices at or above 160 Hz and 4 more (22) below, where the
            harmonics are dense enough not to pull the poles; on the first 4 s of 3 dev and
            4 FDA files this lowered the F1 drift of the ±0 st resynthesis from 4.0 / 3.3 %
            to 3.8 / 3.0 % (dev / FDA, ``recipes/editing/README.md``).
        ratio_limit_db: largest envelope change the relative method applies (dB, per bin).
        envelope_iter: true-envelope iterations (:func:`~.envelope.true_envelope`).
        formant_tolerance: relative formant edits: the achieved formant (median Praat Burg
            value over voiced frames) must be within this share of the target, else the
            latent target is corrected (``formant_correction_steps`` times at most, until
            it is within a fifth of the tolerance) and a warning gives the achieved value
            (also when the edit is within the tolerance with the ceiling chosen from f0 but
            not with Praat's other ceiling, 5000 or 5500 Hz, or not on the frames voiced in
            both input and output); if no edit comes closer to the
            target than the input, the input is returned (with the warning).
        formant_correction_steps: see ``formant_tolerance`` (0: measure and warn only).
        pitch_floor, pitch_ceiling: search range of the voicing / f0 tracker (Hz).
        griffin_lim_iter: Griffin–Lim iterations on the edited frames of whispering.
        excitation_iter: Griffin–Lim iterations after the pulse-train start of f0 and
            formant edits. The
            default 0 keeps the excitation's phase: the shipped prior draws the harmonic
            comb of low voices (about 100–150 Hz) blurred, and a few Griffin–Lim iterations
            then lose the pitch (measured in ``recipes/editing/README.md``).
        momentum: fast Griffin–Lim momentum.
        comb_steps: Adam steps of :func:`harmonic_refinement` after an f0 edit (0: none).
        comb_weight: its weight of the squared distance to the subspace edit (per frame).
        comb_lr: its Adam learning rate.
        comb_max_hz: highest frequency of the harmonic comb (Hz).
        comb_min_f0: frames whose target f0 is below this (Hz) are not refined: the decoder
            draws low combs blurred, and sharpening them cost periodicity (on FDA at 100 Hz
            the mean f0 error went from 1.9 to 4.3 %, ``recipes/editing/README.md``).
        seed: seed of the random phase (whispering).
        max_duration_s: longest input accepted (s); editing holds the whole STFT in memory.
    """

    method: str = "relative"
    f0_envelope: str = "input"
    envelope: str = "auto"
    harmonic_phase: str = "zero"
    voicing_threshold: float = 0.25
    voicing: str = "praat+harvest"
    voicing_gap_s: float = 0.05
    lpc_order: int | None = None
    cepstrum_order: int = 30
    cepstrum_smoothness: float = 5e-4
    anchor_weight: float = 2.0
    anchor_full_st: float = 1.0
    high_voice_hz: float = 160.0
    anchor_weight_same_f0: float = 0.5
    ratio_limit_db: float = 12.0
    envelope_iter: int = 24
    formant_tolerance: float = 0.05
    formant_correction_steps: int = 2
    pitch_floor: float = 60.0
    pitch_ceiling: float = 500.0
    griffin_lim_iter: int = 32
    excitation_iter: int = 0
    momentum: float = 0.99
    comb_steps: int = 30
    comb_weight: float = 0.1
    comb_lr: float = 0.05
    comb_max_hz: float = 4000.0
    comb_min_f0: float = 120.0
    seed: int = 0
    max_duration_s: float = 600.0

    def __post_init__(self):
        if self.method not in EDIT_METHODS:
            raise ValueError(f"unknown edit method {self.method!r}; use "
                             f"{', '.join(EDIT_METHODS)}")
        if self.f0_envelope not in ("input", "edit"):
            raise ValueError(f"f0_envelope must be 'input' or 'edit', got {self.f0_envelope!r}")
        if self.voicing not in VOICING_METHODS:
            raise ValueError(f"voicing must be one of {', '.join(VOICING_METHODS)}, got "
                             f"{self.voicing!r}")
        if self.envelope not in ENVELOPE_KINDS + ("auto",):
            raise ValueError(f"envelope must be 'auto' or one of {', '.join(ENVELOPE_KINDS)}, "
                             f"got {self.envelope!r}")
        if self.cepstrum_order < 1:
            raise ValueError(f"cepstrum_order must be >= 1, got {self.cepstrum_order}")
        if not self.cepstrum_smoothness >= 0:
            raise ValueError(f"cepstrum_smoothness must be >= 0, got {self.cepstrum_smoothness}")
        if not (self.anchor_weight >= 0 and self.anchor_weight_same_f0 >= 0):
            raise ValueError(f"anchor weights must be >= 0, got {self.anchor_weight} and "
                             f"{self.anchor_weight_same_f0}")
        if not self.anchor_full_st >= 0:
            raise ValueError(f"anchor_full_st must be >= 0, got {self.anchor_full_st}")
        if not self.high_voice_hz > 0:
            raise ValueError(f"high_voice_hz must be > 0, got {self.high_voice_hz}")
        if self.lpc_order is not None and self.lpc_order < 2:
            raise ValueError(f"lpc_order must be >= 2 or None, got {self.lpc_order}")
        if not self.voicing_gap_s >= 0:
            raise ValueError(f"voicing_gap_s must be >= 0, got {self.voicing_gap_s}")


def harmonic_comb(f0: torch.Tensor, stft_config: STFTConfig, max_hz: float = 4000.0
                  ) -> torch.Tensor:
    """Weights ``comb_ft`` such that ``sum_f comb_ft log v_ft`` measures how well the
    log-spectrum ``log v_t`` follows the harmonic comb of ``f0_t`` and not that of its octave.

    ``comb_ft = cos(2 pi f / f0_t) - cos(2 pi f / (2 f0_t))`` on the band
    ``[f0_t / 2, max_hz]``, made zero-mean over the band and divided by its number of bins
    (zero outside it). The first cosine is the log-spectrum's cepstral component at the
    quefrency ``1 / f0``: high for a comb at ``f0``, zero for one at ``f0 / 2`` or ``f0 / 3``
    (sub-harmonics), but also positive for a comb at ``2 f0``, whose second rahmonic falls
    there; the second cosine, that comb's first rahmonic, cancels it.

    Args:
        f0: ``(frames,)`` Hz, > 0.
    Returns:
        ``(freq, frames)``.
    """
    fhz = (torch.arange(stft_config.n_freq, device=f0.device, dtype=f0.dtype)
           * stft_config.sample_rate / stft_config.n_fft)[:, None]
    band = (fhz >= 0.5 * f0) & (fhz <= max_hz)
    n = band.sum(0).clamp_min(1)
    comb = (torch.cos(2 * math.pi * fhz / f0) - torch.cos(math.pi * fhz / f0)) * band
    comb = (comb - comb.sum(0) / n) * band
    return comb / n


def harmonic_refinement(prior: Prior, z: torch.Tensor, f0: torch.Tensor,
                        basis: torch.Tensor, frames: torch.Tensor, steps: int = 30,
                        weight: float = 0.1, lr: float = 0.05,
                        max_hz: float = 4000.0) -> torch.Tensor:
    """Move ``z`` outside the f0 subspace so that the decoded spectrum follows the harmonic
    comb of ``f0`` (ours; added to the edit of Sadok et al. 2023).

    The subspace edit sets the f0 coordinates ``U^T z``, but some of the input's pitch is
    encoded outside them, and the decoded spectrum can then carry both harmonic combs.
    This maximises, by ``steps`` Adam steps on a displacement ``d`` restricted to the
    complement (``z + (I - U U^T) d``; the f0 coordinates stay as edited), the mean over
    the ``frames`` of ``sum_f comb_ft log v_ft(z)`` (:func:`harmonic_comb`) minus
    ``weight * ||(I - U U^T) d_t||^2``. The prior is not changed.

    Args:
        prior: a frame-wise prior.
        z: edited latents ``(latent, frames)``.
        f0: target f0 ``(frames,)`` in Hz (any positive value on frames not refined).
        basis: ``U``, ``(latent, M)`` orthonormal columns (the f0 subspace).
        frames: boolean ``(frames,)``: the frames to refine; the others come back unchanged.

    Returns:
        refined latents ``(latent, frames)``.
    """
    if steps <= 0 or not bool(frames.any()):
        return z
    U = basis.to(z)
    complement = torch.eye(U.shape[0], dtype=z.dtype, device=z.device) - U @ U.T
    comb = harmonic_comb(f0.to(z), prior.stft_config, max_hz)
    w = frames.to(z.dtype) / frames.sum()
    d = torch.zeros_like(z, requires_grad=True)
    opt = torch.optim.Adam([d], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            move = complement @ d
            log_v = torch.log(prior.decode((z + move)[None])[0].clamp_min(1e-20))
            score = ((comb * log_v).sum(0) * w).sum()
            loss = -score + weight * (move.square().sum(0) * w).sum()
            (d.grad,) = torch.autograd.grad(loss, d)  # no gradient into the prior
            opt.step()
    with torch.no_grad():
        return torch.where(frames, z + complement @ d, z)


def pulse_train(f0_frames: np.ndarray, num_samples: int, stft_config: STFTConfig
                ) -> np.ndarray:
    """A band-limited pulse train following a frame-wise f0 contour (the "source" of the
    source–filter model); zero where the contour is NaN.

    ``sum_{k=1..K} cos(k phi(n))`` with the instantaneous phase
    ``phi(n) = 2 pi sum_{m<=n} f0(m) / rate`` and ``K(n)`` the number of harmonics below the
    Nyquist frequency, evaluated in closed form (the Dirichlet kernel). Band-limiting puts each
    pulse at its exact, fractional instant: pulses rounded to whole samples would give periods
    that alternate (e.g. 107, 107, 106 samples at 150 Hz), a sub-harmonic pattern that pitch
    trackers hear.

    Args:
        f0_frames: ``(frames,)`` Hz at the STFT frame centres, NaN where unvoiced.
        num_samples: output length.
        stft_config: rate and hop of the frames.

    Returns:
        float32 ``(num_samples,)``, peaks of height ``K`` at the pulse instants.
    """
    sr, hop = stft_config.sample_rate, stft_config.hop_length
    n = np.arange(num_samples)
    centres = np.arange(f0_frames.size) * hop
    voiced = np.interp(n, centres, np.isfinite(f0_frames) * 1.0) > 0.5
    f0 = np.where(voiced, np.interp(n, centres, np.nan_to_num(f0_frames, nan=0.0)), 0.0)
    phase = 2 * np.pi * np.cumsum(f0 / sr)
    harmonics = np.floor(0.5 * sr / np.maximum(f0, 1e-6))
    half = np.sin(0.5 * phase)
    near_pulse = np.abs(half) < 1e-6
    kernel = (np.sin((harmonics + 0.5) * phase) / np.where(near_pulse, 1.0, 2 * half)) - 0.5
    out = np.where(near_pulse, harmonics, kernel)
    return np.where(voiced, out, 0.0).astype(np.float32)


@dataclass
class Analysis:
    """What every edit starts from (at the prior's rate, peak-normalised input).

    Attributes:
        waveform: ``(time,)`` normalised input; ``peak``: the factor it was divided by.
        spec: complex STFT ``(freq, frames)``; power: ``|spec|^2``.
        z: posterior-mean latents ``(latent, frames)``.
        f0: input f0 per frame (Hz, NaN unvoiced); voiced: boolean ``(frames,)``.
    """

    waveform: np.ndarray
    peak: float
    spec: torch.Tensor
    power: torch.Tensor
    z: torch.Tensor
    f0: np.ndarray
    voiced: torch.Tensor


class Editor:
    """Source–filter edits of speech in the latent space of a frame-wise prior.

    Args:
        prior: a frame-wise prior (the one the subspaces were learned with).
        subspaces: its :class:`SourceFilterSubspaces`.
        vocoder: ``"griffin-lim"`` (default; keeps unvoiced frames' STFT) or any registered
            vocoder name or :class:`~speechvae.vocoders.Vocoder` (vocodes everything).
        vocoder_options: keyword options of a named vocoder (e.g. ``checkpoint``).
        config: :class:`EditConfig`.

    Raises:
        SubspaceError: subspaces learned for a latent of another size.
        ValueError: a prior that is not frame-wise.

    References:
        Sadok, Leglaive, Girin, Alameda-Pineda, Séguier, Speech Communication 148, 2023.
    """

    def __init__(self, prior: Prior, subspaces: SourceFilterSubspaces,
                 vocoder="griffin-lim", vocoder_options: dict | None = None,
                 config: EditConfig = EditConfig()):
        if not prior.frame_factorised:
            raise ValueError(f"latent editing needs a frame-wise prior; {prior.name!r} is not")
        subspaces.check_prior(prior)
        self.prior = prior.eval()
        self.subspaces = subspaces
        self.config = config
        self.stft_config = prior.stft_config
        self.sample_rate = self.stft_config.sample_rate
        self._vocoder = None
        #: the last relative formant edit: formant, target, input and achieved value (Hz)
        self.last_formant: dict | None = None
        if vocoder != "griffin-lim":
            from ..vocoders import Vocoder, get_vocoder

            self._vocoder = (vocoder if isinstance(vocoder, Vocoder) else
                             get_vocoder(vocoder, stft_config=self.stft_config,
                                         **(vocoder_options or {})))

    @property
    def device(self) -> torch.device:
        return next(self.prior.parameters()).device

    # -- analysis ----------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, waveform: np.ndarray, sample_rate: int) -> Analysis:
        """Normalise, STFT, encode and track f0 (see the module docstring).

        Raises:
            AudioError: empty, silent, non-finite or too long input.
        """
        x = resample(check_waveform(waveform, "input"), sample_rate, self.sample_rate)
        if x.size > self.config.max_duration_s * self.sample_rate:
            raise AudioError(f"input is {x.size / self.sample_rate:.0f} s long; editing "
                             f"accepts at most {self.config.max_duration_s:.0f} s "
                             "(split the file)")
        if x.size < self.stft_config.n_fft:
            raise AudioError(f"input is shorter than one STFT frame "
                             f"({self.stft_config.n_fft} samples)")
        peak = float(np.max(np.abs(x)))
        x = (x / peak).astype(np.float32)
        spec = stft(torch.from_numpy(x).to(self.device), self.stft_config)
        power = spec.abs().square()
        z = self.prior.encode(power[None]).mean[0]
        c = self.config
        f0 = frame_f0(x, self.stft_config, c.pitch_floor, c.pitch_ceiling)[: spec.shape[-1]]
        voiced = torch.from_numpy(np.isfinite(f0)).to(self.device)
        if not bool(voiced.any()):
            warnings.warn("no voiced frame found: the output equals the input", AudioWarning,
                          stacklevel=3)
        return Analysis(x, peak, spec, power, z, f0, voiced)

    # -- edits -------------------------------------------------------------------------
    def shift_f0(self, waveform: np.ndarray, sample_rate: int, target_hz: float | None = None,
                 semitones: float | None = None) -> np.ndarray:
        """Set f0 to a constant ``target_hz`` or move the input's contour by ``semitones``
        (intonation kept), on voiced frames.

        Returns:
            float32 ``(time,)`` at :attr:`sample_rate`, the input's peak level.

        Raises:
            ValueError: neither or both of ``target_hz`` / ``semitones``, or a target
                outside the learned f0 range.
            AudioError: bad input (see :meth:`analyse`).
        """
        if (target_hz is None) == (semitones is None):
            raise ValueError("give exactly one of target_hz and semitones")
        sub = self.subspaces["f0"]
        if target_hz is not None:
            sub.regression(target_hz)  # range check before any work
        a = self.analyse(waveform, sample_rate)
        if target_hz is not None:
            target = np.where(np.isfinite(a.f0), float(target_hz), np.nan)
        else:
            target = self._clip_to_range(a.f0 * 2.0 ** (semitones / 12.0), "f0")
        y = np.nan_to_num(target, nan=sub.label_range[0])
        z_new = sub.move(a.z, y, frames=a.voiced)
        c = self.config
        if c.method == "relative":
            track = self.edit_track(a)
            if target_hz is not None:
                rebuilt = np.where(np.isfinite(track), float(target_hz), np.nan)
            else:
                rebuilt = np.where(np.isfinite(a.f0), target,
                                   self._clip_to_range(track * 2.0 ** (semitones / 12.0), "f0",
                                                       warn=False))
            return self._relative_f0_edit(a, z_new, rebuilt, track)
        excitation = self._excitation(a, target)
        f0 = torch.from_numpy(y).to(z_new)
        z_new = harmonic_refinement(self.prior, z_new, f0, sub.basis,
                                    a.voiced & (f0 >= c.comb_min_f0), c.comb_steps,
                                    c.comb_weight, c.comb_lr, c.comb_max_hz)
        return self._render(a, z_new, excitation, self.config.excitation_iter)

    def edit_formant(self, waveform: np.ndarray, sample_rate: int, formant: int,
                     target_hz: float) -> np.ndarray:
        """Set formant ``formant`` (1, 2 or 3) to ``target_hz`` on voiced frames.

        Raises:
            ValueError: formant not in 1..3 or a target outside the learned range.
            AudioError: bad input.
        """
        if formant not in (1, 2, 3):
            raise ValueError(f"formant must be 1, 2 or 3, got {formant}")
        sub = self.subspaces[FACTORS[formant]]
        sub.regression(target_hz)
        a = self.analyse(waveform, sample_rate)
        if self.config.method == "relative":
            return self._relative_formant_edit(a, formant, float(target_hz))
        z_new = sub.move(a.z, float(target_hz), frames=a.voiced)
        return self._render(a, z_new, self._excitation(a, a.f0), self.config.excitation_iter)

    def whisper(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Whispered speech: the f0 subspace projected out on voiced frames
        (``z - U_0 U_0^T z``, Sadok et al. 2023), rendered from a random phase."""
        a = self.analyse(waveform, sample_rate)
        z_new = self.subspaces["f0"].remove(a.z, frames=a.voiced)
        g = torch.Generator().manual_seed(self.config.seed)
        angle = 2 * math.pi * torch.rand(a.spec.shape, generator=g)
        noise = torch.polar(torch.ones_like(angle), angle).to(self.device)
        if self.config.method == "relative":
            return self._render_power(a, self._relative_whisper_power(a, z_new), noise)
        return self._render(a, z_new, noise)

    # -- synthesis ---------------------------------------------------------------------
    def edit_track(self, a: Analysis) -> np.ndarray:
        """The input's f0 (Hz per frame of the prior's STFT, NaN unvoiced) on the frames a
        relative f0 edit rebuilds: Praat's voiced frames, plus Harvest's with
        ``voicing="praat+harvest"``, plus the gaps up to ``voicing_gap_s``
        (:func:`~speechvae.editing.common.edit_voicing`).

        Without ``pyworld`` installed, ``"praat+harvest"`` falls back to Praat's voicing
        with an :class:`~speechvae.audio.AudioWarning` (once per editor).

        Returns:
            ``(frames,)`` float64, Hz or NaN; voiced wherever ``a.f0`` is.
        """
        c = self.config
        other = None
        if c.voicing == "praat+harvest" and np.isfinite(a.f0).any():
            try:
                other = harvest_f0(a.waveform, self.stft_config, c.pitch_floor,
                                   c.pitch_ceiling)[: a.f0.size]
                other = np.pad(other, (0, a.f0.size - other.size), constant_values=np.nan)
            except ImportError as exc:
                if not getattr(self, "_warned_harvest", False):
                    warnings.warn(f"{exc}; f0 edits rebuild Praat's voiced frames only",
                                  AudioWarning, stacklevel=3)
                    self._warned_harvest = True
        return edit_voicing(a.f0, self.stft_config.frame_s, other, c.voicing_gap_s)

    def envelope_kind(self, a: Analysis) -> str:
        """The envelope kind of a relative f0 edit (see :attr:`EditConfig.envelope`):
        ``"auto"`` is ``"cheaptrick"`` for voices whose median f0 is at or above
        ``EditConfig.high_voice_hz`` and ``"dap"`` below (and without ``pyworld``, with a
        warning)."""
        kind = self.config.envelope
        if kind != "auto":
            return kind
        finite = a.f0[np.isfinite(a.f0)]
        if not (finite.size and float(np.median(finite)) >= self.config.high_voice_hz):
            return "dap"
        try:
            import_pyworld("the CheapTrick envelope")
        except ImportError:
            if not getattr(self, "_warned_cheaptrick", False):
                warnings.warn("pyworld is missing: high voices take the DAP envelope instead of "
                              "CheapTrick (pip install speechvae[editing-bench])", AudioWarning,
                              stacklevel=3)
                self._warned_cheaptrick = True
            return "dap"
        return "cheaptrick"

    def lpc_order(self, a: Analysis) -> int:
        """Order of the all-pole envelope of a relative f0 edit (see
        :attr:`EditConfig.lpc_order`)."""
        if self.config.lpc_order is not None:
            return int(self.config.lpc_order)
        base = int(2 + self.sample_rate // 1000)
        finite = a.f0[np.isfinite(a.f0)]
        return base + 4 if finite.size and float(np.median(finite)) < 160.0 else base

    def _clip_to_range(self, values: np.ndarray, factor: str, warn: bool = True
                       ) -> np.ndarray:
        lo, hi = self.subspaces[factor].label_range
        finite = values[np.isfinite(values)]
        outside = int(np.sum((finite < lo) | (finite > hi)))
        if outside and warn:
            warnings.warn(f"{outside} of {finite.size} voiced frames had a target {factor} "
                          f"outside the learned range {lo:.0f}–{hi:.0f} Hz; clipped",
                          AudioWarning, stacklevel=3)
        return np.where(np.isfinite(values), np.clip(values, lo, hi), np.nan)

    def _excitation(self, a: Analysis, f0: np.ndarray) -> torch.Tensor:
        """STFT of the band-limited pulse train following ``f0`` (Hz per frame, NaN
        unvoiced): the initial phase of voiced frames."""
        pulses = pulse_train(f0, a.waveform.size, self.stft_config)
        return stft(torch.from_numpy(pulses).to(self.device), self.stft_config)

    @torch.no_grad()
    def edited_power(self, analysis: Analysis, z_new: torch.Tensor) -> torch.Tensor:
        """Power spectrogram after the edit: decoded ``v(z_new)`` on voiced frames, scaled
        to each frame's input energy; the input's power elsewhere. ``(freq, frames)``."""
        v = self.prior.decode(torch.stack([analysis.z, z_new]))
        gain = analysis.power.sum(0) / v[0].sum(0).clamp_min(1e-20)
        return torch.where(analysis.voiced, v[1] * gain, analysis.power)

    # -- relative edits (EditConfig.method == "relative") -------------------------------
    def _f0_tensor(self, f0: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(f0, dtype=np.float32)).to(self.device)

    @torch.no_grad()
    def latent_envelope_ratio(self, a: Analysis, z_new: torch.Tensor,
                              f0_new: np.ndarray | None = None) -> torch.Tensor:
        """``E[v(z_new)] / E[v(z)]`` limited to ``±ratio_limit_db``, 1 on unvoiced frames;
        ``f0_new`` (Hz per frame, default the input's) sets the edited decode's cepstral
        order. ``(freq, frames)``."""
        v = self.prior.decode(torch.stack([a.z, z_new]))
        f0 = self._f0_tensor(a.f0)
        ratio = envelope_ratio(v[1], v[0], f0 if f0_new is None else self._f0_tensor(f0_new),
                               f0, self.sample_rate, self.config.ratio_limit_db,
                               self.config.envelope_iter)
        return torch.where(a.voiced, ratio, torch.ones_like(ratio))

    @torch.no_grad()
    def _relative_f0_edit(self, a: Analysis, z_new: torch.Tensor, target: np.ndarray,
                          track: np.ndarray | None = None) -> np.ndarray:
        """Harmonic resynthesis of the voiced frames at the target f0 with the input's
        short-time envelope (times the latent edit's envelope change with
        ``f0_envelope="edit"``), cross-faded (one STFT hop) with the input on unvoiced
        frames (:mod:`speechvae.editing.harmonic`)."""
        from .harmonic import envelope_config, harmonic_synthesis, sample_f0, short_time_envelope

        sr, n = self.sample_rate, a.waveform.size
        frame_times = np.arange(a.f0.size) * self.stft_config.frame_s
        track = a.f0 if track is None else track
        envelope = short_time_envelope(a.waveform, track, frame_times, sr,
                                       self.config.envelope_iter, self.envelope_kind(a),
                                       self.lpc_order(a), self.config.cepstrum_order,
                                       self.config.cepstrum_smoothness,
                                       anchor_weight=self.config.anchor_weight,
                                       target_f0_frames=target,
                                       anchor_full_st=self.config.anchor_full_st,
                                       anchor_weight_same_f0=self.config.anchor_weight_same_f0)
        if self.config.f0_envelope == "edit":
            envelope = envelope * self._to_grid(self.latent_envelope_ratio(a, z_new, target)
                                                .cpu(), envelope.shape, envelope_config(sr))
        times = np.arange(n) / sr
        harmonics = harmonic_synthesis(envelope, sample_f0(target, frame_times, times, 0.0), sr,
                                       phase=self.config.harmonic_phase)
        hard = sample_f0(target, frame_times, times, self.config.voicing_threshold) > 0
        ramp = np.hanning(self.stft_config.hop_length + 2)[1:-1]
        weight = np.clip(np.convolve(hard * 1.0, ramp / ramp.sum(), mode="same"), 0.0, 1.0)
        y = weight * harmonics + (1.0 - weight) * a.waveform
        return (y * a.peak).astype(np.float32)

    def _to_grid(self, values: torch.Tensor, shape: tuple, config) -> torch.Tensor:
        """A ``(freq, frames)`` array on the prior's STFT grid, linearly interpolated to the
        bins and frames (``shape``) of the STFT ``config``."""
        src = self.stft_config
        f_src = torch.arange(values.shape[0], dtype=torch.float64) * src.sample_rate / src.n_fft
        t_src = torch.arange(values.shape[1], dtype=torch.float64) * src.frame_s
        f_dst = torch.arange(shape[0], dtype=torch.float64) * config.sample_rate / config.n_fft
        t_dst = torch.arange(shape[1], dtype=torch.float64) * config.hop_length \
            / config.sample_rate
        v = values.double().cpu().numpy()
        by_freq = np.stack([np.interp(f_dst, f_src, v[:, j]) for j in range(v.shape[1])], 1)
        out = np.stack([np.interp(t_dst, t_src, by_freq[i]) for i in range(shape[0])])
        return torch.from_numpy(out).to(torch.float32)

    @torch.no_grad()
    def _relative_whisper_power(self, a: Analysis, z_new: torch.Tensor) -> torch.Tensor:
        """Voiced frames: the input's all-pole envelope (smooth, no trace of the harmonics)
        times the latent edit's envelope change, as a
        flat (noise) spectrum scaled to the input frame's energy times the decoded energy
        change; the input's power elsewhere."""
        from .harmonic import lpc_shape

        v = self.prior.decode(torch.stack([a.z, z_new]))
        lpc = torch.from_numpy(lpc_shape(a.waveform, self.stft_config)[:, : a.power.shape[1]])
        shape = lpc.to(a.power) * self.latent_envelope_ratio(a, z_new)
        energy = a.power.sum(0) * v[1].sum(0) / v[0].sum(0).clamp_min(1e-20)
        power = shape * energy / shape.sum(0).clamp_min(1e-20)
        return torch.where(a.voiced, power, a.power)

    def _measure_formant(self, y: np.ndarray, a: Analysis, formant: int,
                         ceiling_hz: float | None = None, both_voiced: bool = False) -> float:
        """Median Praat Burg ``F<formant>`` (Hz) of ``y`` over frames voiced in the input
        (``both_voiced``: and in ``y``, by Praat); formant ceiling ``ceiling_hz``, by
        default 5000 Hz for voices whose median f0 is below 160 Hz, else 5500 Hz (Praat's
        advice for male and female voices)."""
        from ..metrics import formant_tracks

        if ceiling_hz is None:
            low_voice = np.nanmedian(a.f0) < 160.0 if np.isfinite(a.f0).any() else False
            ceiling_hz = 5000.0 if low_voice else 5500.0
        times, fm = formant_tracks(y, self.sample_rate, max_formant=ceiling_hz)
        frame_times = np.arange(a.f0.size) * self.stft_config.frame_s
        mask = np.isfinite(a.f0)
        if both_voiced:
            c = self.config
            out = frame_f0(np.asarray(y, dtype=np.float32), self.stft_config, c.pitch_floor,
                           c.pitch_ceiling)
            n = min(out.size, mask.size)
            mask = mask[:n] & np.isfinite(out[:n])
            frame_times = frame_times[:n]
        voiced = np.interp(times, frame_times, mask * 1.0) > 0.5
        values = fm[formant - 1][voiced]
        values = values[np.isfinite(values)]
        return float(np.median(values)) if values.size else float("nan")

    @torch.no_grad()
    def _relative_formant_edit(self, a: Analysis, formant: int, target_hz: float
                               ) -> np.ndarray:
        """Input power times the latent edit's envelope change, input phase; the achieved
        formant is measured and the latent target corrected (see :class:`EditConfig`). The
        candidate closest to the target is returned, the unedited input included."""
        c = self.config
        sub = self.subspaces[FACTORS[formant]]
        lo, hi = sub.label_range
        before = self._measure_formant(a.waveform, a, formant)
        # the unedited input is a candidate too: an edit that moves the formant away from the
        # target is not returned (the shipped prior's F1 direction can do that on real speech)
        input_error = (abs(before - target_hz) / target_hz if np.isfinite(before) else np.inf)
        label, best = target_hz, (input_error, (a.waveform * a.peak).astype(np.float32), before)
        for step in range(c.formant_correction_steps + 1):
            z_new = sub.move(a.z, label, frames=a.voiced)
            power = a.power * self.latent_envelope_ratio(a, z_new)
            y = self._render_power(a, power, a.spec, 0)
            achieved = self._measure_formant(y / a.peak, a, formant)
            error = abs(achieved - target_hz) / target_hz if np.isfinite(achieved) else np.inf
            if error < best[0]:
                best = (error, y, achieved)
            # keep correcting inside the tolerance too (to 1/5 of it): another measurement
            # of the same output (other frames, another ceiling) then still agrees
            if error <= 0.2 * c.formant_tolerance or step == c.formant_correction_steps:
                break
            new_label = float(np.clip(label + (target_hz - achieved), lo, hi))
            if abs(new_label - label) < 1.0:  # at the edge of the learned range
                break
            label = new_label
        error, y, achieved = best
        unchanged = error == input_error and achieved == before
        self.last_formant = {"formant": formant, "target_hz": target_hz,
                             "input_hz": before, "achieved_hz": achieved}
        if error <= c.formant_tolerance:
            # "reached" must hold for either of Praat's ceilings (the voice's sex is a guess
            # from f0) and on the frames voiced in the output too: otherwise warn with the
            # value of the measurement that disagrees
            checks = [(5000.0, False), (5500.0, False), (None, True)]
            for ceiling, both in checks:
                other = self._measure_formant(y / a.peak, a, formant, ceiling, both)
                other_error = (abs(other - target_hz) / target_hz if np.isfinite(other)
                               else np.inf)
                if not other_error <= c.formant_tolerance:
                    error, achieved = other_error, other
                    break
        if not error <= c.formant_tolerance:
            warnings.warn(f"F{formant} reached {achieved:.0f} Hz (median over voiced frames; "
                          f"input {before:.0f} Hz) for a {target_hz:.0f} Hz target "
                          f"({100 * (achieved - target_hz) / target_hz:+.0f} %, Praat Burg, 5000 or "
                          f"5500 Hz ceiling, frames voiced in the input or in both): the prior's "
                          f"F{formant} subspace does not move it further"
                          + ("; no edit came closer than the input, which is returned"
                             if unchanged else ""), AudioWarning, stacklevel=3)
        return y

    @torch.no_grad()
    def _render(self, a: Analysis, z_new: torch.Tensor, initial: torch.Tensor,
                n_iter: int | None = None) -> np.ndarray:
        return self._render_power(a, self.edited_power(a, z_new), initial, n_iter)

    @torch.no_grad()
    def _render_power(self, a: Analysis, power: torch.Tensor, initial: torch.Tensor,
                      n_iter: int | None = None) -> np.ndarray:
        from ..vocoders import griffin_lim_known_frames

        if self._vocoder is None:
            initial = torch.where(a.voiced, initial, a.spec)
            n_iter = self.config.griffin_lim_iter if n_iter is None else n_iter
            y = griffin_lim_known_frames(power.sqrt(), initial, ~a.voiced, n_iter,
                                         self.config.momentum, a.waveform.size,
                                         self.stft_config)
        else:
            y = self._vocoder(power.cpu(), length=a.waveform.size)
        return (y.cpu().numpy() * a.peak).astype(np.float32)

    @torch.no_grad()
    def reconstruct(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """The same pipeline with no edit: what the method and vocoder lose, for
        comparisons. With ``method="relative"`` the latent change is zero, the envelope ratio
        is 1 and the input comes back (up to the STFT round trip and float32 rounding);
        with ``"latent"`` voiced frames are decoded from their own latent."""
        a = self.analyse(waveform, sample_rate)
        if self.config.method == "relative":
            return self._render_power(a, a.power * self.latent_envelope_ratio(a, a.z),
                                      a.spec, 0)
        return self._render(a, a.z, a.spec)


def shipped_subspaces(prior_name: str) -> Path:
    """Path of the subspaces shipped for the shipped prior ``prior_name``.

    Raises:
        FileNotFoundError: none shipped for that prior.
    """
    path = _PRETRAINED / f"{prior_name}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in _PRETRAINED.glob("*.pt"))
        raise FileNotFoundError(f"no shipped subspaces for prior {prior_name!r} (shipped: "
                                f"{', '.join(have) or 'none'}); learn them with "
                                "'speechvae learn-subspaces'")
    return path


def default_editing_prior() -> str:
    """The default prior of the edits: ``"vae"`` (its subspaces are shipped)."""
    return "vae"


def load_editor(prior: str | Prior | None = None, subspaces=None, vocoder="griffin-lim",
                vocoder_options: dict | None = None, config: EditConfig = EditConfig(),
                device="cpu") -> Editor:
    """An :class:`Editor` for a shipped prior name, a checkpoint path or a prior object.

    Args:
        prior: shipped prior name or checkpoint (default: the shipped editing prior).
        subspaces: a :class:`SourceFilterSubspaces` or its file (default: the ones shipped
            for ``prior``).
        vocoder, vocoder_options, config: see :class:`Editor`.
        device: torch device.

    Raises:
        FileNotFoundError: no subspaces given and none shipped for the prior.
        CheckpointError / SubspaceError: unreadable or mismatched files.
    """
    from ..priors import load_prior

    if prior is None:
        prior = default_editing_prior()
    if subspaces is None:
        from ..pretrained import shipped_priors

        if not (isinstance(prior, str) and prior in shipped_priors()):
            raise ValueError("subspaces are shipped for shipped priors only; give the "
                             "subspaces learned for this prior ('speechvae learn-subspaces')")
        subspaces = shipped_subspaces(prior)
    if not isinstance(subspaces, SourceFilterSubspaces):
        subspaces = SourceFilterSubspaces.load(subspaces)
    if isinstance(prior, (str, Path)):
        prior = load_prior(str(prior), device=device)
    return Editor(prior.to(device), subspaces, vocoder, vocoder_options, config)
