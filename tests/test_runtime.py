"""Process-wide CPU settings (speechvae.runtime)."""
import os
import subprocess
import sys

import pytest

CODE = "import speechvae.priors as p; print(p.FREED_MEMORY_KEPT)"


def _run(env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPEECHVAE_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_allocator_setting_and_its_opt_outs():
    import ctypes.util

    glibc = ctypes.util.find_library("c") is not None
    assert _run({}) == ("True" if glibc else "False")
    assert _run({"SPEECHVAE_MALLOC": "default"}) == "False"  # the documented opt-out
    assert _run({"MALLOC_MMAP_THRESHOLD_": "131072"}) == "False"  # the user's own setting wins


def test_allocator_setting_keeps_results():
    # the allocator changes where memory comes from, never a number: same VEM output
    code = ("import numpy as np, torch, speechvae; "
            "x = np.random.default_rng(0).standard_normal(8000).astype('float32'); "
            "y = speechvae.enhance(x, 16000, config=speechvae.enhancement.VEMConfig("
            "iterations=3), seed=0).waveform; print(float(np.abs(y).sum()))")
    outs = []
    for extra in ({}, {"SPEECHVAE_MALLOC": "default"}):
        env = {**os.environ, **extra}
        env.pop("SPEECHVAE_MALLOC", None) if not extra else None
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout.strip())
    assert outs[0] == outs[1]
