"""Clean-speech priors: registry, checkpoints and the registered models.

Registered: ``"vae"`` (frame-wise, :class:`VAE`), ``"rvae"`` (recurrent VAE, causal or
non-causal after ``RVAEConfig.causal``, :class:`RVAE`), ``"dkf"`` (deep Kalman filter,
:class:`DKF`) and ``"tcvae"`` (temporal-convolutional VAE, :class:`TCVAE`: dynamical, with no
per-frame loop). The RVAE and the DKF share :class:`SequentialPrior` (sequential posterior
draws, fast recurrence in :mod:`speechvae.priors.recurrence`).
"""
from ..runtime import flush_denormals, keep_freed_memory
from .base import (
    CheckpointError,
    Posterior,
    Prior,
    available_priors,
    get_prior_class,
    itakura_saito,
    load_checkpoint,
    register_prior,
    safe_torch_load,
    save_prior,
)
from .dkf import DKF, DKFConfig
from .rvae import RVAE, RVAEConfig
from .sequential import SequentialPrior
from .tcvae import TCVAE, TCVAEConfig
from .vae import VAE, VAEConfig

#: whether subnormal floats are flushed to zero (see :func:`speechvae.runtime.flush_denormals`)
DENORMALS_FLUSHED = flush_denormals()
#: whether glibc keeps freed blocks in the heap (see :func:`speechvae.runtime.keep_freed_memory`)
FREED_MEMORY_KEPT = keep_freed_memory()

__all__ = [
    "DKF",
    "RVAE",
    "VAE",
    "CheckpointError",
    "DKFConfig",
    "Posterior",
    "Prior",
    "RVAEConfig",
    "SequentialPrior",
    "TCVAE",
    "TCVAEConfig",
    "VAEConfig",
    "available_priors",
    "get_prior_class",
    "itakura_saito",
    "load_checkpoint",
    "load_prior",
    "register_prior",
    "safe_torch_load",
    "save_prior",
]


def load_prior(name_or_path: str = "vae", device="cpu") -> Prior:
    """Load a shipped pretrained prior by name (``"vae"``; ``"rvae-causal"`` and
    ``"rvae-noncausal"`` once shipped, both of the registered class ``"rvae"``, told apart by
    the config stored in the checkpoint), any checkpoint by path, or a DVAE_SE model folder
    (``config.ini`` + state dict, the published priors of Bie et al., TASLP 2022; see
    :func:`speechvae.priors.peer.load_dvae_se`).

    Raises:
        CheckpointError: unknown name, missing file, a checkpoint refused by the
            restricted loader, or a folder that is not a mappable DVAE_SE model.
    """
    from pathlib import Path

    from ..pretrained import pretrained_path, shipped_priors

    p = Path(name_or_path)
    if name_or_path in shipped_priors():
        p = pretrained_path(name_or_path)
    elif not p.exists():
        shipped = ", ".join(shipped_priors()) or "none installed"
        raise CheckpointError(f"{name_or_path}: neither a shipped prior ({shipped}) nor a "
                              "checkpoint file")
    if p.is_dir():
        from .peer import load_dvae_se

        return load_dvae_se(p, device=device)
    prior = load_checkpoint(p, map_location="cpu")
    return prior.to(device)
