"""Shared helpers of the command-line interface: one-line errors and warnings, devices, JSON.

Only the standard library, click and tqdm are imported here; the heavy parts of speechvae
(torch, the priors) are imported inside the commands that need them, so that
``speechvae --help`` stays fast.
"""
from __future__ import annotations

import json
import math
import os
import sys
import warnings
from contextlib import contextmanager

import click

#: Set this environment variable to a non-empty value to get full tracebacks instead of
#: one-line error messages (for bug reports).
DEBUG_ENV = "SPEECHVAE_DEBUG"


class CLIError(click.ClickException):
    """An expected failure: printed as one line ``error: <message>`` on stderr, exit code 1."""

    def show(self, file=None) -> None:
        emit(f"error: {one_line(self.format_message())}", err=True)


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def exception_message(exc: BaseException) -> str:
    """The one-line message of an expected library exception.

    ``KeyError`` keeps its argument without the quotes ``str(KeyError)`` adds; an exception
    with an empty message is named by its type.
    """
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc)
    text = one_line(text)
    return text or type(exc).__name__


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types reported as one ``error:`` line rather than a traceback.

    The speechvae errors (``AudioError``, ``CheckpointError``) derive from ``ValueError``;
    ``OSError`` covers ``FileExistsError``, ``FileNotFoundError``, permission errors and a
    full disk; ``ImportError`` an optional dependency that is not installed (its message says
    what to install). CUDA out-of-memory errors are included once torch has been imported.
    """
    types: list[type[BaseException]] = [ValueError, KeyError, OSError, ImportError]
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(oom, type):
        types.append(oom)
    return tuple(types)


def debug_enabled() -> bool:
    """Whether :data:`DEBUG_ENV` asks for tracebacks."""
    return bool(os.environ.get(DEBUG_ENV))


def emit(line: str, err: bool = False) -> None:
    """Print one line to stdout (or stderr) without breaking a running tqdm progress bar."""
    from tqdm import tqdm

    stream = sys.stderr if err else sys.stdout
    if getattr(tqdm, "_instances", None):
        tqdm.write(line, file=stream)
    else:
        click.echo(line, file=stream)


def warn(message: str) -> None:
    """Print ``warning: <message>`` as one line on stderr."""
    emit(f"warning: {one_line(message)}", err=True)


@contextmanager
def one_line_warnings():
    """Show every Python warning raised inside the block as one ``warning: ...`` line on
    stderr (the filters in effect, e.g. ``-W error``, still apply)."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = one_line(str(message))
        # speechvae's AudioWarning messages speak for themselves; other warnings (from torch,
        # pystoi, ...) are prefixed with their category so their origin stays visible
        if category.__name__ != "AudioWarning":
            text = f"{category.__name__}: {text}"
        warn(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def resolve_device(device: str) -> str:
    """Check a ``--device`` value: ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        CLIError: unknown device, or CUDA requested but not available.
    """
    device = device.strip().lower()
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError(f"--device {device}: CUDA is not available (torch {torch.__version__}"
                           f"{'' if torch.version.cuda else ', built without CUDA'}); "
                           "use --device cpu")
        if ":" in device:
            index = device.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise CLIError(f"--device {device}: no such CUDA device "
                               f"({torch.cuda.device_count()} available)")
        return device
    raise CLIError(f"--device {device}: expected cpu, cuda or cuda:N")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (intra-op CPU threads of torch); ``None`` keeps torch's default."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def print_json(payload) -> None:
    """Print ``payload`` as standard JSON on stdout.

    Non-finite floats, which standard JSON cannot hold, are written as ``null`` (NaN: the
    value could not be computed) or as the strings ``"inf"`` / ``"-inf"``.
    """
    click.echo(json.dumps(_finite_or_none(payload), indent=1, allow_nan=False))


def format_seconds(seconds: float) -> str:
    """``12.3 s`` / ``4 min 05 s`` / ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
