"""Dynamical priors (RVAE causal / non-causal, DKF) and the prior interface they share with the
frame-wise VAE: one contract for every registered prior (small configs), the fast sequential
recurrence against its reference, every inference algorithm end to end, recipes' smoke
training. Needs nothing outside the repository."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import speech_like

import speechvae
from speechvae.enhancement import BandoConfig, MALAConfig, MCEMConfig, VEMConfig, vem
from speechvae.priors import (
    DKF,
    RVAE,
    TCVAE,
    VAE,
    DKFConfig,
    Posterior,
    RVAEConfig,
    SequentialPrior,
    TCVAEConfig,
    VAEConfig,
    available_priors,
    get_prior_class,
    load_checkpoint,
    load_prior,
)
from speechvae.priors.sequential import mask_lengths, reverse_padded
from speechvae.stft import stft
from speechvae.training import SpectrogramCache, TrainConfig, train_prior

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
B, T = 2, 9

# one small configuration per registered prior (and variant)
CASES = {
    "vae": (VAE, VAEConfig(hidden_dims=(16,), latent_dim=3)),
    "rvae-causal": (RVAE, RVAEConfig(latent_dim=3, hidden_dim=8, dense_dims=(8,))),
    "rvae-noncausal": (RVAE, RVAEConfig(latent_dim=3, hidden_dim=8, dense_dims=(8, 6),
                                        causal=False)),
    "dkf": (DKF, DKFConfig(latent_dim=3, encoder_dense_dims=(16,), rnn_dim=8,
                           combiner_z_dims=(6,), combiner_dims=(6,), decoder_dims=(16,),
                           transition_dim=4)),
    "tcvae": (TCVAE, TCVAEConfig(latent_dim=3, hidden_dim=8, encoder_dilations=(1, 2),
                                 decoder_dilations=(1, 2))),
}
SEQUENTIAL = ["rvae-causal", "rvae-noncausal", "dkf"]


def _build(case, seed=0, dtype=torch.float32):
    cls, config = CASES[case]
    torch.manual_seed(seed)
    return cls(config).to(dtype).eval()


def _power(batch=B, frames=T, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn((batch, 513, frames), generator=g, dtype=dtype)) * 1e-2


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_every_registered_prior_has_a_case():
    assert {"vae", "rvae", "dkf"} <= set(available_priors())
    # (priors registered by other test modules are named "test-...")
    shipped = {n for n in available_priors() if not n.startswith("test-")}
    assert {cls.name for cls, _ in CASES.values()} == shipped
    assert get_prior_class("rvae") is RVAE and get_prior_class("dkf") is DKF
    assert not RVAE.frame_factorised and not DKF.frame_factorised and VAE.frame_factorised


# -- interface contract, every prior --------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_shapes(case):
    prior = _build(case)
    lat = prior.latent_dim
    power = _power()
    post = prior.encode(power)
    assert isinstance(post, Posterior) and post.mean.shape == post.logvar.shape == (B, lat, T)
    z, q = prior.sample_posterior(power, _gen())
    assert z.shape == (B, lat, T) and q.mean.shape == (B, lat, T)
    zs, qs = prior.sample_posterior(power, _gen(), num_samples=4)
    assert zs.shape == (4, B, lat, T)
    # per-draw parameters for a sequential encoder, shared ones for the frame-wise VAE
    assert qs.mean.shape == ((4, B, lat, T) if case in SEQUENTIAL else (B, lat, T))
    v = prior.decode(zs)
    assert v.shape == (4, B, 513, T) and torch.all(v > 0) and torch.all(torch.isfinite(v))
    assert prior.decode(z).shape == (B, 513, T)
    assert prior.kl(qs, zs).shape == ((4, B, T) if case in SEQUENTIAL else (B, T))
    assert prior.log_prior(zs).shape == (4, B, T)
    assert prior.sample_latent(T, batch=B, generator=_gen()).shape == (B, lat, T)
    enc = list(prior.encoder_parameters())
    ids = {id(p) for p in prior.parameters()}
    assert enc and all(id(p) in ids for p in enc) and len(enc) < len(ids)


@pytest.mark.parametrize("case", CASES)
def test_sampling_is_seeded_and_noise_scale_zero_is_the_mean_path(case):
    prior = _build(case)
    power = _power()
    a, _ = prior.sample_posterior(power, _gen(3), num_samples=2)
    b, _ = prior.sample_posterior(power, _gen(3), num_samples=2)
    c, _ = prior.sample_posterior(power, _gen(4), num_samples=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    z0, q0 = prior.sample_posterior(power, _gen(), noise_scale=0.0)
    mean_path = prior.encode(power)
    torch.testing.assert_close(z0, mean_path.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(q0.mean, mean_path.mean, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", SEQUENTIAL)
def test_sequential_posterior_depends_on_the_drawn_past(case):
    prior = _build(case)
    _, q = prior.sample_posterior(_power(), _gen(), num_samples=2)
    # the same input, other draws: frame 0 shares its parameters, later frames do not
    torch.testing.assert_close(q.mean[0, ..., 0], q.mean[1, ..., 0])
    assert not torch.allclose(q.mean[0, ..., 1:], q.mean[1, ..., 1:])


@pytest.mark.parametrize("case", CASES)
def test_kl_nonnegative(case):
    prior = _build(case)
    z, q = prior.sample_posterior(_power(), _gen(), num_samples=8)
    kl = prior.kl(q, z)
    assert torch.all(kl >= -1e-6)
    if isinstance(prior, DKF):
        with pytest.raises(ValueError, match="needs the drawn latents"):
            prior.kl(q)
    else:
        torch.testing.assert_close(prior.kl(q), kl)  # analytic: z is not needed


def test_dkf_log_prior_is_markov_and_matches_the_transition():
    prior = _build("dkf")
    z = torch.randn(2, prior.latent_dim, T, generator=_gen())
    lp = prior.log_prior(z)
    # frame t's term is log N(z_t; mean(z_{t-1}), var(z_{t-1})) up to -L/2 log(2 pi)
    prev = torch.cat([torch.zeros_like(z[..., :1]), z[..., :-1]], -1)
    mean, logvar = prior.transition(prev.transpose(-1, -2))
    dist = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    ref = dist.log_prob(z.transpose(-1, -2)).sum(-1) + 0.5 * prior.latent_dim * np.log(2 * np.pi)
    torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-4)
    # moving z_k changes the terms of frames k and k + 1 only
    moved = z.clone()
    moved[..., 4] += 0.5
    changed = (prior.log_prior(moved) != lp).any(0)
    assert changed.nonzero().flatten().tolist() == [4, 5]
    # sample_latent draws from the same chain: seeded, finite
    a = prior.sample_latent(T, 3, _gen(1))
    assert torch.equal(a, prior.sample_latent(T, 3, _gen(1))) and torch.isfinite(a).all()


@pytest.mark.parametrize("case", ["rvae-causal", "rvae-noncausal", "dkf"])
def test_decoder_causality(case):
    prior = _build(case)
    z = torch.randn(1, prior.latent_dim, T, generator=_gen())
    moved = z.clone()
    moved[..., 5] += 1.0
    same = (prior.decode(z) == prior.decode(moved)).all(1)[0]  # (time,)
    expected = {"rvae-causal": [True] * 5 + [False] * 4,   # v_t from z_{1:t}
                "rvae-noncausal": [False] * T,             # v_t from z_{1:T}
                "dkf": [True] * 5 + [False] + [True] * 3}  # v_t from z_t
    assert same.tolist() == expected[case]


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_round_trip(case, tmp_path):
    prior = _build(case, seed=1)
    loaded = load_checkpoint(prior.save(tmp_path / "p.pt"))
    assert type(loaded) is type(prior) and loaded.config == prior.config
    power = _power()
    with torch.no_grad():
        for a, b in zip(prior.sample_posterior(power, _gen(), 3),
                        loaded.sample_posterior(power, _gen(), 3)):
            a, b = (a, b) if isinstance(a, torch.Tensor) else (a.logvar, b.logvar)
            assert torch.equal(a, b)
        assert torch.equal(prior.encode(power).mean, loaded.encode(power).mean)
        z = prior.sample_latent(T, B, _gen())
        assert torch.equal(prior.decode(z), loaded.decode(z))
        assert torch.equal(prior.log_prior(z), loaded.log_prior(z))


def test_shipped_names_hold_both_rvae_variants(tmp_path, monkeypatch):
    from speechvae import pretrained

    for case in ("rvae-causal", "rvae-noncausal"):
        _build(case).save(tmp_path / f"{case}.pt")
    monkeypatch.setattr(pretrained, "_HERE", tmp_path)
    assert pretrained.shipped_priors() == ["rvae-causal", "rvae-noncausal"]
    assert load_prior("rvae-causal").config.causal is True
    assert load_prior("rvae-noncausal").config.causal is False


@pytest.mark.parametrize("case", CASES)
def test_neg_elbo_with_mask_ignores_padded_frames(case):
    prior = _build(case).train()
    power = _power(batch=2, frames=8)
    mask = torch.tensor([[1.0] * 8, [1.0] * 5 + [0.0] * 3])
    garbage = power.clone()
    garbage[1, :, 5:] = 1e4
    a = prior.neg_elbo(power, beta=0.5, generator=_gen(), mask=mask)
    b = prior.neg_elbo(garbage, beta=0.5, generator=_gen(), mask=mask)
    for k in ("loss", "is", "kl"):
        assert torch.isfinite(a[k])
        torch.testing.assert_close(a[k], b[k])
    a["loss"].backward()  # every parameter takes part in the loss
    assert all(p.grad is not None for p in prior.parameters())


@pytest.mark.parametrize("case", SEQUENTIAL)
def test_padded_sequence_equals_the_sequence_alone(case):
    prior = _build(case)
    power = _power(batch=2, frames=8)
    mask = torch.tensor([[1.0] * 8, [1.0] * 5 + [0.0] * 3])
    with torch.no_grad():
        z, q = prior.sample_posterior(power, mask=mask, noise_scale=0.0)
        alone = prior.encode(power[1:, :, :5])
        torch.testing.assert_close(q.mean[1, :, :5], alone.mean[0], rtol=1e-5, atol=1e-6)
        v = prior.decode(z, mask=mask)
        torch.testing.assert_close(v[1, :, :5], prior.decode(alone.mean)[0], rtol=1e-5,
                                   atol=1e-8)


def test_masks_must_be_right_padded():
    assert mask_lengths(None, 2, 4) is None
    assert mask_lengths(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), 2, 4).tolist() == [2, 4]
    with pytest.raises(ValueError, match="prefix"):
        mask_lengths(torch.tensor([[1, 0, 1, 0]]), 1, 4)
    with pytest.raises(ValueError, match="shape"):
        mask_lengths(torch.ones(2, 3), 2, 4)
    prior = _build("rvae-causal")
    with pytest.raises(ValueError, match="prefix"):
        prior.sample_posterior(_power(1, 4), mask=torch.tensor([[0.0, 1, 1, 1]]))
    x = torch.arange(12.0).reshape(4, 3, 1)
    lengths = torch.tensor([4, 2, 0])
    r = reverse_padded(x, lengths)
    assert r[:, 0, 0].tolist() == [9, 6, 3, 0] and r[:, 1, 0].tolist() == [4, 1, 7, 10]
    assert torch.equal(r[:, 2], x[:, 2]) and torch.equal(reverse_padded(r, lengths), x)
    assert torch.equal(reverse_padded(x, None), x.flip(0))


def test_config_checks():
    with pytest.raises(ValueError, match="dense_dims"):
        RVAEConfig(dense_dims=(0,))
    with pytest.raises(ValueError, match="encoder_input"):
        DKFConfig(encoder_input="mel")
    with pytest.raises(ValueError, match="n_freq"):
        RVAE(RVAEConfig(n_freq=257))
    prior = _build("dkf")
    prior.recurrence = "turbo"
    with pytest.raises(ValueError, match="recurrence"):
        prior.encode(_power())
    with pytest.raises(ValueError, match="shape"):
        _build("rvae-causal").sample_posterior(torch.ones(1, 257, 4))


# -- fast recurrence == reference -------------------------------------------------------------

def _run(prior, power, mask, recurrence):
    prior.recurrence = recurrence
    prior.zero_grad()
    z, q = prior.sample_posterior(power, _gen(5), num_samples=3, mask=mask)
    v = prior.decode(z, mask=mask)
    w = torch.linspace(0.5, 1.5, z.shape[-1], dtype=z.dtype)
    loss = ((v.log() * w).sum() + (prior.kl(q, z) * w).sum() + z.sin().sum()
            + q.logvar.cos().sum())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in prior.named_parameters() if p.grad is not None}
    return z.detach(), q.mean.detach(), q.logvar.detach(), grads


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", SEQUENTIAL)
def test_fast_recurrence_equals_reference(case, dtype, tol):
    prior = _build(case, seed=2, dtype=dtype)
    power = _power(batch=2, frames=11, dtype=dtype)
    mask = torch.tensor([[1.0] * 11, [1.0] * 7 + [0.0] * 4], dtype=dtype)
    ref = _run(prior, power, mask, "reference")
    fast = _run(prior, power, mask, "fast")
    for a, b in zip(ref[:3], fast[:3]):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    assert ref[3].keys() == fast[3].keys() == {n for n, _ in prior.named_parameters()}
    for name in ref[3]:
        scale = ref[3][name].abs().max().clamp_min(1.0)
        torch.testing.assert_close(fast[3][name] / scale, ref[3][name] / scale, rtol=tol,
                                   atol=tol, msg=name)
    # without gradients (the no-autograd loop) and for one frame
    with torch.no_grad():
        for frames in (11, 1):
            p = power[..., :frames]
            out = []
            for rec in ("reference", "fast"):
                prior.recurrence = rec
                out.append(prior.sample_posterior(p, _gen(1), num_samples=2)[0])
            torch.testing.assert_close(out[1], out[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", SEQUENTIAL)
def test_grouped_posterior_equals_each_file_alone(case, dtype, tol):
    """One set of encoder weights per file (batched VEM): values and gradients of every
    file's parameters equal those of that file run alone with its weights."""
    prior = _build(case, seed=2, dtype=dtype)
    lengths, n_frames, draws = [11, 7, 1], 11, 2
    copies = []
    for g in range(len(lengths)):  # different weights per file
        c = _build(case, seed=2, dtype=dtype)
        with torch.no_grad():
            for p in c.encoder_parameters():
                p.add_(0.05 * g * torch.randn_like(p))
        copies.append(c)
    names = [n for n, p in prior.named_parameters()
             if any(p is q for q in prior.encoder_parameters())]
    params = {n: torch.stack([dict(c.named_parameters())[n].detach() for c in copies])
              .requires_grad_(True) for n in names}
    power = _power(batch=len(lengths), frames=n_frames, dtype=dtype)
    eps = torch.randn((draws, len(lengths), prior.latent_dim, n_frames), dtype=dtype,
                      generator=_gen(3))
    mask = (torch.arange(n_frames)[None] < torch.tensor(lengths)[:, None]).to(dtype)
    eps = eps * mask[:, None]
    w = torch.linspace(0.5, 1.5, n_frames, dtype=dtype)

    def loss(z, mean, logvar, w):
        return (z.sin() * w + logvar.cos() + mean.square()).sum((0, 2))  # (batch, time)

    z, mean, logvar = prior.grouped_posterior(params, power, eps, lengths)
    assert z.shape == (draws, len(lengths), prior.latent_dim, n_frames)
    (loss(z, mean, logvar, w) * mask).sum().backward()
    for b, (c, n) in enumerate(zip(copies, lengths)):
        c.recurrence = "reference"
        zb, mb, lb = c._posterior(power[b:b + 1, :, :n], eps[:, b:b + 1, :, :n], None)
        loss(zb, mb, lb, w[:n]).sum().backward()
        for got, ref in ((z, zb), (mean, mb), (logvar, lb)):
            torch.testing.assert_close(got[:, b:b + 1, :, :n], ref, rtol=tol, atol=tol)
        for name in names:
            p = dict(c.named_parameters())[name]
            ref = torch.zeros_like(p) if p.grad is None else p.grad  # unused for 1 frame
            scale = ref.abs().max().clamp_min(1.0)
            torch.testing.assert_close(params[name].grad[b] / scale, ref / scale, rtol=tol,
                                       atol=tol, msg=name)
    with pytest.raises(ValueError, match="lengths"):
        prior.grouped_posterior(params, power, eps, [11, 7, 12])
    with pytest.raises(ValueError, match="eps"):
        prior.grouped_posterior(params, power, eps[:, :2], lengths)
    with pytest.raises(ValueError, match="lacks"):
        prior.grouped_posterior({}, power, eps, lengths)


def test_fast_recurrence_one_frame_gradients():
    prior = _build("rvae-causal")
    power = _power(batch=1, frames=1)
    ref, fast = (_run(prior, power, None, rec) for rec in ("reference", "fast"))
    for name in ref[3]:
        torch.testing.assert_close(fast[3][name], ref[3][name], rtol=1e-5, atol=1e-6)
    # the z-LSTM is not used for a single frame: its gradients are zero in both
    assert fast[3]["encoder_z_cell.weight_ih"].abs().max() == 0


# -- algorithms end to end ----------------------------------------------------------------------

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
@pytest.mark.parametrize("case", SEQUENTIAL)
def test_every_algorithm_runs_with_every_dynamical_prior(case, algorithm, noisy):
    prior = _build(case)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    res = speechvae.enhance(noisy, SR, prior=prior, algorithm=algorithm,
                            config=ALGORITHMS[algorithm], seed=1)
    assert res.waveform.shape == noisy.shape and np.all(np.isfinite(res.waveform))
    np.testing.assert_allclose(res.waveform + res.noise, noisy, atol=1e-4)
    again = speechvae.enhance(noisy, SR, prior=prior, algorithm=algorithm,
                              config=ALGORITHMS[algorithm], seed=1)
    np.testing.assert_array_equal(res.waveform, again.waveform)
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())


def test_vem_finetunes_the_sequential_encoder(noisy):
    prior = _build("rvae-causal")
    spec = stft(torch.from_numpy(noisy / np.abs(noisy).max()))[None]
    cfg = VEMConfig(iterations=6, nmf_rank=2, lr=0.05, wiener_samples=2)
    res = vem(prior, spec, cfg, _gen())
    assert np.all(np.isfinite(res.objective)) and res.objective[-1] < res.objective[0]
    frozen = vem(prior, spec, VEMConfig(iterations=6, nmf_rank=2, lr=0.0, wiener_samples=2),
                 _gen())
    assert not torch.equal(res.speech, frozen.speech)


# -- training --------------------------------------------------------------------------------

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


@pytest.mark.parametrize("recipe", ["rvae/conf_causal.yaml", "rvae/conf_noncausal.yaml",
                                    "dkf/conf.yaml"])
def test_recipes_map_onto_the_dataclasses(recipe):
    cls, config, train = _recipe(RECIPES / recipe)
    assert cls in (RVAE, DKF) and train.sequence_length == 50 and train.kl_warmup_epochs > 0
    # the recipes train the default (paper-sized) models
    default = cls.config_class()
    if cls is RVAE:
        default = dataclasses.replace(default, causal="noncausal" not in recipe)
    assert config == default


@pytest.mark.parametrize("recipe", ["rvae/conf_smoke.yaml", "dkf/conf_smoke.yaml"])
def test_smoke_recipe_trains_one_epoch_and_resumes(recipe, tmp_path):
    cls, config, train = _recipe(RECIPES / recipe)
    torch.manual_seed(0)
    prior = cls(config)
    data = _random_cache([40, 30, 25], 0), _random_cache([22, 12], 1)
    summary = train_prior(prior, *data, train, tmp_path / "run", progress=False)
    assert summary["epochs_run"] == 1 and np.isfinite(summary["best_val_loss"])
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert isinstance(best, SequentialPrior) and best.config == config
    assert best.metadata["train_config"]["sequence_length"] == train.sequence_length
    # resume for one more epoch
    torch.manual_seed(1)
    again = cls(config)
    more = TrainConfig(**{**train.__dict__, "epochs": 2})
    assert train_prior(again, *data, more, tmp_path / "run", progress=False)["epochs_run"] == 2
