"""Process-wide numeric settings of the CPU backend.

Kept apart from the models: :mod:`speechvae.priors` calls :func:`flush_denormals` and
:func:`keep_freed_memory` once when it is imported (the priors are what produce subnormal
numbers and the inference loops what allocates), and nothing else in the package changes
process-wide state.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

__all__ = ["flush_denormals", "keep_freed_memory"]

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks below this are served from (and returned to) the heap, not mmap/munmap
HEAP_THRESHOLD_BYTES = 256 * 1024 * 1024


def flush_denormals() -> bool:
    """Flush subnormal floats to zero on the CPU (``torch.set_flush_denormal``), for the
    process, unless the environment sets ``SPEECHVAE_DENORMALS=keep``.

    Trained LSTM priors produce subnormal gradients that x86 CPUs handle in microcode: one
    RVAE training step took 1.24 s with them and 0.18 s without (1 thread, batch 32 x 50
    frames; the numbers differ from the kept-subnormal ones only below 1e-38). Returns
    whether flushing is on.
    """
    if os.environ.get("SPEECHVAE_DENORMALS", "").lower() == "keep":
        return False
    return bool(torch.set_flush_denormal(True))


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks up to :data:`HEAP_THRESHOLD_BYTES` in the heap instead of
    returning each to the kernel (``mallopt`` ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``),
    on Linux with glibc, unless the environment sets ``SPEECHVAE_MALLOC=default``.

    Every EM iteration allocates and frees a few (freq, time) tensors of a few MB; with
    glibc's defaults each one is a fresh ``mmap`` whose pages the kernel zeroes on first
    touch. On 4 dev files (50.6 s of audio, 1 process, 1 thread, VEM defaults) the kernel
    time fell from 2.3 to 0.35 s and the wall time by 16 % (median of 4 paired runs;
    README "Speed"). The cost: up to that much freed memory stays with the process.
    Environment variables ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` set by the
    user win (nothing is changed then). Returns whether the settings were applied.
    """
    if os.environ.get("SPEECHVAE_MALLOC", "").lower() == "default":
        return False
    if not sys.platform.startswith("linux"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_THRESHOLD_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, HEAP_THRESHOLD_BYTES))
