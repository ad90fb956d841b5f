"""STFT: shapes, perfect reconstruction, power spectrogram, input checks."""
import math

import pytest
import torch

from speechvae.stft import DEFAULT_STFT, STFTConfig, istft, num_frames, power_spectrogram, stft

SMALL = STFTConfig(sample_rate=16000, n_fft=256, hop_length=64)


def _signal(n, batch=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if batch is None else (batch, n)
    return (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1).to(dtype)


def test_default_config_is_the_published_one():
    assert DEFAULT_STFT == STFTConfig(16000, 1024, 256, "sine")
    assert DEFAULT_STFT.n_freq == 513
    assert DEFAULT_STFT.frame_s == pytest.approx(0.016)
    assert STFTConfig.from_dict(DEFAULT_STFT.to_dict()) == DEFAULT_STFT


@pytest.mark.parametrize("n", [1024, 1025, 16000, 16000 + 255, 16000 + 256])
def test_shapes_single(n):
    x = _signal(n)
    X = stft(x)
    assert X.is_complex()
    assert X.shape == (DEFAULT_STFT.n_fft // 2 + 1, 1 + n // DEFAULT_STFT.hop_length)
    assert X.shape[1] == num_frames(n)


def test_shapes_batch():
    x = _signal(5000, batch=3)
    X = stft(x, SMALL)
    assert X.shape == (3, 129, 1 + 5000 // 64)
    # batch items are transformed independently
    assert torch.allclose(X[1], stft(x[1], SMALL), atol=1e-5)


@pytest.mark.parametrize("window", ["sine", "hann"])
@pytest.mark.parametrize("cfg", [(1024, 256), (256, 64), (512, 256)])
def test_reconstruction(window, cfg):
    n_fft, hop = cfg
    config = STFTConfig(16000, n_fft, hop, window)
    for n in (8000, 8000 + 37):
        x = _signal(n, seed=n)
        y = istft(stft(x, config), n, config)
        assert y.shape == x.shape
        assert torch.max(torch.abs(y - x)) < 1e-5


def test_reconstruction_batch_float64():
    x = _signal(4321, batch=2, dtype=torch.float64)
    y = istft(stft(x), 4321)
    assert y.dtype == torch.float64
    assert torch.max(torch.abs(y - x)) < 1e-12


def test_sine_window_values():
    # the documented analysis window, sin(pi (k + 1/2) / N), through a delta
    from speechvae.stft import _window

    w = _window(SMALL, dtype=torch.float64)
    k = torch.arange(SMALL.n_fft, dtype=torch.float64)
    assert torch.allclose(w, torch.sin(math.pi * (k + 0.5) / SMALL.n_fft))


def test_unknown_window_raises():
    with pytest.raises(ValueError, match="window"):
        stft(_signal(2048), STFTConfig(window="hamming"))


def test_power_is_squared_magnitude():
    x = _signal(6000, seed=3)
    X = stft(x)
    P = power_spectrogram(x)
    assert P.shape == X.shape
    assert P.dtype == torch.float32
    assert torch.all(P >= 0)
    torch.testing.assert_close(P, X.real ** 2 + X.imag ** 2, rtol=1e-5, atol=1e-6)


def test_parseval_like_energy_scale():
    # a pure tone concentrates its power in the bin of its frequency
    sr, f = 16000, 1000.0
    t = torch.arange(16000, dtype=torch.float64) / sr
    x = torch.sin(2 * math.pi * f * t)
    P = power_spectrogram(x)
    peak_bins = P[:, 10:-10].argmax(dim=0)
    assert torch.all(peak_bins == round(f * DEFAULT_STFT.n_fft / sr))


@pytest.mark.parametrize("n", [0, 10, 1023])
def test_too_short_raises(n):
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        stft(torch.zeros(n))
    with pytest.raises(ValueError):
        power_spectrogram(torch.zeros(2, n))
