"""Objective measures: SI-SDR known values, STOI/ESTOI and PESQ sanity, input checks."""
import math

import numpy as np
import pytest

from speechvae import metrics

SR = 16000


def _speechlike(seconds=3.0, seed=0):
    """Vowel-like harmonic signal (gliding f0, three formants) with syllabic modulation."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = np.zeros_like(t)
    for k in range(1, 30):
        fk = k * f0
        amp = sum(np.exp(-0.5 * ((fk - f) / bw) ** 2)
                  for f, bw in ((700, 130), (1200, 150), (2600, 250))) + 0.05
        x += amp / math.sqrt(k) * np.sin(k * phase)
    x *= np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.7
    return 0.3 * x / np.max(np.abs(x))


def _white(n, seed=1):
    return np.random.default_rng(seed).standard_normal(n)


def _orthogonal_noise(s, snr_db, seed=1):
    """Zero-mean noise orthogonal to the zero-mean s with |s|^2/|n|^2 = 10^(snr/10)."""
    n = _white(s.size, seed)
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s
    n -= n.mean()  # s is zero-mean, so this keeps n orthogonal to s
    return n * math.sqrt((s @ s) / (n @ n) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def speech():
    s = _speechlike()
    return s - s.mean()


def test_si_sdr_of_scaled_copy_is_huge(speech):
    for a in (1.0, 0.1, 7.0):
        v = metrics.si_sdr(speech, a * speech)
        assert v == math.inf or v > 100


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 5.0, 17.5, 30.0])
def test_si_sdr_known_values(speech, snr_db):
    n = _orthogonal_noise(speech, snr_db)
    assert abs(n @ speech) < 1e-8 * math.sqrt((n @ n) * (speech @ speech))
    expected = 10 * math.log10((speech @ speech) / (n @ n))
    assert expected == pytest.approx(snr_db, abs=1e-9)
    assert metrics.si_sdr(speech, speech + n) == pytest.approx(snr_db, abs=0.1)
    # the scaled estimate has the same SI-SDR
    assert metrics.si_sdr(speech, 0.05 * (speech + n)) == pytest.approx(snr_db, abs=0.1)


def test_si_sdr_projection_formula():
    # an estimate mixing the reference and an orthogonal component with known weights
    s = np.array([1.0, -1.0, 2.0, -2.0])
    u = np.array([1.0, 1.0, 0.0, 0.0]) - 0.5  # zero-mean, orthogonal to s
    assert s @ u == 0 and s.mean() == 0
    e = 3 * s + 2 * u
    expected = 10 * math.log10((9 * (s @ s)) / (4 * (u @ u)))
    assert metrics.si_sdr(s, e) == pytest.approx(expected, abs=1e-9)


def test_si_sdr_scale_invariant_and_not_symmetric(speech):
    e = speech + 0.3 * _white(speech.size)
    base = metrics.si_sdr(speech, e)
    for a in (1e-3, 0.5, 20.0):
        assert metrics.si_sdr(speech, a * e) == pytest.approx(base, abs=1e-9)
        assert metrics.si_sdr(a * speech, e) == pytest.approx(base, abs=1e-9)
    assert metrics.si_sdr(speech, -e) == pytest.approx(base, abs=1e-9)


def test_si_sdr_zero_mean_option():
    s = np.sin(np.linspace(0, 20, 1000))
    e = s + 5.0  # a DC offset only
    assert metrics.si_sdr(s, e) > 100 or metrics.si_sdr(s, e) == math.inf
    assert metrics.si_sdr(s, e, zero_mean=False) < 10


def test_si_sdr_orthogonal_estimate_and_length_mismatch(speech):
    n = _orthogonal_noise(speech, 0.0)
    assert metrics.si_sdr(speech, n) < -100 or metrics.si_sdr(speech, n) == -math.inf
    # different lengths: cut to the shorter one
    assert metrics.si_sdr(speech, np.concatenate([speech, speech[:100]])) > 100


def test_si_sdr_more_noise_is_worse(speech):
    vals = [metrics.si_sdr(speech, speech + a * _white(speech.size)) for a in (0.01, 0.1, 1)]
    assert vals[0] > vals[1] > vals[2]


def test_stoi_estoi_identical_is_one(speech):
    assert metrics.stoi(speech, speech) == pytest.approx(1.0, abs=1e-6)
    assert metrics.estoi(speech, speech) == pytest.approx(1.0, abs=1e-6)


def test_stoi_decreases_with_noise(speech):
    noisy = speech + _orthogonal_noise(speech, -5.0)
    assert metrics.stoi(speech, noisy) < 0.95
    assert metrics.estoi(speech, noisy) < metrics.estoi(speech, speech)


def test_pesq_identical_high_noisy_low(speech):
    wb_clean = metrics.pesq_wb(speech, speech)
    assert wb_clean > 4.0
    noisy = speech + _orthogonal_noise(speech, 5.0)
    wb_noisy = metrics.pesq_wb(speech, noisy)
    assert wb_noisy < wb_clean - 1.0
    assert 1.0 <= wb_noisy <= 4.65
    assert metrics.pesq_nb(speech, speech) > 4.0
    assert metrics.pesq_nb(speech, noisy) < metrics.pesq_nb(speech, speech)


def test_pesq_rate_checks(speech):
    with pytest.raises(ValueError, match="16 kHz"):
        metrics.pesq_wb(speech, speech, sample_rate=8000)
    with pytest.raises(ValueError):
        metrics.pesq_nb(speech, speech, sample_rate=44100)


def test_score_has_every_metric(speech):
    noisy = speech + _orthogonal_noise(speech, 10.0)
    out = metrics.score(speech, noisy)
    assert tuple(out) == metrics.METRICS
    assert out["SI-SDR"] == pytest.approx(10.0, abs=0.1)
    assert all(np.isfinite(v) for v in out.values())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_score_pesq_nan_when_it_cannot_be_computed():
    # 1000 samples is shorter than PESQ's minimum (1/4 s): PESQ is NaN, SI-SDR still computed
    x = 0.1 * _white(1000)
    out = metrics.score(x, x + 0.01 * _white(x.size, seed=2))
    assert math.isnan(out["PESQ-WB"]) and math.isnan(out["PESQ-NB"])
    assert np.isfinite(out["SI-SDR"]) and out["SI-SDR"] > 10


@pytest.mark.parametrize("fn", [metrics.si_sdr, metrics.stoi, metrics.estoi, metrics.pesq_wb,
                                metrics.pesq_nb])
def test_wrong_shapes_raise(fn, speech):
    with pytest.raises(ValueError):
        fn(np.stack([speech, speech]), speech)
    with pytest.raises(ValueError):
        fn(speech, speech[None, :])
    with pytest.raises(ValueError):
        fn(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError):
        fn(np.float64(1.0), speech)


def test_si_sdr_zero_reference_raises():
    with pytest.raises(ValueError, match="all-zero"):
        metrics.si_sdr(np.zeros(100), np.ones(100))
    with pytest.raises(ValueError):
        metrics.si_sdr(np.ones(100), np.ones(100))  # constant = zero after mean removal
