"""Process-wide numeric settings of the CPU backend.

Kept apart from the models: :mod:`speechvae.priors` calls :func:`flush_denormals` once when
it is imported (the priors are what produce subnormal numbers), and nothing else in the
package changes process-wide state.
"""
from __future__ import annotations

import os

import torch

__all__ = ["flush_denormals"]


def flush_denormals() -> bool:
    """Flush subnormal floats to zero on the CPU (``torch.set_flush_denormal``), for the
    process, unless the environment sets ``SPEECHVAE_DENORMALS=keep``.

    Trained LSTM priors produce subnormal gradients that x86 CPUs handle in microcode: one
    RVAE training step took 1.24 s with them and 0.18 s without (1 thread, batch 32 x 50
    frames; the numbers differ from the kept-subnormal ones only below 1e-38). Returns
    whether flushing is on.
    """
    if os.environ.get("SPEECHVAE_DENORMALS", "").lower() == "keep":
        return False
    return bool(torch.set_flush_denormal(True))
