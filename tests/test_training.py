"""Training: silence trimming, spectrogram cache, segment sampling, train/resume, recipes."""
import csv
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechvae.audio import load_audio
from speechvae.priors import VAE, VAEConfig, load_checkpoint
from speechvae.stft import DEFAULT_STFT, STFTConfig, power_spectrogram
from speechvae.training import (
    SegmentSampler,
    SpectrogramCache,
    TrainConfig,
    build_cache,
    train_prior,
    trim_silence,
)
from speechvae.training import data as data_module

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# -- trim_silence ------------------------------------------------------------------------

def test_trim_silence_drops_leading_and_trailing_quiet_frames():
    energy = np.array([0.0, 1e-6, 1.0, 1e-9, 0.5, 1e-5, 0.0])  # frame energies
    power = np.stack([energy / 2, energy / 2])  # (freq=2, time=7)
    out = trim_silence(power, top_db=40.0)
    # -60 dB and -50 dB edges go; the quiet frame *inside* the speech stays
    np.testing.assert_array_equal(out, power[:, 2:5])
    np.testing.assert_array_equal(trim_silence(power, top_db=55.0), power[:, 2:6])
    np.testing.assert_array_equal(trim_silence(power, top_db=70.0), power[:, 1:6])


def test_trim_silence_edge_cases():
    loud = np.ones((3, 5))
    np.testing.assert_array_equal(trim_silence(loud), loud)
    assert trim_silence(np.zeros((3, 5))).shape == (3, 0)


# -- cache -------------------------------------------------------------------------------

def _noise_file(path, seconds, seed, silence_s=0.0, sr=16000):
    rng = np.random.default_rng(seed)
    x = 0.2 * rng.standard_normal(int(seconds * sr))
    z = np.zeros(int(silence_s * sr))
    sf.write(str(path), np.concatenate([z, x, z]).astype(np.float32), sr, subtype="FLOAT")
    return path


@pytest.fixture
def three_files(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    return [_noise_file(d / "a.wav", 0.5, 0), _noise_file(d / "b.wav", 0.83, 1),
            _noise_file(d / "c.wav", 0.4, 2, silence_s=0.5)]


def test_build_cache_offsets_and_content(three_files, tmp_path):
    cache = build_cache(three_files, tmp_path / "cache", progress=False)
    hop = DEFAULT_STFT.hop_length
    lengths = cache.lengths()
    # stationary noise without silence: every frame kept
    assert lengths[0] == 1 + 8000 // hop
    assert lengths[1] == 1 + int(0.83 * 16000) // hop
    # half a second of digital silence either side is trimmed (mostly)
    assert 1 + 6400 // hop <= lengths[2] < 1 + 22400 // hop - 40
    assert cache.offsets[0] == 0 and cache.num_frames == lengths.sum()
    assert list(np.cumsum(lengths)) == list(cache.offsets[1:])
    assert cache.files == [str(f) for f in three_files]
    assert cache.frames.shape == (cache.num_frames, DEFAULT_STFT.n_freq)
    assert cache.frames.dtype == np.float32
    assert isinstance(cache.frames, np.memmap)
    for i, f in enumerate(three_files):
        x, _ = load_audio(f)
        p = trim_silence(power_spectrogram(torch.from_numpy(x / np.max(np.abs(x)))).numpy())
        np.testing.assert_allclose(cache.frames[cache.offsets[i]:cache.offsets[i + 1]], p.T,
                                   rtol=1e-6, atol=1e-10)
    assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".part")]


def test_build_cache_is_reused(three_files, tmp_path, monkeypatch):
    first = build_cache(three_files, tmp_path / "cache", progress=False)
    data_file = Path(first.frames.filename)
    stamp = data_file.stat().st_mtime_ns
    listing = sorted(os.listdir(tmp_path / "cache"))

    def no_reading(*a, **k):
        raise AssertionError("cache rebuilt instead of reused")

    monkeypatch.setattr(data_module, "load_audio", no_reading)
    second = build_cache(three_files, tmp_path / "cache", progress=False)
    assert Path(second.frames.filename) == data_file
    assert data_file.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path / "cache")) == listing
    np.testing.assert_array_equal(second.offsets, first.offsets)
    np.testing.assert_array_equal(np.asarray(second.frames), np.asarray(first.frames))


def test_build_cache_key_changes_with_inputs(three_files, tmp_path):
    a = build_cache(three_files, tmp_path / "cache", progress=False)
    b = build_cache(three_files[:2], tmp_path / "cache", progress=False)
    c = build_cache(three_files, tmp_path / "cache", top_db=20.0, progress=False)
    d = build_cache(three_files, tmp_path / "cache", progress=False,
                    stft=STFTConfig(n_fft=512, hop_length=128))
    names = {Path(x.frames.filename).name for x in (a, b, c, d)}
    assert len(names) == 4
    assert d.frames.shape[1] == 257
    _noise_file(three_files[0], 0.7, 9)  # file changed (new size): rebuilt
    e = build_cache(three_files, tmp_path / "cache", progress=False)
    assert Path(e.frames.filename).name not in names
    assert e.lengths()[0] == 1 + int(0.7 * 16000) // 256
    with pytest.raises(ValueError):
        build_cache([], tmp_path / "cache", progress=False)


def test_build_cache_sees_same_size_rewrite(three_files, tmp_path):
    f = three_files[0]
    os.utime(f, ns=(1_700_000_000_100_000_000,) * 2)
    a = build_cache(three_files, tmp_path / "cache", progress=False)
    _noise_file(f, 0.5, 42)  # same length, other content
    os.utime(f, ns=(1_700_000_000_600_000_000,) * 2)
    b = build_cache(three_files, tmp_path / "cache", progress=False)
    assert not np.array_equal(np.asarray(a.frames[:10]), np.asarray(b.frames[:10]))


# -- sampler -----------------------------------------------------------------------------

def _indexed_cache(lengths, n_freq=3):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # frame i holds the value i + 1 in every bin: segments can be traced back to their start
    frames = np.repeat(np.arange(1, offsets[-1] + 1, dtype=np.float32)[:, None], n_freq, 1)
    return SpectrogramCache(frames, offsets, [f"f{i}" for i in range(len(lengths))])


def _file_of(frame, offsets):
    return int(np.searchsorted(offsets, frame, side="right") - 1)


@pytest.mark.parametrize("length,batch", [(4, 4), (1, 7), (3, 100)])
def test_segment_sampler_epoch(length, batch):
    lengths = [10, 3, 17, 1, 8]
    cache = _indexed_cache(lengths)
    sampler = SegmentSampler(cache, length, batch)
    expected = [s for a, b in zip(cache.offsets[:-1], cache.offsets[1:])
                for s in range(a, b - length + 1, length)]
    seen = []
    batches = list(sampler.batches(torch.Generator().manual_seed(0)))
    assert len(batches) == len(sampler) == -(-len(expected) // batch)
    for x in batches:
        assert x.dtype == torch.float32
        assert x.dim() == 3 and x.shape[1:] == (3, length) and 1 <= x.shape[0] <= batch
        for seg in x:
            idx = seg[0].numpy().astype(int) - 1  # frame indices of the segment
            np.testing.assert_array_equal(idx, np.arange(idx[0], idx[0] + length))
            assert _file_of(idx[0], cache.offsets) == _file_of(idx[-1], cache.offsets)
            assert torch.all(seg == seg[0])  # every bin of a frame comes from the same frame
            seen.append(int(idx[0]))
    assert sorted(seen) == expected  # each start exactly once


def test_segment_sampler_order_is_seeded():
    cache = _indexed_cache([50, 40])
    sampler = SegmentSampler(cache, 1, 8)

    def order(seed):
        return torch.cat([x[:, 0, 0] for x in sampler.batches(torch.Generator()
                                                              .manual_seed(seed))])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    plain = torch.cat([x[:, 0, 0] for x in sampler.batches(shuffle=False)])
    assert torch.equal(plain, torch.arange(1, 91, dtype=torch.float32))


def test_segment_sampler_without_long_enough_file_raises():
    with pytest.raises(ValueError):
        SegmentSampler(_indexed_cache([3, 2]), 5, 4)


def test_segment_sampler_skips_silent_segments():
    cache = _indexed_cache([6, 6])
    frames = np.array(cache.frames)
    frames[2:4] = 0.0  # digital silence inside the first file
    cache = SpectrogramCache(frames, cache.offsets, cache.files)
    try:
        sampler = SegmentSampler(cache, 2, 16, silence_db=50.0)
    except TypeError:
        pytest.skip("SegmentSampler has no silence_db option")
    starts = sorted(int(x) - 1 for b in sampler.batches(shuffle=False) for x in b[:, 0, 0])
    assert 2 not in starts and starts == [0, 4, 6, 8, 10]
    keep_all = SegmentSampler(cache, 2, 16, silence_db=None)
    assert len(keep_all.starts) == 6


# -- train_prior -------------------------------------------------------------------------

SMALL_STFT = STFTConfig(n_fft=64, hop_length=16)


def _tiny_prior(seed=0):
    torch.manual_seed(seed)
    return VAE(VAEConfig(n_freq=33, hidden_dims=(16,), latent_dim=3), SMALL_STFT)


def _random_cache(lengths, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.exp(rng.standard_normal((offsets[-1], 33))).astype(np.float32)
    return SpectrogramCache(frames, offsets, [f"f{i}" for i in range(len(lengths))])


@pytest.fixture(scope="module")
def tiny_data():
    return _random_cache([40, 30, 50], seed=0), _random_cache([20, 15], seed=1)


def _config(epochs, **kw):
    return TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, max_batches_per_epoch=3, seed=0,
                       **kw)


def _log_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_prior_writes_outputs(tiny_data, tmp_path):
    train, val = tiny_data
    prior = _tiny_prior()
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    summary = train_prior(prior, train, val, _config(2), tmp_path / "run", progress=False,
                          metadata={"recipe": "test"})
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "log.csv"]
    assert summary["epochs_run"] == 2
    assert summary["best_path"] == str(out / "best.pt")
    assert 0 <= summary["best_epoch"] <= 1 and np.isfinite(summary["best_val_loss"])
    assert any(not torch.equal(before[k], v) for k, v in prior.state_dict().items())
    rows = _log_rows(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))
    best = load_checkpoint(out / "best.pt", expected_stft=SMALL_STFT)
    assert best.config == prior.config
    assert best.metadata["recipe"] == "test"
    assert best.metadata["best_epoch"] == summary["best_epoch"]
    assert best.metadata["train_config"]["epochs"] == 2
    assert float(rows[summary["best_epoch"]]["val_loss"]) == pytest.approx(
        summary["best_val_loss"])
    state = torch.load(out / "last.pt", weights_only=True)  # restricted loader suffices
    assert state["epoch"] == 1


def test_train_prior_resume_matches_uninterrupted_run(tiny_data, tmp_path):
    train, val = tiny_data
    full = _tiny_prior()
    s_full = train_prior(full, train, val, _config(3), tmp_path / "full", progress=False)

    part = _tiny_prior()
    train_prior(part, train, val, _config(2), tmp_path / "resumed", progress=False)
    assert len(_log_rows(tmp_path / "resumed" / "log.csv")) == 2
    # a fresh process would build the prior again (other initial weights here on purpose)
    resumed = _tiny_prior(seed=123)
    s_res = train_prior(resumed, train, val, _config(3), tmp_path / "resumed", progress=False)

    assert s_res["epochs_run"] == s_full["epochs_run"] == 3
    assert s_res["best_epoch"] == s_full["best_epoch"]
    assert s_res["best_val_loss"] == s_full["best_val_loss"]
    assert _same_weights(resumed, full)
    rows_full = _log_rows(tmp_path / "full" / "log.csv")
    rows_res = _log_rows(tmp_path / "resumed" / "log.csv")
    assert [int(r["epoch"]) for r in rows_res] == [0, 1, 2]
    for a, b in zip(rows_full, rows_res):
        for k in ("epoch", "beta", "train_loss", "train_is", "train_kl", "val_loss"):
            assert a[k] == b[k], k
    assert _same_weights(load_checkpoint(tmp_path / "full" / "best.pt"),
                         load_checkpoint(tmp_path / "resumed" / "best.pt"))
    # running again once finished trains no further
    again = _tiny_prior(seed=5)
    s_again = train_prior(again, train, val, _config(3), tmp_path / "resumed", progress=False)
    assert s_again["epochs_run"] == 3 and _same_weights(again, full)


def test_train_prior_same_seed_is_reproducible(tiny_data, tmp_path):
    train, val = tiny_data
    a, b = _tiny_prior(), _tiny_prior()
    train_prior(a, train, val, _config(1), tmp_path / "a", progress=False)
    train_prior(b, train, val, _config(1), tmp_path / "b", progress=False)
    assert _same_weights(a, b)
    c = _tiny_prior()
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, max_batches_per_epoch=3, seed=1)
    train_prior(c, train, val, cfg, tmp_path / "c", progress=False)
    assert not _same_weights(a, c)


def test_train_prior_refuses_other_config_in_folder(tiny_data, tmp_path):
    train, val = tiny_data
    train_prior(_tiny_prior(), train, val, _config(1), tmp_path / "run", progress=False)
    torch.manual_seed(0)
    other = VAE(VAEConfig(n_freq=33, hidden_dims=(8,), latent_dim=3), SMALL_STFT)
    with pytest.raises(ValueError, match="another prior"):
        train_prior(other, train, val, _config(2), tmp_path / "run", progress=False)


def test_train_prior_early_stopping(tiny_data, tmp_path):
    train, val = tiny_data
    # lr=0: validation never improves after the first epoch, so patience 2 stops at epoch 3
    cfg = TrainConfig(epochs=20, batch_size=16, lr=0.0, patience=2, max_batches_per_epoch=1)
    s = train_prior(_tiny_prior(), train, val, cfg, tmp_path / "run", progress=False)
    assert s["best_epoch"] == 0 and s["epochs_run"] == 3


# -- recipes -----------------------------------------------------------------------------

def _recipes_common():
    spec = importlib.util.spec_from_file_location("speechvae_recipes_common",
                                                  RECIPES / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _manifest(root):
    rows = []
    for spk in "ABCDEFGHIJ":
        rows += [(f"ls/{spk}_{i}.flac", "train", spk) for i in range(3)]
    for spk in ("s1", "s2", "s3", "s4", "s5"):
        rows += [(f"so/{spk}_{i}.wav", "train_more", spk) for i in range(2)]
    rows += [(f"ms/clean_{i}.wav", "train_extra", "") for i in range(4)]
    rows += [(f"ls/test_{i}.flac", "test", "Z") for i in range(3)]
    rows += [("ls/nospk.flac", "train", "")]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", "speaker", "duration_s"])
        for r in rows:
            w.writerow([*r, "1.0"])
    return {root / p: (split, spk) for p, split, spk in rows}


def test_speaker_split_is_disjoint(tmp_path):
    common = _recipes_common()
    root = tmp_path / "data"
    truth = _manifest(root)
    train, val, info = common.speaker_split(root, val_fraction=0.2, seed=0)
    assert set(train).isdisjoint(val)
    spk_train = {truth[p] for p in train if truth[p][1]}
    spk_val = {truth[p] for p in val}
    assert spk_train.isdisjoint(spk_val)
    assert len(spk_val) == info["val_speakers"] == round(0.2 * 15)
    assert info["train_speakers"] == 15 - info["val_speakers"]
    # all files of a validation speaker are in validation
    for p, key in truth.items():
        if key in spk_val:
            assert p in val
    # unlabelled and train_extra files stay in training; other splits are not used
    unlabelled = [p for p, (split, spk) in truth.items()
                  if split == "train_extra" or (split != "test" and not spk)]
    assert set(unlabelled) <= set(train)
    assert info["unlabelled_files"] == len(unlabelled)
    assert not any(truth[p][0] == "test" for p in train + val)
    assert len(train) + len(val) == sum(1 for s, _ in truth.values() if s != "test")
    assert info["train_files"] == len(train) and info["val_files"] == len(val)
    assert train == sorted(train) and val == sorted(val)
    # deterministic for a seed
    assert common.speaker_split(root, val_fraction=0.2, seed=0)[:2] == (train, val)
    assert any(common.speaker_split(root, val_fraction=0.2, seed=s)[1] != val
               for s in range(1, 6))


def test_speaker_split_restricted_splits(tmp_path):
    common = _recipes_common()
    root = tmp_path / "data"
    truth = _manifest(root)
    train, val, info = common.speaker_split(root, val_fraction=0.05, seed=0,
                                            splits=("train",))
    assert {truth[p][0] for p in train + val} == {"train"}
    assert info["val_speakers"] == 1  # at least one validation speaker
