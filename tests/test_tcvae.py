"""The temporal-convolutional VAE prior (TCVAE): the prior contract, padding invariance, the
decoder's receptive field, the warm start from a VAE, a tiny training, every inference
algorithm end to end and the recipes. Needs nothing outside the repository."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import speech_like

import speechvae
from speechvae.enhancement import BandoConfig, MALAConfig, MCEMConfig, VEMConfig, vem
from speechvae.priors import (
    TCVAE,
    VAE,
    Posterior,
    TCVAEConfig,
    VAEConfig,
    available_priors,
    get_prior_class,
    load_checkpoint,
)
from speechvae.stft import stft
from speechvae.training import SpectrogramCache, TrainConfig, train_prior

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
B, T = 2, 12
SMALL = TCVAEConfig(latent_dim=3, hidden_dim=8, encoder_dilations=(1, 2),
                    decoder_dilations=(1, 2), kernel_size=3)
LAYER_NORM = TCVAEConfig(latent_dim=3, hidden_dim=8, encoder_dilations=(1, 2),
                         decoder_dilations=(1, 2), norm="layer", activation="tanh")


def _build(config=SMALL, seed=0, dtype=torch.float32, residual=0.3):
    """A TCVAE whose residual blocks are not the identity (their zero-initialised output
    weights drawn with standard deviation ``residual``), so that frames really mix."""
    torch.manual_seed(seed)
    prior = TCVAE(config).to(dtype)
    with torch.no_grad():
        for name, p in prior.named_parameters():
            if ".out." in name:
                p.normal_(0.0, residual)
    return prior.eval()


def _power(batch=B, frames=T, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn((batch, 513, frames), generator=g, dtype=dtype)) * 1e-2


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- the prior contract ------------------------------------------------------------------------

def test_registered():
    assert "tcvae" in available_priors() and get_prior_class("tcvae") is TCVAE
    assert TCVAE.name == "tcvae" and not TCVAE.frame_factorised
    # the default model is of the intended size: 0.5 to 1.5 M parameters
    n = sum(p.numel() for p in TCVAE().parameters())
    assert 500_000 <= n <= 1_500_000
    assert TCVAEConfig().receptive_field() == 31 and SMALL.receptive_field("encoder") == 7


@pytest.mark.parametrize("config", [SMALL, TCVAEConfig(latent_dim=3, hidden_dim=8,
                                                       activation="gated", norm="layer")])
def test_shapes(config):
    prior = _build(config)
    lat = prior.latent_dim
    power = _power()
    post = prior.encode(power)
    assert isinstance(post, Posterior) and post.mean.shape == post.logvar.shape == (B, lat, T)
    z, q = prior.sample_posterior(power, _gen())
    assert z.shape == (B, lat, T) and q.mean.shape == (B, lat, T)
    zs, qs = prior.sample_posterior(power, _gen(), num_samples=4)
    assert zs.shape == (4, B, lat, T) and qs.mean.shape == (B, lat, T)  # shared by the draws
    v = prior.decode(zs)
    assert v.shape == (4, B, 513, T) and torch.all(v > 0) and torch.all(torch.isfinite(v))
    # decoding several draws at once equals decoding each
    torch.testing.assert_close(v[2], prior.decode(zs[2]), rtol=1e-5, atol=0)
    assert prior.kl(qs, zs).shape == (B, T)
    assert prior.log_prior(zs).shape == (4, B, T)
    assert prior.sample_latent(T, batch=B, generator=_gen()).shape == (B, lat, T)
    enc = list(prior.encoder_parameters())
    ids = {id(p) for p in prior.parameters()}
    assert enc and all(id(p) in ids for p in enc) and len(enc) < len(ids)


def test_sampling_is_seeded_and_noise_scale_zero_is_the_mean():
    prior = _build()
    power = _power()
    a, q = prior.sample_posterior(power, _gen(3), num_samples=2)
    b, _ = prior.sample_posterior(power, _gen(3), num_samples=2)
    c, _ = prior.sample_posterior(power, _gen(4), num_samples=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # z = mean + exp(logvar / 2) * eps with eps drawn as the base class draws it
    eps = torch.randn((2, B, prior.latent_dim, T), generator=_gen(3))
    torch.testing.assert_close(a, q.mean + torch.exp(0.5 * q.logvar) * eps)
    z0, q0 = prior.sample_posterior(power, _gen(), noise_scale=0.0)
    assert torch.equal(z0, prior.encode(power).mean) and torch.equal(q0.mean, z0)
    with pytest.raises(ValueError, match="noise_scale"):
        prior.sample_posterior(power, noise_scale=-1.0)


def test_kl_is_the_analytic_kl_to_the_standard_normal():
    prior = _build()
    z, q = prior.sample_posterior(_power(), _gen(), num_samples=8)
    kl = prior.kl(q, z)
    assert torch.all(kl >= 0)
    ref = 0.5 * (q.mean.square() + q.logvar.exp() - q.logvar - 1).sum(1)
    torch.testing.assert_close(kl, ref)
    torch.testing.assert_close(prior.log_prior(z), -0.5 * z.square().sum(-2))


def test_checkpoint_round_trip(tmp_path):
    prior = _build(seed=1)
    loaded = load_checkpoint(prior.save(tmp_path / "p.pt", {"note": "x"}))
    assert type(loaded) is TCVAE and loaded.config == prior.config
    assert loaded.metadata == {"note": "x"}
    power = _power()
    with torch.no_grad():
        for a, b in zip(prior.sample_posterior(power, _gen(), 3),
                        loaded.sample_posterior(power, _gen(), 3)):
            a, b = (a, b) if isinstance(a, torch.Tensor) else (a.logvar, b.logvar)
            assert torch.equal(a, b)
        z = prior.sample_latent(T, B, _gen())
        assert torch.equal(prior.decode(z), loaded.decode(z))
    # the default (shipped-size) model too, through the restricted loader
    big = TCVAE()
    again = load_checkpoint(big.save(tmp_path / "big.pt"))
    assert all(torch.equal(x, y) for x, y in zip(big.state_dict().values(),
                                                 again.state_dict().values()))


def test_neg_elbo_with_mask_ignores_padded_frames():
    prior = _build().train()
    power = _power(batch=2, frames=10)
    mask = torch.tensor([[1.0] * 10, [1.0] * 6 + [0.0] * 4])
    garbage = power.clone()
    garbage[1, :, 6:] = 1e4
    a = prior.neg_elbo(power, beta=0.5, generator=_gen(), mask=mask)
    b = prior.neg_elbo(garbage, beta=0.5, generator=_gen(), mask=mask)
    for k in ("loss", "is", "kl"):
        assert torch.isfinite(a[k])
        torch.testing.assert_close(a[k], b[k])
    a["loss"].backward()  # every parameter takes part in the loss
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prior.parameters())
    # without the mask the padded frames reach the valid ones (the model mixes frames)
    c = prior.neg_elbo(garbage, beta=0.5, generator=_gen())
    assert not torch.allclose(a["loss"], c["loss"])


# -- padding and time dependence -----------------------------------------------------------------

@pytest.mark.parametrize("config", [SMALL, LAYER_NORM], ids=["plain", "layer-norm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padded_sequence_equals_the_sequence_alone(dtype, config):
    prior = _build(config, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    power = _power(batch=3, frames=14, dtype=dtype)
    lengths = [14, 9, 1]
    mask = (torch.arange(14)[None] < torch.tensor(lengths)[:, None]).to(dtype)
    garbage = power.clone()
    for b, n in enumerate(lengths):
        garbage[b, :, n:] = 1e4
    with torch.no_grad():
        q = prior.encode(garbage, mask=mask)
        z = torch.randn((2, 3, prior.latent_dim, 14), generator=_gen(), dtype=dtype)
        z_garbage = torch.where(mask[:, None].bool(), z, torch.full_like(z, 50.0))
        v = prior.decode(z_garbage, mask=mask)
        for b, n in enumerate(lengths):
            alone = prior.encode(power[b:b + 1, :, :n])
            torch.testing.assert_close(q.mean[b, :, :n], alone.mean[0], rtol=tol, atol=tol)
            torch.testing.assert_close(q.logvar[b, :, :n], alone.logvar[0], rtol=tol, atol=tol)
            torch.testing.assert_close(v[:, b, :, :n], prior.decode(z[:, b:b + 1, :, :n])[:, 0],
                                       rtol=tol, atol=0)
        # sample_posterior passes the mask to the encoder
        _, qs = prior.sample_posterior(garbage, _gen(), mask=mask)
        torch.testing.assert_close(qs.mean * mask[:, None], q.mean * mask[:, None])
        # the mask is what protects the valid frames: without it the last ones change
        unmasked = prior.encode(garbage)
        assert not torch.allclose(unmasked.mean[1, :, :9], q.mean[1, :, :9])
        assert torch.allclose(unmasked.mean[1, :, :9 - 3], q.mean[1, :, :9 - 3],
                              rtol=tol, atol=tol)  # beyond the receptive field: untouched


@pytest.mark.parametrize("config", [SMALL, LAYER_NORM], ids=["plain", "layer-norm"])
def test_decoder_sees_exactly_its_receptive_field(config):
    prior = _build(config)
    n, k = 20, 9
    z = torch.randn(1, prior.latent_dim, n, generator=_gen())
    moved = z.clone()
    moved[..., k] += 1.0
    with torch.no_grad():
        changed = (prior.decode(z) != prior.decode(moved)).any(1)[0]
    half = (SMALL.receptive_field() - 1) // 2  # 3 frames either side
    assert changed.nonzero().flatten().tolist() == list(range(k - half, k + half + 1))
    # the encoder likewise, seen from the spectrogram
    power = _power(batch=1, frames=n)
    other = power.clone()
    other[..., k] *= 10.0
    with torch.no_grad():
        changed = (prior.encode(power).mean != prior.encode(other).mean).any(1)[0]
    assert changed.nonzero().flatten().tolist() == list(range(k - half, k + half + 1))


def test_bad_shapes_and_configs_are_refused():
    prior = _build()
    with pytest.raises(ValueError, match="power must have shape"):
        prior.encode(torch.ones(1, 257, 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        prior.encode(_power(), mask=torch.ones(B, T + 1))
    with pytest.raises(ValueError, match="mask must have shape"):
        prior.decode(torch.zeros(4, B, 3, T), mask=torch.ones(3, T))
    with pytest.raises(ValueError, match="z must have shape"):
        prior.decode(torch.zeros(B, 5, T))
    with pytest.raises(ValueError, match="odd"):
        TCVAEConfig(kernel_size=4)
    with pytest.raises(ValueError, match="activation"):
        TCVAEConfig(activation="relu6")
    with pytest.raises(ValueError, match="norm"):
        TCVAEConfig(norm="batch")
    with pytest.raises(ValueError, match="dilations"):
        TCVAEConfig(decoder_dilations=(1, 0))
    with pytest.raises(ValueError, match="encoder_input"):
        TCVAEConfig(encoder_input="mel")
    with pytest.raises(ValueError, match="n_freq"):
        TCVAE(TCVAEConfig(n_freq=257))


# -- warm start from the frame-wise VAE ------------------------------------------------------------

def test_from_vae_starts_as_the_vae():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4)).eval()
    prior = TCVAE.from_vae(vae).eval()
    assert prior.config.hidden_dim == 16 and prior.config.latent_dim == 4
    power = _power()
    with torch.no_grad():
        a, b = prior.encode(power), vae.encode(power)
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.logvar, b.logvar, rtol=1e-5, atol=1e-5)
        z = torch.randn(3, B, 4, T, generator=_gen())
        torch.testing.assert_close(prior.decode(z), vae.decode(z), rtol=1e-5, atol=0)
    # its residual blocks are free to learn: a training step moves them off the identity
    prior.train()
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        prior.neg_elbo(power, generator=_gen())["loss"].backward()
        opt.step()
    assert prior.decoder_stack.blocks[0].out.weight.abs().max() > 0
    with pytest.raises(ValueError, match="hidden_dim"):
        TCVAE.from_vae(vae, TCVAEConfig(latent_dim=4, hidden_dim=32))
    with pytest.raises(ValueError, match="one hidden layer"):
        TCVAE.from_vae(VAE(VAEConfig(hidden_dims=(16, 8), latent_dim=4)))


# -- training ----------------------------------------------------------------------------------

def _speech_power(n_files=4, seconds=1.0):
    specs = [stft(torch.from_numpy(speech_like(seconds, seed=s, f0=110 + 20 * s)))
             for s in range(n_files)]
    return torch.stack([s.abs().square() for s in specs])  # (files, 513, frames)


def test_a_tiny_tcvae_trains():
    torch.manual_seed(0)
    prior = TCVAE(TCVAEConfig(latent_dim=4, hidden_dim=16, encoder_dilations=(1, 2, 4),
                              decoder_dilations=(1, 2, 4))).train()
    power = _speech_power()[..., :48]
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = prior.neg_elbo(power, generator=_gen(len(losses)))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses


def _random_cache(lengths, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.exp(rng.standard_normal((offsets[-1], 513))).astype(np.float32)
    return SpectrogramCache(frames, offsets, [f"f{i}" for i in range(len(lengths))])


def _recipe(path):
    conf = yaml.safe_load(path.read_text())
    cls = get_prior_class(conf["prior"]["name"])
    pconf = {k: tuple(v) if isinstance(v, list) else v
             for k, v in conf["prior"].get("config", {}).items()}
    return cls, cls.config_class(**pconf), TrainConfig(**conf["train"])


def test_recipe_trains_the_default_model():
    cls, config, train = _recipe(RECIPES / "tcvae" / "conf.yaml")
    assert cls is TCVAE and config == TCVAEConfig()
    assert train.sequence_length >= TCVAEConfig().receptive_field() and train.kl_warmup_epochs > 0
    assert train.lr_decay_patience is not None


def test_smoke_recipe_trains_one_epoch_and_resumes(tmp_path):
    cls, config, train = _recipe(RECIPES / "tcvae" / "conf_smoke.yaml")
    torch.manual_seed(0)
    data = _random_cache([40, 30, 25], 0), _random_cache([22, 12], 1)
    summary = train_prior(cls(config), *data, train, tmp_path / "run", progress=False)
    assert summary["epochs_run"] == 1 and np.isfinite(summary["best_val_loss"])
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert isinstance(best, TCVAE) and best.config == config
    torch.manual_seed(1)
    more = TrainConfig(**{**train.__dict__, "epochs": 2})
    assert train_prior(cls(config), *data, more, tmp_path / "run",
                       progress=False)["epochs_run"] == 2


# -- every inference algorithm -----------------------------------------------------------------

SR = 16000
ALGORITHMS = {
    "vem": VEMConfig(iterations=2, nmf_rank=2, samples=2, wiener_samples=2),
    "mcem": MCEMConfig(iterations=2, nmf_rank=2, burnin=1, samples=2, final_burnin=1,
                       final_samples=2, block_frames=20),
    "mala": MALAConfig(iterations=2, nmf_rank=2, chains=2, burnin=1, final_burnin=1,
                       final_samples=1),
    "bando": BandoConfig(iterations=3, samples=2, nmf_rank=2, init_iterations=1),
}


@pytest.fixture(scope="module")
def noisy():
    x = speech_like(1.0, seed=4)
    return x + 0.05 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_runs(algorithm, noisy):
    prior = _build(TCVAEConfig(latent_dim=3, hidden_dim=8), residual=0.1)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    res = speechvae.enhance(noisy, SR, prior=prior, algorithm=algorithm,
                            config=ALGORITHMS[algorithm], seed=1)
    assert res.waveform.shape == noisy.shape and np.all(np.isfinite(res.waveform))
    assert np.all(np.isfinite(res.noise))
    np.testing.assert_allclose(res.waveform + res.noise, noisy, atol=1e-4)
    again = speechvae.enhance(noisy, SR, prior=prior, algorithm=algorithm,
                              config=ALGORITHMS[algorithm], seed=1)
    np.testing.assert_array_equal(res.waveform, again.waveform)
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())


def test_vem_finetunes_the_encoder(noisy):
    prior = _build(TCVAEConfig(latent_dim=3, hidden_dim=8), residual=0.1)
    spec = stft(torch.from_numpy(noisy / np.abs(noisy).max()))[None]
    res = vem(prior, spec, VEMConfig(iterations=6, nmf_rank=2, lr=0.05, wiener_samples=2),
              _gen())
    assert np.all(np.isfinite(res.objective)) and res.objective[-1] < res.objective[0]
    frozen = vem(prior, spec, VEMConfig(iterations=6, nmf_rank=2, lr=0.0, wiener_samples=2),
                 _gen())
    assert not torch.equal(res.speech, frozen.speech)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    prior = _build(dtype=torch.float64)
    power = _power(batch=2, frames=20, dtype=torch.float64)
    mask = torch.tensor([[1.0] * 20, [1.0] * 13 + [0.0] * 7], dtype=torch.float64)
    with torch.no_grad():
        q = prior.encode(power, mask=mask)
        v = prior.decode(q.mean, mask=mask)
        gpu = prior.to("cuda")
        qg = gpu.encode(power.cuda(), mask=mask.cuda())
        vg = gpu.decode(qg.mean, mask=mask.cuda())
    torch.testing.assert_close(qg.mean.cpu(), q.mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(vg.cpu(), v, rtol=1e-9, atol=0)
