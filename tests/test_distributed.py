"""Multi-process runs: 2 CPU processes (gloo on 127.0.0.1) against a single-process run.

One module-scoped launch of two ranks (``torch.multiprocessing.spawn``, environment as
``torchrun`` sets it) builds a spectrogram cache, trains a tiny VAE (interrupted and resumed)
and enhances a folder through the CLI; the tests compare what it left with single-process
runs in the test process.

Why the training runs must agree: each rank takes every other segment of each batch of the
same permutation, its loss is a mean over its own frames and is weighted by its share of the
batch, and DDP averages the gradients, so every step sees the gradient of the mean over the
whole batch, as in one process. Reparameterisation noise is per rank by design, so these
runs use the posterior mean instead of a sample (a patched ``Posterior.rsample``); then the
two runs differ only by the order of floating-point sums.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp
from conftest import write_wav

from speechvae.priors import VAE, VAEConfig
from speechvae.priors.base import Posterior
from speechvae.stft import STFTConfig
from speechvae.training import (
    SegmentSampler,
    SpectrogramCache,
    TrainConfig,
    build_cache,
    train_prior,
)
from speechvae.training import data as data_module

WORLD = 2
SMALL_STFT = STFTConfig(n_fft=64, hop_length=16)
# 121 training segments, batches of 16: the last batch (9) splits 5 / 4 over the ranks
TRAIN_LENGTHS, VAL_LENGTHS = [40, 30, 51], [20, 15]
CONFIG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=0, silence_db=None)
ENHANCE_FILES = 4


def _prior(seed=0):
    torch.manual_seed(seed)
    return VAE(VAEConfig(n_freq=33, hidden_dims=(16,), latent_dim=3), SMALL_STFT)


def _random_cache(lengths, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.exp(rng.standard_normal((offsets[-1], 33))).astype(np.float32)
    return SpectrogramCache(frames, offsets, [f"f{i}" for i in range(len(lengths))])


def _posterior_mean(self, generator=None, num_samples=None):
    return self.mean if num_samples is None else self.mean.expand(num_samples,
                                                                  *self.mean.shape)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, work: str, prior_path: str) -> None:
    """One rank: what ``torchrun --nproc-per-node 2`` would start."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    work = Path(work)
    report = {}

    # cache: built by rank 0 only (rank 1 fails if it tries), then opened by both
    if rank != 0:
        def refuse(*a, **k):
            raise AssertionError("rank 1 built the cache")

        data_module._write_cache = refuse
    wavs = sorted((work / "wavs").glob("*.wav"))
    cache = build_cache(wavs, work / "cache", stft=SMALL_STFT, progress=False)
    report["cache"] = [Path(cache.frames.filename).name, cache.num_frames]

    # training, stopped after one epoch and resumed (from other initial weights)
    rsample, Posterior.rsample = Posterior.rsample, _posterior_mean
    train, val = _random_cache(TRAIN_LENGTHS, 0), _random_cache(VAL_LENGTHS, 1)
    out = work / "train"
    from dataclasses import replace

    train_prior(_prior(), train, val, replace(CONFIG, epochs=1), out, progress=False)
    prior = _prior(seed=123)
    report["summary"] = train_prior(prior, train, val, CONFIG, out, progress=False)
    torch.save(prior.state_dict(), work / f"weights{rank}.pt")
    Posterior.rsample = rsample

    # sharded enhancement through the command line
    from speechvae_cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        try:
            main(["enhance", str(work / "noisy"), "--output-dir", str(work / "enhanced"),
                  "--prior", prior_path, "--iterations", "2", "--json"])
        except SystemExit as exc:
            report["exit"] = exc.code
    report["stdout"] = stdout.getvalue()
    (work / f"report{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_prior):
    """Run :func:`_worker` on 2 ranks; returns the work folder and the ranks' reports."""
    work = tmp_path_factory.mktemp("dist")
    for i in range(3):
        write_wav(work / "wavs" / f"w{i}.wav", seconds=0.3 + 0.1 * i, seed=i)
    for i in range(ENHANCE_FILES):
        write_wav(work / "noisy" / f"n{i}.wav", seconds=0.5 + 0.25 * i, seed=10 + i,
                  noise=0.1)
    mp.spawn(_worker, args=(_free_port(), str(work), str(tiny_prior)), nprocs=WORLD,
             join=True)
    return work, [json.loads((work / f"report{r}.json").read_text()) for r in range(WORLD)]


def test_sampler_shards_are_disjoint_and_make_the_batch():
    cache = _random_cache([23, 18], 0)
    sampler = SegmentSampler(cache, 2, 5, silence_db=None)
    whole = list(sampler.batches(torch.Generator().manual_seed(3)))
    shards = [list(sampler.batches(torch.Generator().manual_seed(3), rank=r, world_size=3))
              for r in range(3)]
    for i, batch in enumerate(whole):
        parts = torch.cat([s[i] for s in shards])
        assert sorted(parts[:, 0, 0].tolist()) == sorted(batch[:, 0, 0].tolist())
        assert [s[i].shape[0] for s in shards] == [len(range(r, batch.shape[0], 3))
                                                   for r in range(3)]
    with pytest.raises(ValueError):
        next(sampler.batches(rank=2, world_size=2))


def test_cache_is_built_once_and_shared(two_ranks, tmp_path):
    work, reports = two_ranks
    assert reports[0]["cache"] == reports[1]["cache"]
    names = os.listdir(work / "cache")
    assert sorted(n.rsplit(".", 1)[1] for n in names) == ["f32", "json"]
    one = build_cache(sorted((work / "wavs").glob("*.wav")), tmp_path, stft=SMALL_STFT,
                      progress=False)
    assert one.num_frames == reports[0]["cache"][1]


def test_two_processes_train_like_one(two_ranks, tmp_path, monkeypatch):
    work, reports = two_ranks
    monkeypatch.setattr(Posterior, "rsample", _posterior_mean)
    single = _prior()
    summary = train_prior(single, _random_cache(TRAIN_LENGTHS, 0),
                          _random_cache(VAL_LENGTHS, 1), CONFIG, tmp_path / "one",
                          progress=False)
    w0, w1 = (torch.load(work / f"weights{r}.pt", weights_only=True) for r in range(WORLD))
    for k, v in single.state_dict().items():
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the ranks in step
        torch.testing.assert_close(w0[k], v, rtol=1e-4, atol=1e-5)
    assert reports[0]["summary"] == reports[1]["summary"]
    dist_summary = reports[0]["summary"]
    assert dist_summary["epochs_run"] == summary["epochs_run"] == 2
    assert dist_summary["best_val_loss"] == pytest.approx(summary["best_val_loss"], rel=1e-5)
    # rank 0 wrote the run folder; the log is that of the single-process run
    out = work / "train"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "log.csv"]
    rows = [line.split(",") for line in (out / "log.csv").read_text().split()[1:]]
    ref = [line.split(",") for line in (tmp_path / "one" / "log.csv").read_text().split()[1:]]
    assert len(rows) == len(ref) == 2
    for a, b in zip(rows, ref):
        np.testing.assert_allclose([float(x) for x in a[3:9]], [float(x) for x in b[3:9]],
                                   rtol=1e-5)
    state = torch.load(out / "last.pt", weights_only=True)
    assert len(state["noise_generators"]) == WORLD


def test_sharded_enhancement_matches_one_process(two_ranks, tiny_prior, invoke):
    work, reports = two_ranks
    ref_dir = work / "enhanced_one"
    result = invoke("enhance", work / "noisy", "--output-dir", ref_dir, "--prior", tiny_prior,
                    "--iterations", "2", "--json")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in ref_dir.iterdir())
    assert len(names) == ENHANCE_FILES
    assert sorted(p.name for p in (work / "enhanced").iterdir()) == names
    for name in names:
        a, _ = sf.read(str(work / "enhanced" / name), dtype="int16")
        b, _ = sf.read(str(ref_dir / name), dtype="int16")
        np.testing.assert_array_equal(a, b)
    assert reports[0]["exit"] in (0, None) and reports[1]["exit"] == 0
    assert reports[1]["stdout"] == ""  # rank 0 reports for both
    summary = json.loads(reports[0]["stdout"])
    assert sorted(Path(f["output"]).name for f in summary["files"]) == names
    assert summary["failed"] == []
