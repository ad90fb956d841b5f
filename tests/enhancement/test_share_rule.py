"""The speech-share stopping rule (``EMConfig.share_tol``, issue 15)."""
import pytest
import torch
from test_batched import _pad_batch

from speechvae.enhancement import VEMConfig, get_algorithm, vem
from speechvae.enhancement.em import share_settled, speech_share
from speechvae.enhancement.model import NMFNoise
from speechvae.priors import VAE, VAEConfig
from speechvae.stft import stft


def _mixture(seed=0, n=8000):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    # a tone that comes and goes (speech-like energy envelope) in white noise
    tone = torch.sin(2 * torch.pi * 220 * t) * (torch.sin(2 * torch.pi * 3 * t) > 0)
    return stft(tone + 0.3 * torch.randn(n, generator=g))[None]


def test_share_settled_stops_where_the_fall_levels_off():
    falling = [1.0 - 0.01 * i for i in range(40)]
    flat = [falling[-1]] * 40
    shares = falling + flat
    stops = [i + 1 for i in range(len(shares)) if share_settled(shares[:i + 1], 0.02, 5)]
    # while falling, the two windows differ by 5 * 0.01 = 0.05 > tol
    assert all(s > 40 for s in stops)
    first = stops[0]
    prev = sum(shares[first - 10:first - 5]) / 5
    cur = sum(shares[first - 5:first]) / 5
    assert prev - cur < 0.02
    before = shares[:first - 1]
    assert (sum(before[-10:-5]) - sum(before[-5:])) / 5 >= 0.02
    assert not share_settled(shares[:9], 0.02, 5)  # fewer than two windows
    assert not share_settled(flat, 0.0, 5)  # off
    assert share_settled([0.2] * 5 + [0.5] * 5, 0.02, 5)  # a rising share stops too


def test_speech_share_known_value():
    power = torch.rand(2, 7, 9) + 0.5
    # g v = W H = P / 2 in every bin: the Wiener gain is 1/2 and keeps 1/4 of the power
    W = torch.ones(2, 7, 1)
    H = power.mean(1, keepdim=True) * 0 + 1.0
    speech_var = (0.5 * W @ H)[None]
    nmf = NMFNoise(W * 0.5, H, torch.ones(2, 1, 9))
    share = speech_share(power, speech_var, nmf)
    assert share == pytest.approx([0.25, 0.25])
    inv = (speech_var + nmf.noise_variance()).reciprocal()
    assert speech_share(power, speech_var, nmf, (inv, power * inv.square())) == \
        pytest.approx(share)


def test_vem_stops_on_the_share_and_equals_a_run_capped_there():
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    spec = _mixture(5, n=16000)
    cfg = VEMConfig(iterations=300, share_tol=0.01, share_window=10, lr=1e-2)
    res = vem(prior, spec, cfg, torch.Generator().manual_seed(0))
    assert 2 * cfg.share_window <= res.iterations < cfg.iterations
    assert len(res.speech_share) == res.iterations
    assert all(0.0 <= s <= 1.0 for s in res.speech_share)
    stop = next(i + 1 for i in range(len(res.speech_share))
                if share_settled(res.speech_share[:i + 1], cfg.share_tol, cfg.share_window))
    assert stop == res.iterations
    capped = vem(prior, spec, VEMConfig(iterations=res.iterations, lr=1e-2, share_tol=0.0),
                 torch.Generator().manual_seed(0))
    torch.testing.assert_close(capped.speech, res.speech)
    assert capped.speech_share == []  # the rule off: nothing recorded, nothing computed


def test_share_rule_batches_exactly():
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(16,), latent_dim=4))
    a, b = _mixture(6, n=12000), _mixture(7, n=7000)
    batch, n = _pad_batch([a, b])
    cfg = VEMConfig(iterations=120, share_tol=0.01, share_window=8, lr=1e-2)
    both = get_algorithm("vem").run_batch(prior, batch, n, cfg,
                                          [torch.Generator().manual_seed(s) for s in (1, 2)])
    for res, x, seed in zip(both, (a, b), (1, 2)):
        alone = vem(prior, x, cfg, torch.Generator().manual_seed(seed))
        assert res.iterations == alone.iterations
        assert res.speech_share == pytest.approx(alone.speech_share, rel=1e-4, abs=1e-6)
        torch.testing.assert_close(res.speech, alone.speech, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [{"share_tol": -0.1}, {"share_tol": 1.5}, {"share_window": 0}])
def test_share_settings_are_checked(bad):
    with pytest.raises(ValueError, match="share_"):
        VEMConfig(**bad)
