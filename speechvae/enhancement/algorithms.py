"""Registry of the enhancement (inference) algorithms.

Every algorithm is a function ``run(prior, mixture_stft, config, generator) -> result`` with
one frozen config dataclass, registered under a short name::

    @register_algorithm("mcem", MCEMConfig, "Monte Carlo EM, random-walk Metropolis-Hastings")
    def mcem(prior, mixture_stft, config=MCEMConfig(), generator=None): ...

The result has at least ``speech`` and ``noise`` (complex STFTs of the shape of the mixture)
and ``iterations``. The engine (:func:`speechvae.enhance`) and the command line
(``speechvae enhance --algorithm NAME``) take their choices from this registry, so adding an
algorithm needs no if/elif anywhere.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Algorithm", "available_algorithms", "get_algorithm", "register_algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm.

    Attributes:
        name: registry key (``"vem"``, ``"mcem"``, ...).
        run: ``(prior, mixture_stft (1, freq, time), config, generator) -> result``.
        config_class: its frozen config dataclass; ``config_class()`` gives the defaults.
        summary: one line for help texts.
    """

    name: str
    run: Callable[..., Any]
    config_class: type
    summary: str = ""

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
        _REGISTRY[name] = Algorithm(name, fn, config_class, summary)
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
