"""Batched enhancement: batched == one-by-one (VEM, segments, files, CLI), masks, options."""
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_wav

from speechvae.enhancement import (
    BandoConfig,
    MALAConfig,
    MCEMConfig,
    VEMConfig,
    available_algorithms,
    batchable_prior,
    enhance_file,
    enhance_files,
    enhance_segment,
    enhance_segments,
    get_algorithm,
    run_em,
    vem,
    vem_batch,
)
from speechvae.priors import (
    DKF,
    RVAE,
    VAE,
    DKFConfig,
    RVAEConfig,
    VAEConfig,
    available_priors,
    get_prior_class,
)
from speechvae.stft import stft

SR = 16000
# tol/tol_window chosen so that the three files of the test stop at different iterations
CONFIG = VEMConfig(iterations=30, nmf_rank=3, samples=2, wiener_samples=3, tol=0.002,
                   tol_window=2)
CLOSE = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return VAE(VAEConfig(hidden_dims=(32,), latent_dim=4)).eval()


# the grid comes from the registry: every registered prior (small configurations where the
# defaults are slow; a prior registered later gets its default configuration), plus both
# variants of the RVAE
SMALL = {
    "vae": lambda: VAE(VAEConfig(hidden_dims=(32,), latent_dim=4)),
    "rvae": lambda: RVAE(RVAEConfig(latent_dim=3, hidden_dim=8, dense_dims=(8,))),
    "dkf": lambda: DKF(DKFConfig(latent_dim=3, encoder_dense_dims=(16,), rnn_dim=8,
                                 combiner_z_dims=(6,), combiner_dims=(6,),
                                 decoder_dims=(16,), transition_dim=4)),
}
EXTRA = {"rvae-noncausal": lambda: RVAE(RVAEConfig(latent_dim=3, hidden_dim=8,
                                                   dense_dims=(8, 6), causal=False))}


def _registered():
    out = {}
    for name in available_priors():
        if name.startswith("test-"):  # test-only priors registered by other test modules
            continue
        cls = get_prior_class(name)
        out[name] = SMALL.get(name, lambda cls=cls: cls(cls.config_class()))
    return {**out, **EXTRA}


PRIORS = _registered()


@pytest.fixture(scope="module", params=list(PRIORS))
def any_prior(request):
    torch.manual_seed(0)
    return PRIORS[request.param]().eval()


def _mixture(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    speech = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    speech *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = speech + 0.3 * rng.standard_normal(t.size)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def _spec(seconds, seed):
    return stft(torch.from_numpy(_mixture(seconds, seed)))[None]


def _pad_batch(specs, fill=0.0, seed=0):
    """Right-pad ``(1, F, T_i)`` STFTs to one ``(B, F, T)`` batch; padding holds ``fill``
    times random values (it must not matter)."""
    n = max(s.shape[-1] for s in specs)
    g = torch.Generator().manual_seed(seed)
    out = fill * torch.randn((len(specs), specs[0].shape[1], n), generator=g,
                             dtype=torch.complex64)
    for b, s in enumerate(specs):
        out[b, :, :s.shape[-1]] = s[0]
    return out, [s.shape[-1] for s in specs]


def _gens(n, seed=5):
    return [torch.Generator().manual_seed(seed) for _ in range(n)]


def _assert_same(ref, got):
    assert got.iterations == ref.iterations
    np.testing.assert_allclose(got.objective, ref.objective, rtol=1e-5)
    for a, b in ((ref.speech, got.speech), (ref.noise, got.noise), (ref.nmf.W, got.nmf.W),
                 (ref.nmf.H, got.nmf.H), (ref.nmf.g, got.nmf.g)):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, **CLOSE)


def test_batched_vem_equals_one_by_one(any_prior):
    assert batchable_prior(any_prior)
    specs = [_spec(s, i) for i, s in enumerate([0.7, 1.3, 0.4])]
    ref = [vem(any_prior, s, CONFIG, g) for s, g in zip(specs, _gens(3))]
    assert len({r.iterations for r in ref}) > 1  # the stopping rule acts per file
    batch, lengths = _pad_batch(specs, fill=1.0)  # padding holds garbage: it must not matter
    got = vem_batch(any_prior, batch, lengths, CONFIG, _gens(3))
    assert len(got) == 3
    for r, o in zip(ref, got):
        _assert_same(r, o)


@pytest.mark.parametrize("gain", ["global", "none"])
def test_batched_vem_other_gains_and_steps(any_prior, gain):
    cfg = VEMConfig(iterations=4, nmf_rank=2, wiener_samples=2, gain=gain, e_steps=2,
                    m_steps=2)
    specs = [_spec(0.5, 3), _spec(0.9, 4)]
    ref = [vem(any_prior, s, cfg, g) for s, g in zip(specs, _gens(2, 1))]
    got = vem_batch(any_prior, *_pad_batch(specs), cfg, _gens(2, 1))
    for r, o in zip(ref, got):
        _assert_same(r, o)


def test_padding_does_not_change_a_file(any_prior):
    """A file with a short partner == with a long partner whose padding holds garbage."""
    cfg = VEMConfig(iterations=5, nmf_rank=3, wiener_samples=2)
    a, short, long = _spec(0.5, 0), _spec(0.6, 1), _spec(2.0, 2)
    with_short = vem_batch(any_prior, *_pad_batch([a, short]), cfg, _gens(2))[0]
    with_long = vem_batch(any_prior, *_pad_batch([a, long], fill=3.0), cfg, _gens(2))[0]
    _assert_same(with_short, with_long)
    _assert_same(vem(any_prior, a, cfg, _gens(1)[0]), with_long)


def test_batched_vem_leaves_prior_unchanged(any_prior):
    before = {k: v.clone() for k, v in any_prior.state_dict().items()}
    vem_batch(any_prior, *_pad_batch([_spec(0.3, 0), _spec(0.5, 1)]),
              VEMConfig(iterations=2, nmf_rank=2, wiener_samples=1), _gens(2))
    for k, v in any_prior.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in any_prior.parameters())


# small settings of every registered algorithm (a new one runs with its defaults but few
# iterations)
FAST = {
    "vem": VEMConfig(iterations=4, nmf_rank=2, wiener_samples=2),
    "mcem": MCEMConfig(iterations=3, nmf_rank=2, burnin=2, samples=2, final_burnin=2,
                       final_samples=2),
    "mala": MALAConfig(iterations=3, nmf_rank=2, chains=2, burnin=2, final_burnin=2,
                       final_samples=2),
    "bando": BandoConfig(iterations=4, samples=2, nmf_rank=2, init_iterations=2),
}


@pytest.mark.parametrize("algorithm", available_algorithms())
def test_every_algorithm_through_the_driver_equals_one_by_one(any_prior, algorithm):
    """The EM driver on a padded batch == each file alone, for every registered prior and
    algorithm (batched steps in one pass, the others file by file inside the driver)."""
    alg = get_algorithm(algorithm)
    cfg = FAST.get(algorithm) or replace(alg.default_config(), iterations=3)
    specs = [_spec(0.3, 0), _spec(0.5, 1)]
    ref = [alg.run(any_prior, s, cfg, g) for s, g in zip(specs, _gens(2))]
    got = run_em(alg.step, any_prior, *_pad_batch(specs, fill=2.0), cfg, _gens(2))
    for r, o in zip(ref, got):
        _assert_same(r, o)
    if alg.run_batch is not None:
        got = alg.run_batch(any_prior, *_pad_batch(specs, fill=2.0), cfg, _gens(2))
        for r, o in zip(ref, got):
            _assert_same(r, o)


def test_vem_batch_bad_arguments(prior):
    batch, lengths = _pad_batch([_spec(0.3, 0), _spec(0.4, 1)])
    with pytest.raises(ValueError, match="lengths"):
        vem_batch(prior, batch, [lengths[0], batch.shape[-1] + 1], CONFIG, _gens(2))
    with pytest.raises(ValueError, match="generator"):
        vem_batch(prior, batch, lengths, CONFIG, _gens(3))
    with pytest.raises(ValueError, match="frequency"):
        vem_batch(prior, batch[:, :100], lengths, CONFIG, _gens(2))


def test_enhance_segments_equal_enhance_segment(prior):
    cfg = VEMConfig(iterations=3, nmf_rank=2, wiener_samples=2)
    segments = [_mixture(0.6, 0), np.zeros(4000, np.float32), _mixture(1.1, 1)]
    ref = [enhance_segment(prior, x, cfg, g) for x, g in zip(segments, _gens(3))]
    got = enhance_segments(prior, segments, cfg, _gens(3))
    for (s0, b0, i0), (s1, b1, i1) in zip(ref, got):
        assert i0 == i1 and s0.shape == s1.shape
        np.testing.assert_allclose(s1, s0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b1, b0, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no batched path"):
        enhance_segments(prior, segments, get_algorithm("mcem").default_config(), _gens(3),
                         algorithm="mcem")


def test_enhance_files_with_segments_equal_enhance_file(any_prior, tmp_path):
    """Long files segmented (segments of several files share batches) == one by one."""
    cfg = VEMConfig(iterations=3, nmf_rank=2, wiener_samples=2)
    seconds = [2.7, 0.5, 1.6]
    inputs = [write_wav(tmp_path / f"in{i}.wav", s, seed=i) for i, s in enumerate(seconds)]
    kw = {"prior": any_prior, "config": cfg, "seed": 3, "segment_s": 1.0, "overlap_s": 0.25}
    for i, x in enumerate(inputs):
        enhance_file(x, tmp_path / f"ref{i}.wav", noise_path=tmp_path / f"refn{i}.wav", **kw)
    jobs = [(x, tmp_path / f"out{i}.wav", tmp_path / f"outn{i}.wav")
            for i, x in enumerate(inputs)]
    seen = []
    results = dict(enhance_files(jobs, batch_size=2, progress=lambda *a: seen.append(a), **kw))
    assert sorted(results) == [0, 1, 2]
    assert {a[0] for a in seen} == {0, 1, 2}
    for i, s in enumerate(seconds):
        info = results[i]
        assert not isinstance(info, Exception), info
        assert info["duration_s"] == pytest.approx(s)
        assert len(info["iterations"]) == (1 if s <= 1.0 else 3 if s > 2 else 2)
        for ref, out in ((f"ref{i}", f"out{i}"), (f"refn{i}", f"outn{i}")):
            a, _ = sf.read(tmp_path / f"{ref}.wav", dtype="int16")
            b, _ = sf.read(tmp_path / f"{out}.wav", dtype="int16")
            assert a.shape == b.shape
            assert np.max(np.abs(a.astype(int) - b)) <= 2  # 16-bit rounding of allclose
    assert not list(tmp_path.glob("*.part*"))


def test_enhance_files_bad_batch_size(prior, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        list(enhance_files([], prior=prior, batch_size=0))
    with pytest.raises(ValueError, match="no batched"):
        list(enhance_files([], prior=prior, batch_size=2, algorithm="mcem"))


def test_enhance_files_batch_one_is_enhance_file(prior, tmp_path):
    """--batch-size 1 keeps today's path: bit-identical outputs."""
    cfg = VEMConfig(iterations=2, nmf_rank=2, wiener_samples=2)
    x = write_wav(tmp_path / "a.wav", 0.6)
    enhance_file(x, tmp_path / "ref.wav", prior=prior, config=cfg)
    [(i, info)] = list(enhance_files([(x, tmp_path / "out.wav", None)], prior=prior,
                                     config=cfg))
    assert i == 0 and info["output"] == str(tmp_path / "out.wav")
    assert np.array_equal(sf.read(tmp_path / "ref.wav")[0], sf.read(tmp_path / "out.wav")[0])


def test_cli_batch_size_3_equals_batch_size_1(tmp_path, invoke, fast):
    seconds = [0.9, 0.4, 1.5, 0.6]
    for i, s in enumerate(seconds):
        write_wav(tmp_path / "in" / f"f{i}.wav", s, seed=i)
    outs = {}
    for b in (1, 3):
        result = invoke("enhance", tmp_path / "in", "--output-dir", tmp_path / f"b{b}",
                        "--noise-output", "--json", "--batch-size", b, *fast)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["batch_size"] == b
        outs[b] = summary["files"]
    # same order, names and durations
    assert [f["input"] for f in outs[1]] == [f["input"] for f in outs[3]]
    for f1, f3 in zip(outs[1], outs[3]):
        assert f1["output"].replace("b1", "b3") == f3["output"]
        assert f1["duration_s"] == f3["duration_s"] and f1["iterations"] == f3["iterations"]
        for key in ("output", "noise"):
            a, _ = sf.read(f1[key], dtype="int16")
            b, _ = sf.read(f3[key], dtype="int16")
            assert a.shape == b.shape
            assert np.max(np.abs(a.astype(int) - b)) <= 2


def test_cli_batch_keep_going_reports_bad_file(tmp_path, invoke, fast):
    good = [write_wav(tmp_path / f"g{i}.wav", 0.5, seed=i) for i in range(2)]
    bad = tmp_path / "bad.wav"
    sf.write(str(bad), np.zeros(8000, np.float32), SR)  # silent: fails once read
    result = invoke("enhance", *good, bad, "--batch-size", 3, "--keep-going", "--json",
                    *fast)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert [f["input"] for f in summary["files"]] == [str(p) for p in good]
    assert [f["input"] for f in summary["failed"]] == [str(bad)]
    assert all((tmp_path / f"g{i}_enhanced.wav").is_file() for i in range(2))
    assert not (tmp_path / "bad_enhanced.wav").exists()
    assert not list(tmp_path.glob("*.part*"))


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_cli_bad_batch_size(tmp_path, invoke, fast, expect_error, value):
    x = write_wav(tmp_path / "a.wav", 0.3)
    expect_error(invoke("enhance", x, "--batch-size", value, *fast), "--batch-size")


def test_cli_batch_size_needs_batched_algorithm(tmp_path, invoke, fast, expect_error):
    x = write_wav(tmp_path / "a.wav", 0.3)
    expect_error(invoke("enhance", x, "--algorithm", "mcem", "--batch-size", 2, *fast),
                 "--batch-size", "mcem", "no batched path")
    assert not (tmp_path / "a_enhanced.wav").exists()
