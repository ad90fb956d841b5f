"""Command-line interface of speechvae: ``speechvae ...`` or ``python -m speechvae ...``.

This package lives in the repository's ``cli/`` folder and installs as ``speechvae_cli``;
the library (``speechvae``) never imports it, nor click. Commands: ``enhance``, ``score``,
``train``, ``priors``, ``mix`` and ``evaluate`` (see ``speechvae --help``).
"""
from .main import cli, main

__all__ = ["cli", "main"]
