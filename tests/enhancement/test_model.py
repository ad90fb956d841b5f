"""NMF noise model: monotone M-step, positivity, normalisation, initialisation."""
import pytest
import torch

from speechvae.enhancement.model import NMFNoise, init_nmf, m_step, mixture_cost, normalise

F, T, K = 17, 23, 4


def _data(batch=2, samples=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    power = torch.exp(2 * torch.randn((batch, F, T), generator=g, dtype=torch.float64))
    speech_var = torch.exp(torch.randn((samples, batch, F, T), generator=g,
                                       dtype=torch.float64))
    return power, speech_var, g


def _mask(batch=2):
    m = torch.ones(batch, T, dtype=torch.float64)
    m[0, -5:] = 0
    if batch > 1:
        m[1, -9:] = 0
    return m


def _positive(nmf):
    return all(torch.all(x > 0) and torch.all(torch.isfinite(x)) for x in (nmf.W, nmf.H, nmf.g))


@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("update_gain", [True, False])
def test_m_step_never_increases_cost(samples, masked, update_gain):
    power, speech_var, g = _data(samples=samples)
    mask = _mask() if masked else None
    nmf = init_nmf(power, K, g, mask=mask)
    cost = mixture_cost(power, speech_var, nmf, mask)
    start = cost.clone()
    for _ in range(50):
        nmf = m_step(power, speech_var, nmf, mask=mask, update_gain=update_gain)
        new = mixture_cost(power, speech_var, nmf, mask)
        assert torch.all(new <= cost + 1e-6 * cost.abs()), (cost, new)
        assert _positive(nmf)
        cost = new
    assert torch.all(cost < start)  # and it does make progress


def test_m_step_shapes_and_gain_flag():
    power, speech_var, g = _data(samples=2)
    nmf = init_nmf(power, K, g)
    out = m_step(power, speech_var, nmf, update_gain=False)
    assert out.W.shape == (2, F, K) and out.H.shape == (2, K, T) and out.g.shape == (2, 1, T)
    assert torch.equal(out.g, nmf.g)
    out = m_step(power, speech_var, nmf, update_gain=True)
    assert not torch.equal(out.g, nmf.g)
    # inputs are not modified in place
    assert torch.equal(nmf.g, torch.ones_like(nmf.g))


def test_m_step_precomputed_moments_give_the_same_update():
    import inspect

    if "moments" not in inspect.signature(m_step).parameters:
        pytest.skip("m_step has no moments argument")
    power, speech_var, g = _data(samples=2)
    nmf = m_step(power, speech_var, init_nmf(power, K, g))
    inv = 1.0 / (nmf.g * speech_var + nmf.W @ nmf.H)
    a = m_step(power, speech_var, nmf)
    b = m_step(power, speech_var, nmf, moments=(inv, power * inv.square()))
    for x, y in ((a.W, b.W), (a.H, b.H), (a.g, b.g)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=0)


def test_m_step_masked_frames_keep_unit_gain():
    power, speech_var, g = _data()
    mask = _mask()
    nmf = init_nmf(power, K, g, mask=mask)
    for _ in range(5):
        nmf = m_step(power, speech_var, nmf, mask=mask)
    assert torch.all(nmf.g[0, 0, -5:] == 1) and torch.all(nmf.g[1, 0, -9:] == 1)


def test_m_step_masked_frames_do_not_influence_valid_ones():
    power, speech_var, g = _data(batch=1)
    mask = _mask(batch=1)
    nmf0 = init_nmf(power, K, g, mask=mask)
    other = power.clone()
    other[..., -5:] = 1e8  # garbage in the padded frames
    a = b = nmf0
    for _ in range(5):
        a = m_step(power, speech_var, a, mask=mask)
        b = m_step(other, speech_var, b, mask=mask)
    torch.testing.assert_close(a.W, b.W)
    torch.testing.assert_close(a.H[..., :-5], b.H[..., :-5])
    torch.testing.assert_close(a.g, b.g)


def test_m_step_stays_positive_with_extreme_data():
    power, speech_var, g = _data()
    power[0, :, :5] = 0.0  # digital silence in a few frames
    power[1] *= 1e6
    speech_var = speech_var * 1e-8
    nmf = init_nmf(power, K, g)
    for _ in range(30):
        nmf = m_step(power, speech_var, nmf)
        assert _positive(nmf)


def test_m_step_fits_pure_noise():
    # no speech at all: W H should approach a rank-K power spectrogram it can represent
    g = torch.Generator().manual_seed(1)
    W = torch.rand((1, F, 2), generator=g, dtype=torch.float64) + 0.1
    H = torch.rand((1, 2, T), generator=g, dtype=torch.float64) + 0.1
    power = W @ H
    speech_var = torch.full((1, 1, F, T), 1e-9, dtype=torch.float64)
    nmf = init_nmf(power, 2, g)
    for _ in range(500):
        nmf = m_step(power, speech_var, nmf, update_gain=False)
    ratio = nmf.noise_variance() / power
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.05)


def test_normalise_keeps_product_and_unit_columns():
    g = torch.Generator().manual_seed(0)
    nmf = NMFNoise(torch.rand((2, F, K), generator=g, dtype=torch.float64) * 5 + 0.01,
                   torch.rand((2, K, T), generator=g, dtype=torch.float64) + 0.01,
                   torch.rand((2, 1, T), generator=g, dtype=torch.float64) + 0.5)
    out = normalise(nmf)
    torch.testing.assert_close(out.noise_variance(), nmf.noise_variance(), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.W.sum(dim=1), torch.ones(2, K, dtype=torch.float64))
    assert torch.equal(out.g, nmf.g)


def test_mixture_cost_value():
    power, speech_var, g = _data(samples=2)
    nmf = init_nmf(power, K, g)
    vx = nmf.g * speech_var + nmf.W @ nmf.H
    expected = (power / vx + torch.log(vx)).sum(dim=(0, 2, 3))
    torch.testing.assert_close(mixture_cost(power, speech_var, nmf), expected)
    mask = _mask()
    masked = mixture_cost(power, speech_var, nmf, mask)
    expected = ((power / vx + torch.log(vx)) * mask[:, None, :]).sum(dim=(0, 2, 3))
    torch.testing.assert_close(masked, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_init_nmf_shapes_and_level(dtype):
    power, _, g = _data(batch=3)
    power = power.to(dtype) * torch.tensor([1.0, 1e-4, 1e3], dtype=dtype)[:, None, None]
    nmf = init_nmf(power, K, g)
    assert nmf.W.shape == (3, F, K) and nmf.H.shape == (3, K, T) and nmf.g.shape == (3, 1, T)
    assert nmf.W.dtype == dtype
    assert _positive(nmf)
    assert torch.equal(nmf.g, torch.ones_like(nmf.g))
    torch.testing.assert_close(nmf.W.sum(dim=1), torch.ones(3, K, dtype=dtype))
    torch.testing.assert_close(nmf.noise_variance().mean(dim=(1, 2)), power.mean(dim=(1, 2)),
                               rtol=1e-5, atol=0)


def test_init_nmf_is_seeded():
    power, _, _ = _data()
    a = init_nmf(power, K, torch.Generator().manual_seed(5))
    b = init_nmf(power, K, torch.Generator().manual_seed(5))
    c = init_nmf(power, K, torch.Generator().manual_seed(6))
    assert torch.equal(a.W, b.W) and torch.equal(a.H, b.H)
    assert not torch.equal(a.W, c.W)


def test_init_nmf_masked_frames_have_no_activation():
    power, _, g = _data()
    mask = _mask()
    nmf = init_nmf(power, K, g, mask=mask)
    assert torch.all(nmf.H[0, :, -5:] == 0) and torch.all(nmf.H[1, :, -9:] == 0)
    assert torch.all(nmf.H[0, :, :-5] > 0)


def test_init_nmf_masked_level():
    power, _, g = _data()
    mask = _mask()
    nmf = init_nmf(power, K, g, mask=mask)
    wh = nmf.noise_variance()
    for b in range(2):
        valid = mask[b] > 0
        torch.testing.assert_close(wh[b][:, valid].mean(), power[b][:, valid].mean(),
                                   rtol=1e-6, atol=0)
