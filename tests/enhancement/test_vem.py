"""VEM inference and the enhancement engine (tiny random prior, synthetic mixtures)."""
import numpy as np
import pytest
import torch

from speechvae.audio import AudioError
from speechvae.enhancement import VEMConfig, enhance, enhance_file, enhance_segment, vem
from speechvae.enhancement.engine import _rechunk
from speechvae.priors import VAE, VAEConfig
from speechvae.stft import istft, stft

SR = 16000
FAST = VEMConfig(iterations=4, nmf_rank=3, wiener_samples=4)


def _tiny_vae(seed=0):
    torch.manual_seed(seed)
    prior = VAE(VAEConfig(hidden_dims=(32,), latent_dim=4))
    return prior.eval()


@pytest.fixture(scope="module")
def prior():
    return _tiny_vae()


def _mixture(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    speech = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    speech *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    noise = 0.3 * rng.standard_normal(t.size)
    x = speech + noise
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def _spec(x):
    return stft(torch.from_numpy(x))[None]


def test_vem_shapes_and_result(prior):
    spec = _spec(_mixture())
    res = vem(prior, spec, FAST, torch.Generator().manual_seed(0))
    assert res.speech.shape == spec.shape and res.noise.shape == spec.shape
    assert res.speech.is_complex() and res.noise.is_complex()
    assert res.iterations == FAST.iterations
    assert len(res.objective) == FAST.iterations
    assert all(np.isfinite(res.objective))
    assert res.nmf.W.shape == (1, 513, FAST.nmf_rank)
    assert res.nmf.H.shape == (1, FAST.nmf_rank, spec.shape[-1])
    assert res.nmf.g.shape == (1, 1, spec.shape[-1])
    assert torch.all(torch.isfinite(res.speech.abs()))


def test_wiener_estimates_sum_to_mixture(prior):
    spec = _spec(_mixture())
    res = vem(prior, spec, FAST, torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.speech + res.noise, spec, rtol=1e-5, atol=1e-6)
    # each estimate is the mixture times a real gain in [0, 1]
    gain = (res.speech.abs() / spec.abs().clamp_min(1e-12))
    assert torch.all(gain <= 1 + 1e-5) and torch.all(gain >= 0)
    phase_diff = (res.speech * spec.conj()).angle()[spec.abs() > 1e-6]
    nz = res.speech.abs()[spec.abs() > 1e-6] > 1e-9
    assert torch.all(phase_diff[nz].abs() < 1e-3)


def test_vem_same_seed_same_output_other_seed_differs(prior):
    spec = _spec(_mixture())
    a = vem(prior, spec, FAST, torch.Generator().manual_seed(7))
    b = vem(prior, spec, FAST, torch.Generator().manual_seed(7))
    c = vem(prior, spec, FAST, torch.Generator().manual_seed(8))
    assert torch.equal(a.speech, b.speech) and torch.equal(a.noise, b.noise)
    assert a.objective == b.objective
    assert not torch.equal(a.speech, c.speech)


def test_vem_leaves_prior_unchanged():
    prior = _tiny_vae(seed=3)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    flags = [p.requires_grad for p in prior.parameters()]
    vem(prior, _spec(_mixture()), VEMConfig(iterations=3, nmf_rank=2, wiener_samples=2,
                                            lr=0.1), torch.Generator().manual_seed(0))
    after = prior.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in prior.parameters()] == flags
    assert all(p.grad is None for p in prior.parameters())
    assert not prior.training


def test_vem_objective_decreases_and_encoder_is_finetuned(prior):
    spec = _spec(_mixture())
    cfg = VEMConfig(iterations=6, nmf_rank=3, lr=0.05, wiener_samples=2)
    res = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    assert res.objective[-1] < res.objective[0]
    # the E-step really optimises the (copied) encoder: lr=0 gives another result
    frozen = vem(prior, spec, VEMConfig(iterations=6, nmf_rank=3, lr=0.0, wiener_samples=2),
                 torch.Generator().manual_seed(0))
    assert not torch.equal(res.speech, frozen.speech)


def test_vem_rejects_wrong_shapes(prior):
    spec = _spec(_mixture())
    with pytest.raises(ValueError, match="shape"):
        vem(prior, spec[0], FAST)
    with pytest.raises(ValueError, match="shape"):
        vem(prior, torch.cat([spec, spec]), FAST)
    with pytest.raises(ValueError, match="frequency"):
        vem(prior, spec[:, :257], FAST)


def test_vem_tolerance_stops_early(prior):
    spec = _spec(_mixture())
    cfg = VEMConfig(iterations=50, nmf_rank=2, wiener_samples=2, tol=1.0, tol_window=2)
    res = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    assert res.iterations == 4 and len(res.objective) == 4


class _SilentPrior(VAE):
    """A prior whose speech variance is negligible: everything is explained as noise."""

    def decode(self, z):
        v = super().decode(z)
        return v * 1e-12 / v.detach()  # 1e-12 everywhere, still a function of z


def test_vem_with_negligible_speech_variance_gives_near_zero_speech():
    torch.manual_seed(0)
    prior = _SilentPrior(VAEConfig(hidden_dims=(32,), latent_dim=4)).eval()
    spec = _spec(_mixture())
    res = vem(prior, spec, FAST, torch.Generator().manual_seed(0))
    ratio = res.speech.abs().square().sum() / spec.abs().square().sum()
    assert ratio < 1e-4
    torch.testing.assert_close(res.noise, spec, rtol=1e-3, atol=1e-4)


# -- engine --------------------------------------------------------------------------------

def test_enhance_short_signal_equals_enhance_segment(prior):
    x = _mixture(1.0, seed=2)
    res = enhance(x, SR, prior=prior, config=FAST, seed=11, segment_s=2.0, overlap_s=0.25)
    s, b, it = enhance_segment(prior, x, FAST, torch.Generator().manual_seed(11))
    assert res.sample_rate == SR
    assert res.waveform.dtype == np.float32 and res.waveform.shape == x.shape
    np.testing.assert_array_equal(res.waveform, s)
    np.testing.assert_array_equal(res.noise, b)
    assert res.iterations == [it] == [FAST.iterations]


def test_enhance_segment_keeps_level_and_sums_to_input(prior):
    x = 0.01 * _mixture(1.0, seed=3)  # quiet input: output must stay at the input's level
    s, b, _ = enhance_segment(prior, x, FAST, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(s + b, x, atol=1e-5 * np.max(np.abs(x)) + 1e-7)
    z, zb, it = enhance_segment(prior, np.zeros(4000, np.float32), FAST,
                                torch.Generator().manual_seed(0))
    assert it == 0 and not np.any(z) and not np.any(zb)


@pytest.mark.parametrize("seconds", [3.3, 3.0, 2.5])  # 2.5: ends on a boundary
def test_enhance_long_signal_segments(prior, seconds):
    x = _mixture(seconds, seed=4)
    res = enhance(x, SR, prior=prior, config=FAST, seed=0, segment_s=1.0, overlap_s=0.25)
    assert res.waveform.shape == x.shape and res.noise.shape == x.shape
    assert np.all(np.isfinite(res.waveform)) and np.all(np.isfinite(res.noise))
    assert len(res.iterations) >= 3
    # Wiener filtering is conservative and the cross-fade linear: speech + noise = input
    np.testing.assert_allclose(res.waveform + res.noise, x, atol=1e-4)
    # the first segment (up to the first cross-fade) is enhance_segment of that segment
    s, _, _ = enhance_segment(prior, x[:SR], FAST, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(res.waveform[:SR - SR // 4], s[:SR - SR // 4])


def test_enhance_same_seed_is_reproducible(prior):
    x = _mixture(2.2, seed=5)
    a = enhance(x, SR, prior=prior, config=FAST, seed=1, segment_s=1.0, overlap_s=0.25)
    b = enhance(x, SR, prior=prior, config=FAST, seed=1, segment_s=1.0, overlap_s=0.25)
    c = enhance(x, SR, prior=prior, config=FAST, seed=2, segment_s=1.0, overlap_s=0.25)
    np.testing.assert_array_equal(a.waveform, b.waveform)
    assert not np.array_equal(a.waveform, c.waveform)


def test_enhance_accepts_checkpoint_path(prior, tmp_path):
    path = prior.save(tmp_path / "tiny.pt")
    x = _mixture(1.0, seed=8)
    a = enhance(x, SR, prior=str(path), config=FAST, seed=3)
    b = enhance(x, SR, prior=prior, config=FAST, seed=3)
    np.testing.assert_array_equal(a.waveform, b.waveform)


def test_enhance_file_matches_enhance(prior, tmp_path):
    import soundfile as sf

    x = _mixture(2.2, seed=9)
    src, dst, nse = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "noise.flac"
    sf.write(str(src), x, SR, subtype="FLOAT")
    info = enhance_file(src, dst, prior=prior, config=FAST, seed=4, noise_path=nse,
                        segment_s=1.0, overlap_s=0.25)
    ref = enhance(x, SR, prior=prior, config=FAST, seed=4, segment_s=1.0, overlap_s=0.25)
    y, sr = sf.read(str(dst), dtype="float32")
    n, _ = sf.read(str(nse), dtype="float32")
    assert sr == SR and y.shape == x.shape and n.shape == x.shape
    assert info["duration_s"] == pytest.approx(x.size / SR)
    q = 1 / 32768 + 1e-6  # 16-bit PCM output
    np.testing.assert_allclose(y, np.clip(ref.waveform, -1, 1), atol=q)
    np.testing.assert_allclose(n, np.clip(ref.noise, -1, 1), atol=q)
    with pytest.raises(FileExistsError):
        enhance_file(src, dst, prior=prior, config=FAST)
    with pytest.raises(AudioError, match="overwrite the input"):
        enhance_file(src, src, prior=prior, config=FAST, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "noise.flac", "out.wav"]


def test_enhance_keeps_the_input_rate_unless_asked(prior):
    x = _mixture(1.0)
    res = enhance(x, 8000, prior=prior, config=FAST)
    assert res.sample_rate == 8000 and res.waveform.size == x.size
    res16 = enhance(x, 8000, prior=prior, config=FAST, output_rate=SR)
    assert res16.sample_rate == SR and res16.waveform.size == 2 * x.size


def test_enhance_input_checks(prior):
    with pytest.raises(AudioError, match="shorter than one STFT frame"):
        enhance(np.full(500, 0.1, np.float32), SR, prior=prior, config=FAST)
    with pytest.raises(AudioError, match="silent"):
        enhance(np.zeros(SR, np.float32), SR, prior=prior, config=FAST)
    with pytest.raises(ValueError, match="overlap"):
        enhance(_mixture(), SR, prior=prior, config=FAST, segment_s=1.0, overlap_s=1.0)


def test_enhance_without_overlap(prior):
    x = _mixture(2.0 + 100 / SR, seed=6)
    res = enhance(x, SR, prior=prior, config=FAST, segment_s=1.0, overlap_s=0.0)
    assert res.waveform.shape == x.shape


def test_rechunk_segments_cover_the_signal():
    x = np.arange(5280, dtype=np.float32)
    blocks = [x[i:i + 700] for i in range(0, x.size, 700)]
    segs = list(_rechunk(blocks, 1000, 250))
    assert all(s.size == 1000 for s in segs[:-1]) and segs[-1].size >= 250
    # consecutive segments share exactly `overlap` samples and start where expected
    for i, s in enumerate(segs):
        assert s[0] == i * 750
    assert segs[-1][-1] == x[-1]


def test_istft_of_vem_estimates_reconstructs_input(prior):
    x = _mixture(1.0, seed=7)
    spec = _spec(x)
    res = vem(prior, spec, FAST, torch.Generator().manual_seed(0))
    y = istft(res.speech[0] + res.noise[0], x.size)
    np.testing.assert_allclose(y.numpy(), x, atol=1e-5)
