"""Registry of the inference algorithms, on the package's common :class:`ClassRegistry`.

An algorithm is an :class:`~speechvae.enhancement.em.InferenceStep` subclass (its E-step and
its final speech estimate; the EM driver of :mod:`speechvae.enhancement.em` owns the rest)
with one frozen config dataclass, registered under a short name::

    @register_algorithm("mcem")
    class MCEMStep(InferenceStep):
        config_class = MCEMConfig
        summary = "Monte Carlo EM, random-walk Metropolis-Hastings E-step"
        ...

The engine (:func:`speechvae.enhance`) and the command line (``speechvae enhance
--algorithm NAME``) take their choices from this registry, and a config object alone says
which algorithm runs (:func:`algorithm_for_config`), so adding an algorithm is one module
and its registration, with no if/elif anywhere.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..registry import ClassRegistry
from .em import EMResult, InferenceStep, run_em

__all__ = ["Algorithm", "algorithm_for_config", "available_algorithms", "get_algorithm",
           "register_algorithm"]

_STEPS = ClassRegistry("algorithm")


def register_algorithm(name: str) -> Callable[[type[InferenceStep]], type[InferenceStep]]:
    """Class decorator adding an :class:`InferenceStep` subclass to the registry as
    ``name`` (sets its ``name``).

    Raises:
        ValueError: ``name`` is taken by another class.
        TypeError: the class is not an :class:`InferenceStep` with a ``config_class``.
    """
    def deco(cls: type[InferenceStep]) -> type[InferenceStep]:
        if not (isinstance(cls, type) and issubclass(cls, InferenceStep)
                and isinstance(getattr(cls, "config_class", None), type)):
            raise TypeError(f"{cls!r} must be an InferenceStep subclass with a config_class")
        return _STEPS.register(name)(cls)

    return deco


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm, as the engine sees it.

    Attributes:
        step: its :class:`InferenceStep` class.

    The properties give its name, config class, summary and runners: :meth:`run` enhances
    one mixture; :attr:`run_batch` enhances a right-padded batch in one pass of the EM
    driver (None when the step is not batched: the engine then runs files one by one).
    """

    step: type[InferenceStep]

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def config_class(self) -> type:
        return self.step.config_class

    @property
    def summary(self) -> str:
        return self.step.summary

    #: kept for callers of the earlier interface: every prior batches (None = all)
    batch_supports = None

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

    def run(self, prior, mixture_stft: torch.Tensor, config=None,
            generator: torch.Generator | None = None) -> EMResult:
        """Enhance one mixture, ``(1, freq, time)`` complex STFT (see :func:`run_em`)."""
        if mixture_stft.dim() != 3 or mixture_stft.shape[0] != 1:
            raise ValueError(f"mixture_stft must have shape (1, freq, time), "
                             f"got {tuple(mixture_stft.shape)}")
        return run_em(self.step, prior, mixture_stft, [mixture_stft.shape[-1]],
                      self.check_config(config), [generator])[0]

    @property
    def run_batch(self) -> Callable[..., list[EMResult]] | None:
        """``(prior, mixture_stfts (batch, freq, time), lengths, config, generators) ->
        list[result]``, each equal (to float rounding) to :meth:`run` on that file alone
        with that generator; None when the step has no batched path."""
        if not self.step.batched:
            return None

        def run_batch(prior, mixture_stfts: torch.Tensor, lengths: Sequence[int], config=None,
                      generators=None) -> list[EMResult]:
            return run_em(self.step, prior, mixture_stfts, lengths, self.check_config(config),
                          generators)

        return run_batch


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    return Algorithm(_STEPS.get(name))


def available_algorithms() -> list[str]:
    """Names of the registered algorithms, sorted."""
    return _STEPS.names()


def algorithm_for_config(config) -> Algorithm:
    """The registered algorithm whose config class ``config`` is an instance of: the config
    object alone says which algorithm runs.

    Raises:
        TypeError: no registered algorithm takes a config of this type.
    """
    for name in _STEPS.names():
        step = _STEPS.get(name)
        if type(config) is step.config_class:
            return Algorithm(step)
    raise TypeError(f"no registered algorithm takes a {type(config).__name__}; registered: "
                    + ", ".join(f"{n} ({_STEPS.get(n).config_class.__name__})"
                                for n in _STEPS.names()))
