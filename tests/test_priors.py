"""Priors: interface contract (every registered prior), checkpoints, safe loading, registry."""
import os

import pytest
import torch

from speechvae.priors import (
    VAE,
    CheckpointError,
    Posterior,
    Prior,
    VAEConfig,
    available_priors,
    get_prior_class,
    itakura_saito,
    load_checkpoint,
    register_prior,
    safe_torch_load,
    save_prior,
)
from speechvae.priors import base as prior_base
from speechvae.stft import DEFAULT_STFT, STFTConfig

PRIORS = available_priors()
B, T = 2, 7


def _build(name, seed=0):
    cls = get_prior_class(name)
    torch.manual_seed(seed)
    prior = cls(cls.config_class())
    prior.eval()
    return prior


def _power(prior, batch=B, frames=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = prior.stft_config.n_freq
    return torch.exp(torch.randn((batch, f, frames), generator=g)) * 1e-2


def _kl_per_frame(prior, post, generator):
    """Analytic KL where the prior gives one (z=None), else a 64-sample average."""
    try:
        return prior.kl(post)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        z = post.rsample(generator, num_samples=64)
        return torch.stack([prior.kl(post, zi) for zi in z]).mean(0)


def test_vae_is_registered():
    assert "vae" in PRIORS
    assert get_prior_class("vae") is VAE
    assert VAE.name == "vae"


@pytest.mark.parametrize("name", PRIORS)
def test_encode_decode_shapes(name):
    prior = _build(name)
    power = _power(prior)
    post = prior.encode(power)
    assert isinstance(post, Posterior)
    assert post.mean.shape == (B, prior.latent_dim, T)
    assert post.logvar.shape == (B, prior.latent_dim, T)
    z = post.rsample()
    assert z.shape == (B, prior.latent_dim, T)
    v = prior.decode(z)
    assert v.shape == (B, prior.stft_config.n_freq, T)
    assert torch.all(torch.isfinite(v)) and torch.all(v > 0)
    # several samples at once (as VEM uses them)
    zs = post.rsample(torch.Generator().manual_seed(0), num_samples=3)
    assert zs.shape == (3, B, prior.latent_dim, T)
    vs = prior.decode(zs)
    assert vs.shape == (3, B, prior.stft_config.n_freq, T)
    assert torch.all(vs > 0)


@pytest.mark.parametrize("name", PRIORS)
def test_decoded_variance_positive_for_extreme_latents(name):
    prior = _build(name)
    z = torch.linspace(-6, 6, 2 * prior.latent_dim * 5).reshape(2, prior.latent_dim, 5)
    v = prior.decode(z)
    assert torch.all(v > 0) and torch.all(torch.isfinite(v))


@pytest.mark.parametrize("name", PRIORS)
def test_kl_nonnegative_per_frame(name):
    prior = _build(name)
    post = prior.encode(_power(prior))
    kl = _kl_per_frame(prior, post, torch.Generator().manual_seed(1))
    assert kl.shape == (B, T)
    assert torch.all(kl >= -1e-6)


def test_kl_standard_normal_zero_only_at_standard_normal():
    zeros = torch.zeros(1, 4, 3)
    assert torch.equal(Posterior(zeros, zeros).kl_standard_normal(), torch.zeros(1, 3))
    kl = Posterior(zeros + 0.5, zeros).kl_standard_normal()
    torch.testing.assert_close(kl, torch.full((1, 3), 0.5 * 4 * 0.25))


@pytest.mark.parametrize("name", PRIORS)
def test_neg_elbo_finite_and_differentiable(name):
    prior = _build(name)
    prior.train()
    out = prior.neg_elbo(_power(prior), beta=0.5, generator=torch.Generator().manual_seed(0))
    assert set(out) >= {"loss", "is", "kl"}
    for k in ("loss", "is", "kl"):
        assert out[k].dim() == 0 and torch.isfinite(out[k])
    torch.testing.assert_close(out["loss"], out["is"] + 0.5 * out["kl"])
    out["loss"].backward()
    grads = [p.grad for p in prior.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.all(torch.isfinite(g)) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_vae_neg_elbo_mask_ignores_padded_frames():
    # the frame-wise VAE's loss depends only on the frames the mask keeps
    prior = _build("vae")
    power = _power(prior, batch=1, frames=6)
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0]])
    garbage = power.clone()
    garbage[..., 4:] = 1e6
    a = prior.neg_elbo(power, mask=mask, generator=torch.Generator().manual_seed(0))
    b = prior.neg_elbo(garbage, mask=mask, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a["loss"], b["loss"])


def test_neg_elbo_same_generator_same_loss():
    prior = _build("vae")
    p = _power(prior)
    a = prior.neg_elbo(p, generator=torch.Generator().manual_seed(3))["loss"]
    b = prior.neg_elbo(p, generator=torch.Generator().manual_seed(3))["loss"]
    assert torch.equal(a, b)


def test_itakura_saito():
    v = torch.tensor([0.5, 1.0, 3.0, 1e-3], dtype=torch.float64)
    assert torch.allclose(itakura_saito(v, v), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    for factor in (0.5, 2.0, 10.0):
        d = itakura_saito(v * factor, v)
        assert torch.all(d > 0)
        torch.testing.assert_close(d, torch.full_like(v, factor - torch.log(
            torch.tensor(factor, dtype=torch.float64)).item() - 1))
    # scale invariance of the IS divergence
    torch.testing.assert_close(itakura_saito(7 * v, 7 * v.flip(0)), itakura_saito(v, v.flip(0)))


def test_vae_config_checks():
    with pytest.raises(ValueError, match="encoder_input"):
        VAEConfig(encoder_input="mel")
    with pytest.raises(ValueError, match="n_freq"):
        VAE(VAEConfig(n_freq=257))  # default STFT has 513 bins
    small = VAE(VAEConfig(n_freq=129, hidden_dims=(), latent_dim=2), STFTConfig(n_fft=256))
    assert small.decode(torch.zeros(1, 2, 3)).shape == (1, 129, 3)


# -- checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRIORS)
def test_checkpoint_round_trip(name, tmp_path):
    prior = _build(name, seed=1)
    path = tmp_path / "ckpt" / "p.pt"
    assert save_prior(prior, path, {"note": "hello", "n": 3}) == path
    assert sorted(os.listdir(path.parent)) == ["p.pt"]  # atomic: no .part left
    loaded = load_checkpoint(path, expected_stft=prior.stft_config)
    assert type(loaded) is type(prior)
    assert loaded.config == prior.config
    assert loaded.stft_config == prior.stft_config
    assert loaded.metadata == {"note": "hello", "n": 3}
    assert not loaded.training
    sd0, sd1 = prior.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    power = _power(prior)
    with torch.no_grad():
        p0, p1 = prior.encode(power), loaded.encode(power)
        assert torch.equal(p0.mean, p1.mean) and torch.equal(p0.logvar, p1.logvar)
        z = p0.rsample(torch.Generator().manual_seed(0))
        assert torch.equal(prior.decode(z), loaded.decode(z))


@pytest.mark.parametrize("name", PRIORS)
def test_checkpoint_loads_with_weights_only(name, tmp_path):
    prior = _build(name)
    path = prior.save(tmp_path / "p.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == "speechvae-prior"
    assert payload["name"] == name
    assert payload["stft"] == prior.stft_config.to_dict()
    assert set(payload["versions"]) >= {"speechvae", "torch"}
    assert isinstance(safe_torch_load(path), dict)


def test_checkpoint_overwrite_is_atomic(tmp_path):
    path = tmp_path / "p.pt"
    a, b = _build("vae", seed=0), _build("vae", seed=1)
    save_prior(a, path)
    save_prior(b, path)
    assert os.listdir(tmp_path) == ["p.pt"]
    loaded = load_checkpoint(path)
    assert all(torch.equal(x, y) for x, y in zip(loaded.state_dict().values(),
                                                 b.state_dict().values()))


def test_failed_save_leaves_no_partial_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        prior_base.atomic_torch_save({"x": Unpicklable()}, tmp_path / "p.pt")
    assert os.listdir(tmp_path) == []


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    prior = _build("vae")
    payload = {"format": "speechvae-prior", "format_version": 1, "name": "vae",
               "config": {"n_freq": 513, "hidden_dims": [128], "latent_dim": 16,
                          "encoder_input": "log-power"},
               "stft": DEFAULT_STFT.to_dict(), "state_dict": prior.state_dict(),
               "versions": {}, "metadata": {"evil": _RunsCode(marker)}}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    assert not marker.exists()  # saving does not run it
    with pytest.raises(CheckpointError, match="disallowed pickled object"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        safe_torch_load(path)
    assert not marker.exists()


def test_non_speechvae_files_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a speechvae prior checkpoint"):
        load_checkpoint(plain)
    bare = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), bare)
    with pytest.raises(CheckpointError, match="not a speechvae"):
        load_checkpoint(bare)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def _payload(tmp_path, **changes):
    prior = _build("vae")
    path = save_prior(prior, tmp_path / "p.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    out = tmp_path / "edited.pt"
    torch.save(payload, out)
    return out, payload


def test_corrupt_checkpoints_are_refused(tmp_path):
    path, _ = _payload(tmp_path, name="no-such-prior")
    with pytest.raises(CheckpointError, match="unknown prior"):
        load_checkpoint(path)
    path, _ = _payload(tmp_path, config={"n_freq": 513, "bogus": 1})
    with pytest.raises(CheckpointError, match="config"):
        load_checkpoint(path)
    path, p = _payload(tmp_path)
    p["state_dict"] = {k: v[..., :1] for k, v in p["state_dict"].items()}
    torch.save(p, path)
    with pytest.raises(CheckpointError, match="weights"):
        load_checkpoint(path)
    good = tmp_path / "p.pt"
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_stft_mismatch_is_refused(tmp_path):
    other = STFTConfig(n_fft=512, hop_length=128)
    prior = VAE(VAEConfig(n_freq=257, hidden_dims=(8,), latent_dim=2), other)
    path = save_prior(prior, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(path, expected_stft=DEFAULT_STFT)
    assert load_checkpoint(path, expected_stft=other).stft_config == other
    assert load_checkpoint(path).stft_config == other
    # same resolution but another window is a mismatch too
    path2 = save_prior(_build("vae"), tmp_path / "q.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(path2, expected_stft=STFTConfig(window="hann"))


# -- registry ----------------------------------------------------------------------------

def test_register_duplicate_name_raises(monkeypatch):
    monkeypatch.setattr(prior_base._REGISTRY, "entries", dict(prior_base._REGISTRY.entries))

    class Other(Prior):
        config_class = VAEConfig

    with pytest.raises(ValueError, match="already registered"):
        register_prior("vae")(Other)
    assert get_prior_class("vae") is VAE
    # registering the same class again is harmless
    assert register_prior("vae")(VAE) is VAE
    # a new name joins the registry
    register_prior("other-test-prior")(Other)
    assert "other-test-prior" in available_priors()
    assert get_prior_class("other-test-prior") is Other


def test_registry_restored_after_monkeypatch():
    assert "other-test-prior" not in available_priors()


def test_unknown_prior_lists_choices():
    with pytest.raises(KeyError) as info:
        get_prior_class("definitely-not-a-prior")
    msg = str(info.value)
    assert "definitely-not-a-prior" in msg
    for name in PRIORS:
        assert name in msg



@pytest.mark.parametrize("hidden", [(), (16,), (32, 8), (32, 16, 8)])
def test_vae_depths_mirror_encoder(hidden):
    """Decoder layers mirror the encoder for any depth (encode -> decode keeps shapes)."""
    prior = VAE(VAEConfig(hidden_dims=hidden, latent_dim=4))
    power = torch.rand(2, 513, 7) + 0.1
    post = prior.encode(power)
    assert post.mean.shape == (2, 4, 7)
    assert prior.decode(post.mean).shape == (2, 513, 7)


def test_importing_the_priors_flushes_subnormals_unless_asked_to_keep_them():
    # subnormal gradients slowed LSTM training steps ~7x on x86; see flush_denormals
    import subprocess
    import sys
    code = ("import torch, speechvae.priors; "
            "print(float(torch.tensor([1e-40]) * 1.0))")
    flushed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**os.environ, "SPEECHVAE_DENORMALS": ""})
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "SPEECHVAE_DENORMALS": "keep"})
    if not torch.set_flush_denormal(True):  # CPU without DAZ/FTZ: nothing to test
        pytest.skip("this CPU cannot flush subnormals")
    assert float(flushed.stdout) == 0.0
    assert float(kept.stdout) > 0.0
