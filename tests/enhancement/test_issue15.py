"""Suppression limit, noise-floor NMF start, posterior-mean Wiener filter (issue 15)."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_wav

from speechvae.enhancement import VEMConfig, available_algorithms, converged, get_algorithm, vem
from speechvae.enhancement.em import EStep, InferenceStep, run_em
from speechvae.enhancement.model import (
    EMConfig,
    attenuation_floor,
    init_nmf,
    noise_floor,
    wiener_gain,
)
from speechvae.priors import VAE, VAEConfig
from speechvae.stft import stft


class _FixedSpeech(InferenceStep):
    """A step with a fixed, strongly varying speech variance: the raw Wiener gain then spans
    several orders of magnitude, far below any suppression limit on some bins."""

    config_class = VEMConfig
    batched = True

    def start(self, nmf):
        f = torch.arange(self.power.shape[1], dtype=self.power.dtype)[:, None]
        self.v = self.power * torch.exp(-f / 40.0)
        return nmf

    def e_step(self, nmf):
        return EStep(self.v[None], [0.0] * self.power.shape[0])

    def wiener_gain(self, nmf):
        return wiener_gain(nmf.noise_variance(), [nmf.g * self.v])


def _mixture(seed=0, n=8000):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return stft(x)[None]


@pytest.mark.parametrize("lim", [0.0, 6.0, 20.0])
def test_suppression_limit_bounds_the_gain_exactly(lim):
    prior = VAE(VAEConfig(hidden_dims=(8,), latent_dim=2))
    spec = _mixture()
    n = spec.shape[-1]
    free = run_em(_FixedSpeech, prior, spec, [n], VEMConfig(iterations=3, nmf_rank=2),
                  [torch.Generator().manual_seed(1)])[0]
    held = run_em(_FixedSpeech, prior, spec, [n],
                  VEMConfig(iterations=3, nmf_rank=2, atten_lim_db=lim),
                  [torch.Generator().manual_seed(1)])[0]
    g_free = (free.speech.abs() / spec.abs()).double()
    g_held = (held.speech.abs() / spec.abs()).double()
    floor = 10 ** (-lim / 20)
    assert attenuation_floor(lim) == pytest.approx(floor)
    assert float(g_free.min()) < floor * 0.5  # the limit is active somewhere
    # the limited gain is exactly max(gain, floor): never below, unchanged above
    torch.testing.assert_close(g_held, g_free.clamp_min(floor), rtol=1e-5, atol=1e-6)
    assert float(g_held.min()) == pytest.approx(floor, rel=1e-5)
    # the largest attenuation applied is the limit, in dB
    assert -20 * math.log10(float(g_held.min())) == pytest.approx(lim, abs=1e-4)
    torch.testing.assert_close(held.speech + held.noise, spec)


def test_suppression_limit_is_a_setting_of_every_algorithm():
    assert attenuation_floor(None) == 0.0
    for name in available_algorithms():
        cls = get_algorithm(name).config_class
        assert cls().atten_lim_db is None  # off by default
        assert cls(atten_lim_db=12.0).atten_lim_db == 12.0
        with pytest.raises(ValueError, match="atten_lim_db"):
            cls(atten_lim_db=-1.0)


def test_suppression_limit_through_vem():
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    spec = _mixture(2)
    res = vem(prior, spec, VEMConfig(iterations=2, atten_lim_db=10.0),
              torch.Generator().manual_seed(0))
    gain = res.speech.abs() / spec.abs()
    assert float(gain.min()) >= 10 ** (-0.5) * (1 - 1e-5)


def test_noise_floor_start_has_the_noise_spectral_shape():
    gen = torch.Generator().manual_seed(0)
    f, t = 257, 400
    psd = torch.exp(-torch.arange(f, dtype=torch.float64) / 30.0) + 1e-3  # coloured noise
    power = psd[:, None] * torch.distributions.Exponential(1.0).sample((f, t)).double()
    # speech-like bursts on a quarter of the frames, 100 times the noise level
    power[:, ::4] += 100 * torch.rand((f, t // 4), generator=gen, dtype=torch.float64)
    power = power[None]
    q = noise_floor(power, 0.2)
    assert q.shape == (1, f, 1)
    # the bursts lie above it: it is the 0.2 / 0.75 quantile of the noise-only frames, and
    # the p quantile of an exponential variable is -log(1 - p) times its mean
    ratio = (q[0, :, 0] / psd).log()
    assert float(ratio.std()) < 0.25
    assert float(ratio.mean().exp()) == pytest.approx(-math.log(1 - 0.2 / 0.75), rel=0.1)
    floor = init_nmf(power, 4, torch.Generator().manual_seed(1), method="floor")
    flat = init_nmf(power, 4, torch.Generator().manual_seed(1))
    for nmf in (floor, flat):  # both start at the mixture's mean level
        wh = nmf.noise_variance()
        assert float(wh.mean()) == pytest.approx(float(power.mean()), rel=1e-6)
    shape = lambda nmf: (nmf.noise_variance()[0].mean(-1) / psd).log()
    assert float(shape(floor).std()) < 0.5 < float(shape(flat).std())
    with pytest.raises(ValueError, match="method"):
        init_nmf(power, 4, method="median")


def test_noise_floor_ignores_padded_frames():
    gen = torch.Generator().manual_seed(3)
    power = torch.rand((2, 9, 30), generator=gen)
    mask = torch.ones(2, 30)
    mask[1, 20:] = 0
    padded = power.clone()
    padded[1, :, 20:] = 1e6
    q = noise_floor(padded, 0.3, mask)
    torch.testing.assert_close(q[1], noise_floor(power[1:, :, :20], 0.3)[0])
    torch.testing.assert_close(q[0], noise_floor(power[:1], 0.3)[0])
    # the quantile of torch.quantile (linear interpolation)
    torch.testing.assert_close(noise_floor(power, 0.3),
                               torch.quantile(power, 0.3, dim=-1, keepdim=True))
    ramp = torch.arange(11.0).reshape(1, 1, 11)  # 0..10: the 0.25 quantile is 2.5
    assert float(noise_floor(ramp, 0.25)) == pytest.approx(2.5)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="noise_init"):
        EMConfig(noise_init="quantile")
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="floor_quantile"):
            EMConfig(floor_quantile=bad)
    with pytest.raises(ValueError, match="wiener"):
        VEMConfig(wiener="median")


def test_posterior_mean_wiener_filter_decodes_the_encoder_mean():
    # lr = 0 leaves the encoder as trained: the posterior mean is then the prior's own
    # encoder mean on the mixture's power spectrogram, decoded once
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    spec = _mixture(4)
    cfg = VEMConfig(iterations=3, lr=0.0, wiener="mean")
    a = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    power = spec.abs().square()
    with torch.no_grad():
        v = prior.decode(prior.encode(power).mean)
    expect = wiener_gain(a.nmf.noise_variance(), [a.nmf.g * v]) * spec
    torch.testing.assert_close(a.speech, expect, rtol=1e-4, atol=1e-6)
    # and it draws no random numbers after the EM: the same as a run whose final filter
    # is any other deterministic function of the same fitted model
    b = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.speech, b.speech)


def test_vem_stops_where_its_elbo_flattens_and_equals_a_run_capped_there():
    # a stationary noise mixture: the negative ELBO falls, then flattens; the per-file rule
    # stops at the first iteration where the two last windows agree within tol
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    spec = _mixture(5, n=16000)
    cfg = VEMConfig(iterations=300, tol=5e-3, tol_window=5, lr=1e-2)
    res = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    obj = res.objective
    assert 2 * cfg.tol_window <= res.iterations < cfg.iterations
    assert len(obj) == res.iterations
    stop = next(i + 1 for i in range(len(obj))
                if converged(obj[:i + 1], cfg.tol, cfg.tol_window))
    assert stop == res.iterations  # the first iteration where the rule holds
    assert obj[-1] < obj[0]  # it went down before flattening
    # stopping changes nothing but the count: the same as a run capped at that iteration
    capped = vem(prior, spec, VEMConfig(iterations=res.iterations, tol=0.0, lr=1e-2),
                 torch.Generator().manual_seed(0))
    assert capped.objective == pytest.approx(obj)
    torch.testing.assert_close(capped.speech, res.speech)


@pytest.mark.parametrize("wiener", ["samples", "mean"])
def test_both_wiener_estimates_batch_exactly(wiener):
    # the batched runner equals one file at a time for either final Wiener estimate
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    a, b = _mixture(6, n=8000)[0], _mixture(7, n=5000)[0]
    n = [a.shape[-1], b.shape[-1]]
    batch = torch.zeros((2, a.shape[0], max(n)), dtype=a.dtype)
    batch[0, :, :n[0]], batch[1, :, :n[1]] = a, b
    cfg = VEMConfig(iterations=4, nmf_rank=2, wiener=wiener, wiener_samples=3,
                    atten_lim_db=30.0, noise_init="floor")
    both = get_algorithm("vem").run_batch(prior, batch, n, cfg,
                                          [torch.Generator().manual_seed(s) for s in (1, 2)])
    for res, x, seed in zip(both, (a, b), (1, 2)):
        alone = vem(prior, x[None], cfg, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(res.speech, alone.speech, rtol=1e-4, atol=1e-5)


def test_cli_atten_lim_db(tmp_path, invoke, fast, expect_error):
    src = write_wav(tmp_path / "in.wav", 1.0, subtype="FLOAT")
    x, _ = sf.read(str(src), dtype="float32")
    outs = {}
    for name, extra in (("free", []), ("zero", ["--atten-lim-db", 0]),
                        ("six", ["--atten-lim-db", 6])):
        out = tmp_path / f"{name}.wav"
        result = invoke("enhance", src, "-o", out, *fast, *extra)
        assert result.exit_code == 0, result.output
        outs[name], _ = sf.read(str(out), dtype="float32")
    # a 0-dB limit attenuates nothing: the output is the input (STFT round trip)
    assert np.max(np.abs(outs["zero"] - x)) < 1e-3 * np.max(np.abs(x))
    assert np.max(np.abs(outs["free"] - x)) > 1e-2 * np.max(np.abs(x))
    # a 6-dB limit keeps more of the input than no limit, less than a 0-dB limit
    energy = {k: float(np.sum(v ** 2)) for k, v in outs.items()}
    assert energy["free"] < energy["six"] < energy["zero"] * 1.001
    expect_error(invoke("enhance", src, "-o", tmp_path / "bad.wav", *fast,
                        "--atten-lim-db", -3), "atten-lim-db")
