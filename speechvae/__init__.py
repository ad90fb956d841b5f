"""speechvae: unsupervised speech enhancement and speech editing with VAE priors.

One call each::

    import speechvae
    prior = speechvae.load_prior("vae")
    result = speechvae.enhance(waveform, sample_rate, prior=prior)  # algorithm="vem"
    result = speechvae.enhance(waveform, sample_rate, prior=prior, algorithm="mcem")
    speechvae.metrics.si_sdr(reference, result.waveform)

Submodules are imported on first use, so ``import speechvae`` stays light.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "enhance": ("speechvae.enhancement", "enhance"),
    "enhance_file": ("speechvae.enhancement", "enhance_file"),
    "EnhanceResult": ("speechvae.enhancement", "EnhanceResult"),
    "VEMConfig": ("speechvae.enhancement", "VEMConfig"),
    "MCEMConfig": ("speechvae.enhancement", "MCEMConfig"),
    "MALAConfig": ("speechvae.enhancement", "MALAConfig"),
    "BandoConfig": ("speechvae.enhancement", "BandoConfig"),
    "available_algorithms": ("speechvae.enhancement", "available_algorithms"),
    "load_prior": ("speechvae.priors", "load_prior"),
    "available_priors": ("speechvae.priors", "available_priors"),
    "metrics": ("speechvae.metrics", None),
}

__all__ = [  # the names of _LAZY, written out for static tools
    "BandoConfig",
    "EnhanceResult",
    "MALAConfig",
    "MCEMConfig",
    "VEMConfig",
    "__version__",
    "available_algorithms",
    "available_priors",
    "enhance",
    "enhance_file",
    "load_prior",
    "metrics",
]
assert set(__all__) == {"__version__", *_LAZY}


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'speechvae' has no attribute {name!r}")
