"""Enhancement: NMF noise model, VEM inference, Wiener filtering, file engine.

(The subpackage is called ``enhancement`` so that ``speechvae.enhance`` can be the function.)
"""
from .engine import EnhanceResult, enhance, enhance_file, enhance_segment
from .nmf import NMFNoise, init_nmf, m_step, mixture_cost
from .vem import VEMConfig, VEMResult, vem

__all__ = [
           "EnhanceResult",
           "NMFNoise",
           "VEMConfig",
           "VEMResult",
           "enhance",
           "enhance_file",
           "enhance_segment",
           "init_nmf",
           "m_step",
           "mixture_cost",
           "vem",
]
