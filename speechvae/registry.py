"""One small name -> class registry shared by priors, vocoders and evaluation baselines.

Registries, not if/elif chains (STYLE.md §3): a class registers itself with a decorator, the
command line takes its choices from :meth:`ClassRegistry.names`, and an unknown name raises a
``KeyError`` that lists the registered ones.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["ClassRegistry"]

T = TypeVar("T", bound=type)


class ClassRegistry:
    """Classes registered under names, for one kind of component (``"prior"``, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``cls`` as ``name`` and set ``cls.name``.

        Raises:
            ValueError: another class is already registered as ``name`` (registering the same
                class again is harmless).
        """

        def deco(cls: T) -> T:
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            self.entries[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type:
        """The class registered as ``name``; KeyError listing the choices otherwise."""
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: "
                           f"{', '.join(self.names()) or 'none'}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries)
