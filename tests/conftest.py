"""Shared fixtures of the command-line tests: a tiny prior checkpoint and test signals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner


def speech_like(seconds: float = 1.0, sample_rate: int = 16000, f0: float = 140.0,
                noise: float = 0.02, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic signal with a gliding pitch and a syllable-rate envelope, plus white noise.

    Returns:
        float32 ``(time,)`` with peak about ``amplitude`` (full scale 1).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 10) if k * f0 < sample_rate / 2)
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    x = x / np.max(np.abs(x)) + noise / amplitude * rng.standard_normal(t.size)
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def write_wav(path: Path, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1,
              subtype: str = "PCM_16", seed: int = 0, **kwargs) -> Path:
    """Write :func:`speech_like` to ``path`` (``channels`` slightly different copies)."""
    x = speech_like(seconds, sample_rate, seed=seed, **kwargs)
    if channels > 1:
        x = np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory) -> Path:
    """A small untrained VAE checkpoint (fast enough for the tests)."""
    from speechvae.priors import VAE, VAEConfig

    path = tmp_path_factory.mktemp("prior") / "tiny.pt"
    torch.manual_seed(0)
    VAE(VAEConfig(hidden_dims=(32,), latent_dim=4)).save(path)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def fast(tiny_prior) -> list[str]:
    """Options making ``speechvae enhance`` fast in tests."""
    return ["--prior", str(tiny_prior), "--iterations", "3"]


@pytest.fixture
def invoke(runner):
    """Run ``speechvae ARGS...`` in-process; returns click's Result (stdout/stderr apart)."""
    from speechvae_cli import cli

    def run(*args):
        return runner.invoke(cli, [str(a) for a in args])

    return run


@pytest.fixture
def expect_error():
    """Check a failed run: non-zero exit, stderr exactly one ``error:`` line holding every
    needle (case-insensitive), and no traceback."""

    def check(result, *needles, exit_code=None):
        assert result.exit_code != 0, result.output
        if exit_code is not None:
            assert result.exit_code == exit_code, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
        for needle in needles:
            assert needle.lower() in lines[0].lower(), (needle, lines[0])
        assert "Traceback" not in result.output
        # an expected failure is reported, not raised (CliRunner keeps only SystemExit)
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        return lines[0]

    return check
