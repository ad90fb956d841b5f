"""Evaluation: test-set mixing, baselines, side-by-side scoring, tables, figures, HTML.

* :mod:`.mixing`: the corpus' mixing rule and seeded noisy/clean sets (``speechvae mix``).
* :mod:`.baselines`: the noisy input, spectral gating (noisereduce) and semi-supervised NMF.
* :mod:`.evaluate`: run and score methods on a set, resumably (``speechvae evaluate``).
* :mod:`.report`: Markdown/CSV tables, PNG figures and the HTML page.

Optional dependencies (``pip install speechvae[eval]``): noisereduce for the spectral-gating
baseline, matplotlib for the figures; both are imported only when used.
"""
from .baselines import (
    NMFBaseline,
    NMFBaselineConfig,
    SpectralGating,
    SpectralGatingConfig,
    SpeechDictionary,
    available_baselines,
    get_baseline,
    learn_dictionary,
    load_dictionary,
    register_baseline,
    save_dictionary,
    semi_supervised_nmf,
)
from .evaluate import (
    EvaluationResult,
    Pair,
    PriorMethod,
    available_algorithms,
    build_methods,
    evaluate,
    read_results,
    read_set,
)
from .mixing import Mixture, mix, plan_mixtures, read_mixture_list, render_mixtures, snr_db_of

__all__ = [
    "EvaluationResult",
    "Mixture",
    "NMFBaseline",
    "NMFBaselineConfig",
    "Pair",
    "PriorMethod",
    "SpectralGating",
    "SpectralGatingConfig",
    "SpeechDictionary",
    "available_algorithms",
    "available_baselines",
    "build_methods",
    "evaluate",
    "get_baseline",
    "learn_dictionary",
    "load_dictionary",
    "mix",
    "plan_mixtures",
    "read_mixture_list",
    "read_results",
    "read_set",
    "register_baseline",
    "render_mixtures",
    "save_dictionary",
    "semi_supervised_nmf",
    "snr_db_of",
]
