"""Checkpoint files: atomic writes and a restricted loader (the bottom floor of the package).

Every checkpoint speechvae writes (priors, vocoders, editing subspaces, training state) is a
dictionary of tensors and plain Python values, written with :func:`atomic_torch_save` and
read back with :func:`safe_torch_load` (``torch.load(..., weights_only=True)``), so loading a
file never runs code from it. This module imports nothing from the rest of the package, so
priors, vocoders, editing and training all build on it without import cycles.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

__all__ = ["CheckpointError", "atomic_torch_save", "safe_torch_load", "temp_beside",
           "versions"]


class CheckpointError(ValueError):
    """A checkpoint that is not of the expected kind, is corrupt, or cannot be loaded
    safely."""


def versions() -> dict:
    """``{"speechvae": version, "torch": version}``, stored in every checkpoint."""
    from . import __version__

    return {"speechvae": str(__version__), "torch": str(torch.__version__)}


def temp_beside(path: str | os.PathLike, suffix: str) -> Path:
    """A new empty hidden file next to ``path`` (same folder, so a rename is atomic), with the
    permissions a plain ``open`` would give (``mkstemp`` makes it owner-only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the destination folder, then rename: a reader
    never sees a partial file, and an interrupted write leaves the old file in place."""
    path = Path(path)
    tmp = temp_beside(path, ".part")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: str | os.PathLike, map_location="cpu"):
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``):
    a pickle that would build any other object (and so could run code) is refused.

    Raises:
        CheckpointError: missing file, a folder, not a torch file, or a disallowed pickled
            object.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- UnpicklingError, RuntimeError for non-zip files, ...
        text = str(exc)
        match = re.search(r"GLOBAL ([\w.]+)", text)
        if match:
            raise CheckpointError(f"{path}: refused: the checkpoint holds a disallowed pickled "
                                  f"object ({match.group(1)}); only tensors and plain values "
                                  "are loaded") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({first})") from None
