"""Training of clean-speech priors (library side; recipes own the corpora)."""
from .data import SegmentSampler, SpectrogramCache, build_cache, trim_silence
from .trainer import TrainConfig, evaluate_prior, train_prior

__all__ = [
           "SegmentSampler",
           "SpectrogramCache",
           "TrainConfig",
           "build_cache",
           "evaluate_prior",
           "train_prior",
           "trim_silence",
]
