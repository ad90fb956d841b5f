"""Enhancement: NMF noise model, inference algorithms (VEM, MCEM, MALA-EM, Bando's Gibbs
sampler), Wiener filtering, file engine.

The algorithms are registered by name (:func:`available_algorithms`); the engine and the
command line pick one with ``algorithm=NAME`` / ``--algorithm NAME``.

(The subpackage is called ``enhancement`` so that ``speechvae.enhance`` can be the function.)
"""
from .algorithms import (
    Algorithm,
    algorithm_for_config,
    available_algorithms,
    get_algorithm,
    register_algorithm,
    register_batch_runner,
)
from .engine import (
    EnhanceResult,
    enhance,
    enhance_file,
    enhance_files,
    enhance_segment,
    enhance_segments,
)
from .mcem import LatentPosterior, MCEMConfig, SamplingResult, mcem
from .mcmc import BandoConfig, MALAConfig, bando, mala
from .nmf import NMFNoise, init_nmf, m_step, mixture_cost
from .samplers import ChainState, MarkovChain, mala_step, rw_metropolis_step, sample_gig
from .vem import VEMConfig, VEMResult, batchable_prior, vem, vem_batch

__all__ = [
    "Algorithm",
    "algorithm_for_config",
    "BandoConfig",
    "ChainState",
    "EnhanceResult",
    "LatentPosterior",
    "MALAConfig",
    "MCEMConfig",
    "MarkovChain",
    "NMFNoise",
    "SamplingResult",
    "VEMConfig",
    "VEMResult",
    "available_algorithms",
    "bando",
    "batchable_prior",
    "enhance",
    "enhance_file",
    "enhance_files",
    "enhance_segment",
    "enhance_segments",
    "get_algorithm",
    "init_nmf",
    "m_step",
    "mala",
    "mala_step",
    "mcem",
    "mixture_cost",
    "register_algorithm",
    "register_batch_runner",
    "rw_metropolis_step",
    "sample_gig",
    "vem",
    "vem_batch",
]
