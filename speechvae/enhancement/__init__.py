"""Enhancement: the mixture model, one EM driver, the inference algorithms as plug-ins, and
the file engine.

Layers, bottom up:

* :mod:`.model` -- the mixture model every algorithm fits (NMF noise, speech gain, M-step,
  Wiener gain, the E-step target ``p(z | x)``) and :class:`EMConfig`, the shared settings;
* :mod:`.samplers` -- MCMC kernels, the chain driver and the GIG sampler;
* :mod:`.em` -- the EM driver (:func:`run_em`): initialisation, M-step, one stopping rule,
  padding and batching, for any :class:`InferenceStep`;
* :mod:`.algorithms` -- the registry of inference steps;
* one module per algorithm: :mod:`.vem`, :mod:`.mcem`, :mod:`.mala`, :mod:`.gibbs`
  (``"bando"``);
* :mod:`.engine` -- waveforms and files: segmentation, STFT, batching of files.

The algorithms are registered by name (:func:`available_algorithms`); the engine and the
command line pick one with ``algorithm=NAME`` / ``--algorithm NAME``, or from the config
object alone (:func:`algorithm_for_config`).

(The subpackage is called ``enhancement`` so that ``speechvae.enhance`` can be the function.)
"""
from .algorithms import (
    Algorithm,
    algorithm_for_config,
    available_algorithms,
    get_algorithm,
    register_algorithm,
)
from .em import EMResult, EStep, InferenceStep, converged, run_em
from .engine import (
    EnhanceResult,
    enhance,
    enhance_file,
    enhance_files,
    enhance_segment,
    enhance_segments,
)
from .gibbs import BandoConfig, bando
from .mala import MALAConfig, mala
from .mcem import MCEMConfig, SamplingResult, mcem
from .model import EMConfig, LatentPosterior, NMFNoise, init_nmf, m_step, mixture_cost
from .samplers import ChainState, MarkovChain, mala_step, rw_metropolis_step, sample_gig
from .vem import VEMConfig, VEMResult, batchable_prior, vem, vem_batch

__all__ = [
    "Algorithm",
    "BandoConfig",
    "ChainState",
    "EMConfig",
    "EMResult",
    "EStep",
    "EnhanceResult",
    "InferenceStep",
    "LatentPosterior",
    "MALAConfig",
    "MCEMConfig",
    "MarkovChain",
    "NMFNoise",
    "SamplingResult",
    "VEMConfig",
    "VEMResult",
    "algorithm_for_config",
    "available_algorithms",
    "bando",
    "batchable_prior",
    "converged",
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
    "run_em",
    "rw_metropolis_step",
    "sample_gig",
    "vem",
    "vem_batch",
]
