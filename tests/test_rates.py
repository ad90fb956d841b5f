"""The engine keeps the input's format: sample rate and duration, dtype and scale; the config
says which algorithm runs; errors name their file."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from speechvae.audio import AudioError, AudioWarning, check_waveform, float_to_dtype, resample
from speechvae.enhancement import MCEMConfig, VEMConfig, enhance, enhance_file

FAST = VEMConfig(iterations=3)


@pytest.fixture(scope="module")
def prior(tiny_prior):
    from speechvae.priors import load_prior

    torch.set_num_threads(1)
    return load_prior(str(tiny_prior))


def _band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_output_at_the_input_rate_and_length(prior, rate):
    x = speech_like(1.3, rate)
    res = enhance(x, rate, prior=prior, config=FAST)
    assert res.sample_rate == rate
    assert res.waveform.shape == res.noise.shape == x.shape
    assert res.waveform.dtype == np.float32
    # speech + noise add up to the input (the high band split by the gain, too)
    tol = 0.05 if rate < 16000 else 1e-3  # 8 kHz: the resampler's transition band at 4 kHz
    assert np.max(np.abs(res.waveform + res.noise - x)) < tol * np.max(np.abs(x))


def test_output_rate_16k_is_the_prior_estimate(prior):
    x = speech_like(1.0, 48000)
    res = enhance(x, 48000, prior=prior, config=FAST, output_rate=16000)
    assert res.sample_rate == 16000 and res.waveform.size == 16000
    ref = enhance(x, 48000, prior=prior, config=FAST)
    # the same estimate below 8 kHz (resampling aside): correlated, at the same level
    down = resample(ref.waveform, 48000, 16000)
    assert np.corrcoef(down, res.waveform)[0, 1] > 0.99


def test_band_above_8k_is_the_input_band_attenuated(prior):
    rate = 48000
    t = np.arange(rate) / rate
    x = speech_like(1.0, rate) + 0.05 * np.sin(2 * np.pi * 12000 * t).astype(np.float32)
    res = enhance(x, rate, prior=prior, config=FAST)
    e_in = _band_energy(x, rate, 11000, 13000)
    e_out = _band_energy(res.waveform, rate, 11000, 13000)
    e_noise = _band_energy(res.noise, rate, 11000, 13000)
    assert 0 < e_out <= e_in * 1.0001  # kept, never amplified (gain in [0, 1])
    assert e_noise < e_in * 1.0001
    # nothing appears above 8 kHz that the input does not have
    assert _band_energy(res.waveform, rate, 16000, 24000) <= _band_energy(x, rate, 16000,
                                                                          24000) * 1.01 + 1e-9


def test_int16_array_is_scaled_and_returned_as_int16(prior):
    x = speech_like(1.0)
    xi = np.round(x * 32768).astype(np.int16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = enhance(xi, 16000, prior=prior, config=FAST)
    messages = [str(w.message) for w in caught]
    assert any("int16 samples scaled by 1/32768" in m for m in messages), messages
    assert not any("clipped" in m for m in messages), messages
    assert res.waveform.dtype == np.int16 and res.noise.dtype == np.int16
    ref = enhance(xi.astype(np.float32) / 32768, 16000, prior=prior, config=FAST)
    np.testing.assert_allclose(res.waveform / 32768, ref.waveform, atol=1 / 32768 + 1e-6)


@pytest.mark.filterwarnings("ignore:.*looks clipped")
def test_int_conversions_round_trip():
    for dtype in (np.int16, np.uint8):
        info = np.iinfo(dtype)
        x = np.arange(info.min, info.max + 1, 7, dtype=dtype)
        with pytest.warns(AudioWarning, match=f"{np.dtype(dtype).name} samples scaled"):
            y = check_waveform(x)
        assert y.min() == -1 and y.max() < 1
        np.testing.assert_array_equal(float_to_dtype(y, dtype), x)
    np.testing.assert_array_equal(float_to_dtype(np.array([-2.0, 0.5, 2.0]), np.int16),
                                  [-32768, 16384, 32767])  # clipped to the dtype's range


def test_float_beyond_full_scale_is_kept(prior):
    x = speech_like(1.0) / 0.3 * 2.4  # peak 2.4
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)  # not called clipped
        res = enhance(x, 16000, prior=prior, config=FAST)
    np.testing.assert_allclose(res.waveform + res.noise, x, atol=1e-4)
    assert np.max(np.abs(res.waveform + res.noise)) > 2.3


def test_float_file_beyond_full_scale_gives_a_float_file(prior, tmp_path):
    x = speech_like(1.0) / 0.3 * 2.4
    src = tmp_path / "loud.wav"
    sf.write(str(src), x, 16000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)  # neither "clipped" in nor out
        enhance_file(src, tmp_path / "s.wav", prior=prior, config=FAST,
                     noise_path=tmp_path / "n.wav")
    s, _ = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    n, _ = sf.read(str(tmp_path / "n.wav"), dtype="float32")
    assert sf.info(str(tmp_path / "s.wav")).subtype == "FLOAT"
    np.testing.assert_allclose(s + n, x, atol=1e-4)  # nothing clipped at 1


def test_pcm24_input_gives_pcm24_output(prior, tmp_path):
    src = tmp_path / "in.flac"
    sf.write(str(src), speech_like(1.0, 44100), 44100, subtype="PCM_24")
    info = enhance_file(src, tmp_path / "out.flac", prior=prior, config=FAST)
    out = sf.info(str(tmp_path / "out.flac"))
    assert (out.subtype, out.samplerate, info["sample_rate"]) == ("PCM_24", 44100, 44100)


def test_config_alone_chooses_the_algorithm(prior):
    x = speech_like(0.5)
    cfg = MCEMConfig(iterations=2)
    by_config = enhance(x, 16000, prior=prior, config=cfg, seed=3)
    by_both = enhance(x, 16000, prior=prior, config=cfg, algorithm="mcem", seed=3)
    np.testing.assert_array_equal(by_config.waveform, by_both.waveform)
    with pytest.raises(TypeError, match="algorithm='vem' takes a VEMConfig.*'mcem'"):
        enhance(x, 16000, prior=prior, config=cfg, algorithm="vem")


def test_too_short_names_the_file(prior, tmp_path):
    src = tmp_path / "short.wav"
    sf.write(str(src), speech_like(0.03), 16000)
    with pytest.raises(AudioError, match=r"short\.wav: signal has 480 samples .*shorter than "
                                         r"one STFT frame"):
        enhance_file(src, tmp_path / "out.wav", prior=prior, config=FAST)
    assert not (tmp_path / "out.wav").exists()


def test_file_exists_error_names_the_api_parameter(prior, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(str(src), speech_like(0.5), 16000)
    enhance_file(src, tmp_path / "out.wav", prior=prior, config=FAST)
    with pytest.raises(FileExistsError, match=r"overwrite=True") as err:
        enhance_file(src, tmp_path / "out.wav", prior=prior, config=FAST)
    assert "--overwrite" not in str(err.value)
