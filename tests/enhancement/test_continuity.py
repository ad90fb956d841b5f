"""Temporal-continuity penalty on the NMF activations (``EMConfig.nmf_smoothness``)."""
import pytest
import torch

from speechvae.enhancement import VEMConfig
from speechvae.enhancement.model import (
    NMFNoise,
    continuity_penalty,
    init_nmf,
    m_step,
    mixture_cost,
)

F, T, K = 17, 23, 4


def _data(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    power = torch.exp(2 * torch.randn((batch, F, T), generator=g, dtype=torch.float64))
    speech_var = torch.exp(torch.randn((1, batch, F, T), generator=g, dtype=torch.float64))
    return power, speech_var, g


def _mask(batch=2):
    m = torch.ones(batch, T, dtype=torch.float64)
    m[0, -5:] = 0
    m[1, -9:] = 0
    return m


def test_penalty_values():
    H = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]], dtype=torch.float64)
    assert continuity_penalty(H).item() == 0.0  # constant rows cost nothing
    H = torch.tensor([[[1.0, 2.0, 1.0]]], dtype=torch.float64)
    # two pairs, each 2 + 1/2 - 2
    assert continuity_penalty(H).item() == pytest.approx(1.0)
    assert continuity_penalty(7.0 * H).item() == pytest.approx(1.0)  # scale-invariant
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    assert continuity_penalty(H, mask).item() == pytest.approx(0.5)  # padded pair dropped


@pytest.mark.parametrize("weight", [0.5, 5.0, 50.0])
@pytest.mark.parametrize("masked", [False, True])
def test_penalised_cost_never_increases(weight, masked):
    power, speech_var, g = _data()
    mask = _mask() if masked else None
    nmf = init_nmf(power, K, g, mask=mask)

    def cost(n):
        return mixture_cost(power, speech_var, n, mask) + weight * continuity_penalty(n.H, mask)

    c = start = cost(nmf)
    for _ in range(40):
        nmf = m_step(power, speech_var, nmf, mask=mask, smoothness=weight)
        new = cost(nmf)
        assert torch.all(new <= c + 1e-9 * c.abs()), (c, new)
        assert torch.all(nmf.H > 0) and torch.all(torch.isfinite(nmf.H))
        c = new
    assert torch.all(c < start)


def test_stronger_smoothness_gives_smoother_activations():
    power, speech_var, g = _data()
    start = init_nmf(power, K, g)
    penalties = []
    for weight in (0.0, 1.0, 100.0):
        nmf = start
        for _ in range(60):
            nmf = m_step(power, speech_var, nmf, smoothness=weight)
        penalties.append(continuity_penalty(nmf.H).sum().item())
    assert penalties[0] > penalties[1] > penalties[2]
    assert penalties[2] < 0.05 * penalties[0]


def test_masked_frames_do_not_influence_valid_ones():
    power, speech_var, g = _data()
    mask = _mask()
    other = power.clone()
    other[0, :, -5:] = 1e8
    a = b = init_nmf(power, K, g, mask=mask)
    for _ in range(5):
        a = m_step(power, speech_var, a, mask=mask, smoothness=10.0)
        b = m_step(other, speech_var, b, mask=mask, smoothness=10.0)
    torch.testing.assert_close(a.W, b.W)
    torch.testing.assert_close(a.H[..., :-9], b.H[..., :-9])


def test_zero_weight_is_the_plain_update():
    power, speech_var, g = _data()
    nmf = init_nmf(power, K, g)
    a = m_step(power, speech_var, nmf)
    b = m_step(power, speech_var, nmf, smoothness=0.0)
    for x, y in zip((a.W, a.H, a.g), (b.W, b.H, b.g)):
        assert torch.equal(x, y)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="nmf_smoothness"):
        VEMConfig(nmf_smoothness=-1.0)


def test_m_step_returns_nmf_noise():
    power, speech_var, g = _data()
    assert isinstance(m_step(power, speech_var, init_nmf(power, K, g), smoothness=1.0),
                      NMFNoise)
