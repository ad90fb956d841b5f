"""Registry of the enhancement (inference) algorithms.

Every algorithm is a function ``run(prior, mixture_stft, config, generator) -> result`` with
one frozen config dataclass, registered under a short name::

    @register_algorithm("mcem", MCEMConfig, "Monte Carlo EM, random-walk Metropolis-Hastings")
    def mcem(prior, mixture_stft, config=MCEMConfig(), generator=None): ...

The result has at least ``speech`` and ``noise`` (complex STFTs of the shape of the mixture)
and ``iterations``. The engine (:func:`speechvae.enhance`) and the command line
(``speechvae enhance --algorithm NAME``) take their choices from this registry, so adding an
algorithm needs no if/elif anywhere.

An algorithm may also have a *batched* runner, registered with
:func:`register_batch_runner`: ``run_batch(prior, mixture_stfts, lengths, config,
generators) -> list[result]`` enhances several right-padded mixtures at once and gives, for
each, the result (up to rounding) of ``run`` on that mixture alone with the same generator.
``speechvae enhance --batch-size B`` needs one (only ``"vem"`` has one so far).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["Algorithm", "algorithm_for_config", "available_algorithms", "get_algorithm",
           "register_algorithm",
           "register_batch_runner"]


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm.

    Attributes:
        name: registry key (``"vem"``, ``"mcem"``, ...).
        run: ``(prior, mixture_stft (1, freq, time), config, generator) -> result``.
        config_class: its frozen config dataclass; ``config_class()`` gives the defaults.
        summary: one line for help texts.
        run_batch: ``(prior, mixture_stfts (batch, freq, time), lengths (batch,), config,
            generators) -> list[result]``, or None when the algorithm has no batched path
            (see :func:`register_batch_runner`).
        batch_supports: ``prior -> bool``, whether ``run_batch`` really batches that prior
            (it falls back to ``run`` file by file for the others), or None (all priors).
    """

    name: str
    run: Callable[..., Any]
    config_class: type
    summary: str = ""
    run_batch: Callable[..., Any] | None = None
    batch_supports: Callable[[Any], bool] | None = None

    def default_config(self):
        """The default configuration, ``config_class()``."""
        return self.config_class()

    def check_config(self, config):
        """``config`` itself, or the default config if None.

        Raises:
            TypeError: ``config`` is not an instance of :attr:`config_class`.
        """
        if config is None:
            return self.default_config()
        if not isinstance(config, self.config_class):
            raise TypeError(f"algorithm {self.name!r} takes a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        return config


_REGISTRY: dict[str, Algorithm] = {}


def register_algorithm(name: str, config_class: type, summary: str = ""
                       ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Function decorator adding an inference algorithm to the registry under ``name``.

    The decorated function is returned unchanged.

    Args:
        name: registry key (lower case, used on the command line).
        config_class: frozen dataclass of the algorithm's settings; it must have the fields
            ``iterations`` and ``nmf_rank`` (the command line sets them for every algorithm).
        summary: one-line description.

    Raises:
        ValueError: ``name`` is taken by another function.
        TypeError: ``config_class`` is not a dataclass with ``iterations`` and ``nmf_rank``.
    """
    names = {f.name for f in fields(config_class)} if hasattr(
        config_class, "__dataclass_fields__") else set()
    if not {"iterations", "nmf_rank"} <= names:
        raise TypeError(f"{getattr(config_class, '__name__', config_class)!r} must be a "
                        "dataclass with 'iterations' and 'nmf_rank' fields")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        old = _REGISTRY.get(name)
        if old is not None and old.run is not fn:
            raise ValueError(f"algorithm {name!r} is already registered")
        batch = (old.run_batch, old.batch_supports) if old is not None else (None, None)
        _REGISTRY[name] = Algorithm(name, fn, config_class, summary, *batch)
        return fn

    return deco


def register_batch_runner(name: str, supports: Callable[[Any], bool] | None = None
                          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Function decorator attaching a batched runner to the registered algorithm ``name``.

    The runner enhances a batch of right-padded mixtures, ``(prior, mixture_stfts (batch,
    freq, time), lengths (batch,) valid frames, config, generators (one per mixture)) ->
    list[result]``, each result equal (up to rounding) to ``run`` on that mixture alone
    with that generator. ``supports(prior)`` tells whether a prior is really batched (the
    runner runs the others one by one); None means every prior. The decorated function is
    returned unchanged.

    Raises:
        KeyError: ``name`` is not registered.
    """
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = replace(get_algorithm(name), run_batch=fn, batch_supports=supports)
        return fn

    return deco


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; registered: "
                       f"{', '.join(available_algorithms())}") from None


def available_algorithms() -> list[str]:
    """Names of the registered algorithms, sorted."""
    return sorted(_REGISTRY)


def algorithm_for_config(config) -> Algorithm:
    """The registered algorithm whose config class ``config`` is an instance of: the config
    object alone says which algorithm runs.

    Raises:
        TypeError: no registered algorithm takes a config of this type.
    """
    for alg in _REGISTRY.values():
        if type(config) is alg.config_class:
            return alg
    raise TypeError(f"no registered algorithm takes a {type(config).__name__}; registered: "
                    f"{', '.join(f'{a.name} ({a.config_class.__name__})' for a in _REGISTRY.values())}")
