"""Source–filter speech editing in the latent space of a frame-wise prior.

The f0 and formant (F1–F3) subspaces of a VAE's latent space are learned from a few seconds
of synthetic labelled vowels (:mod:`.vowels`, :mod:`.subspaces`) and used to edit real speech
frame by frame (:mod:`.transforms`): ``shift_f0``, ``edit_formant``, ``whisper``. By default
the edit is applied relative to the input (:mod:`.envelope`: the change of the decoded
envelope; f0 edits resynthesise harmonics of the target f0 on the input's envelope,
:mod:`.harmonic`), so that what the VAE cannot represent is kept.
Signal-processing references for benchmarks (WORLD, Praat PSOLA) are in :mod:`.baselines`.

Needs ``pip install speechvae[editing]`` (praat-parselmouth, librosa)::

    from speechvae.editing import load_editor
    editor = load_editor()                      # shipped prior + subspaces, Griffin–Lim
    y = editor.shift_f0(x, 16000, target_hz=200.0)

Reference: Sadok, Leglaive, Girin, Alameda-Pineda, Séguier, Speech Communication 148, 2023.
"""
from .envelope import envelope_ratio, true_envelope
from .subspaces import (
    FACTORS,
    FactorSubspace,
    SourceFilterSubspaces,
    SubspaceError,
    fit_factor_subspace,
    learn_subspaces,
    piecewise_linear_fit,
)
from .transforms import (
    EDIT_METHODS,
    Analysis,
    EditConfig,
    Editor,
    default_editing_prior,
    frame_f0,
    harmonic_comb,
    harmonic_refinement,
    load_editor,
    pulse_train,
    shipped_subspaces,
)
from .vowels import FactorDataset, make_factor_datasets, synthesize_vowel

__all__ = [
    "EDIT_METHODS",
    "FACTORS",
    "Analysis",
    "EditConfig",
    "Editor",
    "FactorDataset",
    "FactorSubspace",
    "SourceFilterSubspaces",
    "SubspaceError",
    "default_editing_prior",
    "envelope_ratio",
    "fit_factor_subspace",
    "frame_f0",
    "harmonic_comb",
    "harmonic_refinement",
    "learn_subspaces",
    "load_editor",
    "make_factor_datasets",
    "piecewise_linear_fit",
    "pulse_train",
    "shipped_subspaces",
    "synthesize_vowel",
    "true_envelope",
]
