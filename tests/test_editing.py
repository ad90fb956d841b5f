"""Latent source–filter editing: subspaces, regressions, edits, Griffin–Lim with known frames,
and the editing commands."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("parselmouth", reason="editing needs praat-parselmouth")
librosa = pytest.importorskip("librosa", reason="f0 measurement needs librosa")

from speechvae.editing import (
    EditConfig,
    FactorSubspace,
    SourceFilterSubspaces,
    SubspaceError,
    envelope_ratio,
    fit_factor_subspace,
    harmonic_comb,
    harmonic_refinement,
    load_editor,
    piecewise_linear_fit,
    pulse_train,
    synthesize_vowel,
    true_envelope,
)
from speechvae.editing.harmonic import (
    ENVELOPE_STFT,
    harmonic_synthesis,
    lpc_shape,
    minimum_phase,
    sample_f0,
)
from speechvae.editing.subspaces import _hat_basis
from speechvae.stft import DEFAULT_STFT, stft
from speechvae.vocoders import griffin_lim_known_frames


def _pyin_median(y: np.ndarray, sr: int = 16000) -> tuple[float, float]:
    f, voiced, _ = librosa.pyin(y, fmin=60, fmax=500, sr=sr, frame_length=1024,
                                hop_length=160)
    return (float(np.median(f[voiced])) if voiced.any() else float("nan"),
            float(voiced.mean()))


# -- regression -----------------------------------------------------------------------
def test_piecewise_linear_fit_recovers_a_piecewise_linear_function():
    rng = np.random.default_rng(0)
    y = rng.uniform(100, 300, 400)
    truth_knots = np.array([100.0, 150, 220, 300])
    truth_values = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5], [3.0, 0.0]])
    c = _hat_basis(y, truth_knots) @ truth_values
    knots, values = piecewise_linear_fit(y, c, segments=40)
    # the fitted function reproduces its training targets (the truth is in the model class
    # only approximately, since the knots differ: a fine fit gets very close)
    fitted = _hat_basis(y, knots) @ values
    assert np.abs(fitted - c).max() < 0.05
    # with the truth's own knots among the data's quantiles the fit is exact
    y2 = np.repeat(truth_knots, 5)
    knots2, values2 = piecewise_linear_fit(y2, _hat_basis(y2, truth_knots) @ truth_values, 3)
    np.testing.assert_allclose(knots2, truth_knots)
    np.testing.assert_allclose(values2, truth_values, atol=1e-9)


def test_piecewise_linear_fit_needs_two_values():
    with pytest.raises(ValueError, match="two distinct"):
        piecewise_linear_fit(np.full(5, 120.0), np.zeros((5, 2)))


# -- subspaces ------------------------------------------------------------------------
def _toy_subspace(latent=6, seed=0):
    """Frames whose variation within each series lies in a known 2-D plane; the series
    differ by offsets orthogonal to it (the disentangled case)."""
    rng = np.random.default_rng(seed)
    plane = np.linalg.qr(rng.standard_normal((latent, 2)))[0]
    means, variances, labels, series = [], [], [], []
    for s in range(3):
        offset = rng.standard_normal(latent)
        offset -= plane @ (plane.T @ offset)
        for y in np.linspace(100, 300, 21):
            angle = 2 * np.pi * (y - 100) / 210
            coords = np.array([np.cos(angle), np.sin(angle)]) * 2
            frames = offset + plane @ coords + 0.01 * rng.standard_normal((5, latent))
            means.append(torch.from_numpy(frames))
            variances.append(torch.full((5, latent), 1e-4, dtype=torch.float64))
            labels.append(y)
            series.append(s)
    return plane, means, variances, labels, series


def test_subspace_finds_the_plane_and_is_orthonormal():
    plane, means, variances, labels, series = _toy_subspace()
    sub = fit_factor_subspace("f0", means, variances, labels, series, variance_share=0.8)
    assert sub.dim == 2
    U = sub.basis.double()
    torch.testing.assert_close(U.T @ U, torch.eye(2, dtype=torch.float64), atol=1e-6,
                               rtol=0)
    # the learned plane is the true one: projecting the truth onto it keeps it
    P = U @ U.T
    assert torch.linalg.norm(P @ torch.from_numpy(plane) - torch.from_numpy(plane)) < 0.05
    assert sub.variance_kept > 0.99
    # the regression reproduces the mean coordinates of its training labels
    coords = torch.stack([sub.coordinates(m.T.float()).mean(1) for m in means])
    pred = sub.regression(np.array(labels)).T
    assert (coords - pred).abs().max() < 0.05


def test_move_sets_the_coordinates_and_keeps_the_complement():
    _, means, variances, labels, series = _toy_subspace()
    sub = fit_factor_subspace("f0", means, variances, labels, series, dim=2)
    z = torch.randn(6, 30)
    frames = torch.arange(30) % 3 != 0
    moved = sub.move(z, 200.0, frames=frames)
    torch.testing.assert_close(sub.coordinates(moved)[:, frames],
                               sub.regression(200.0).expand(2, int(frames.sum())),
                               atol=1e-5, rtol=0)
    U = sub.basis
    complement = torch.eye(6) - U @ U.T
    torch.testing.assert_close(complement @ moved, complement @ z, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved[:, ~frames], z[:, ~frames])  # unvoiced untouched
    removed = sub.remove(z)
    torch.testing.assert_close(sub.coordinates(removed), torch.zeros(2, 30), atol=1e-5,
                               rtol=0)


def test_harmonic_comb_prefers_the_target_comb_to_its_sub_harmonic_and_octave():
    f0 = torch.full((3,), 150.0)
    comb = harmonic_comb(f0, DEFAULT_STFT)
    fhz = torch.arange(DEFAULT_STFT.n_freq) * DEFAULT_STFT.sample_rate / DEFAULT_STFT.n_fft

    def log_spectrum(pitch):  # peaks at the multiples of pitch
        return torch.cos(2 * torch.pi * fhz / pitch)[:, None].expand(-1, 3)

    on, sub, octave, flat = ((comb * x).sum(0) for x in (
        log_spectrum(150.0), log_spectrum(75.0), log_spectrum(300.0),
        torch.zeros(DEFAULT_STFT.n_freq, 3)))
    assert torch.all(on > 0.3) and torch.all(sub.abs() < 0.05) and torch.all(flat == 0)
    assert torch.all(octave < -0.3)


def test_harmonic_refinement_raises_the_comb_score_outside_the_f0_subspace():
    from speechvae.priors import VAE, VAEConfig

    torch.manual_seed(0)
    prior = VAE(VAEConfig(latent_dim=6)).eval()
    U, _ = torch.linalg.qr(torch.randn(6, 2))
    z = torch.randn(6, 12)
    frames = torch.arange(12) % 4 != 0
    f0 = torch.full((12,), 180.0)
    out = harmonic_refinement(prior, z, f0, U, frames, steps=40, weight=0.01, lr=0.05)

    def score(x):
        with torch.no_grad():
            return (harmonic_comb(f0, prior.stft_config) * prior.decode(x[None])[0].log()).sum(0)

    assert torch.all(score(out)[frames] > score(z)[frames])
    torch.testing.assert_close(U.T @ out, U.T @ z, atol=1e-5, rtol=0)  # f0 coordinates kept
    torch.testing.assert_close(out[:, ~frames], z[:, ~frames], atol=0, rtol=0)
    assert all(p.grad is None for p in prior.parameters())  # the prior is left alone
    assert harmonic_refinement(prior, z, f0, U, frames, steps=0) is z


def test_regression_refuses_values_outside_its_range():
    _, means, variances, labels, series = _toy_subspace()
    sub = fit_factor_subspace("f0", means, variances, labels, series, dim=2)
    with pytest.raises(ValueError, match="outside the learned range 100–300 Hz"):
        sub.regression(400.0)


def test_subspaces_save_load_round_trip(tmp_path):
    _, means, variances, labels, series = _toy_subspace()
    sub = fit_factor_subspace("f0", means, variances, labels, series, dim=2)
    other = fit_factor_subspace("F1", means, variances, labels, series, dim=1)
    s = SourceFilterSubspaces({"f0": sub, "F1": other}, {"name": "vae", "latent_dim": 6})
    path = s.save(tmp_path / "sub.pt")
    back = SourceFilterSubspaces.load(path)
    z = torch.randn(6, 10)
    torch.testing.assert_close(back["f0"].move(z, 150.0), s["f0"].move(z, 150.0))
    labels_, gram = back.disentanglement()
    assert labels_ == ["f0.1", "f0.2", "F1.1"] and gram.shape == (3, 3)
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(SubspaceError, match="not a speechvae subspace file"):
        SourceFilterSubspaces.load(tmp_path / "bad.pt")


# -- synthesis ------------------------------------------------------------------------
@pytest.mark.parametrize("f0_hz", [125.0, 150.0, 300.0])
def test_pulse_train_has_the_f0_of_its_contour(f0_hz):
    f0 = np.full(63, f0_hz)
    f0[:10] = np.nan
    x = pulse_train(f0, 16000, DEFAULT_STFT)
    assert np.all(x[: 9 * 256 - 128] == 0)  # silent while unvoiced
    # harmonics of f0 only, band-limited: the spectrum of the voiced part peaks at k * f0
    seg = x[4000:]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    freqs = np.fft.rfftfreq(seg.size, 1 / 16000)
    peak = freqs[np.argmax(spectrum[freqs < 1.5 * f0_hz])]
    assert abs(peak - f0_hz) < 2.0
    assert spectrum[np.abs(freqs - 0.5 * f0_hz) < 2].max() < 1e-2 * spectrum.max()  # no subharmonic
    # pulses at fractional instants: spacing sr / f0 on average
    peaks = np.nonzero(seg > 0.5 * seg.max())[0]
    starts = peaks[np.insert(np.diff(peaks) > 1, 0, True)]
    np.testing.assert_allclose(np.mean(np.diff(starts)), 16000 / f0_hz, rtol=0.01)


def test_griffin_lim_known_frames_keeps_them_exactly():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(16000).astype(np.float32)) * 0.1
    spec = stft(x)
    known = torch.zeros(spec.shape[-1], dtype=torch.bool)
    known[:25] = True
    mag = spec.abs() * 2.0  # free frames get another magnitude
    y = griffin_lim_known_frames(mag, spec, known, n_iter=8, length=x.numel())
    # samples covered only by known frames (away from the first free frame) are the input
    last_clean = 24 * 256 - 512  # centre of frame 24 minus half a window
    torch.testing.assert_close(y[: last_clean], x[: last_clean], atol=1e-5, rtol=0)
    # free frames took the new magnitude (louder than the input)
    assert y[20000 // 2:].abs().mean() > 1.5 * x[20000 // 2:].abs().mean()


# -- edits with the shipped prior and subspaces ----------------------------------------
@pytest.fixture(scope="module")
def editor():
    torch.set_num_threads(1)
    return load_editor()


def test_shift_f0_moves_a_synthetic_vowel_to_the_target(editor):
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.8)
    assert abs(_pyin_median(x)[0] / 140 - 1) < 0.02
    for target in (250.0,):
        y = editor.shift_f0(x, 16000, target_hz=target)
        f0, voiced = _pyin_median(y)
        assert voiced > 0.8
        assert abs(f0 / target - 1) < 0.05, (target, f0)


def test_unvoiced_frames_are_untouched(editor):
    rng = np.random.default_rng(1)
    noise = (0.05 * rng.standard_normal(16000)).astype(np.float32)  # unvoiced, 1 s
    vowel = synthesize_vowel(150.0, [700, 1200, 2600, 3400], duration=0.6)
    x = np.concatenate([noise, 0.5 * vowel / np.abs(vowel).max()]).astype(np.float32)
    a = editor.analyse(x, 16000)
    assert not a.voiced[:50].any() and a.voiced[70:95].float().mean() > 0.9
    y = editor.shift_f0(x, 16000, target_hz=220.0)
    # samples only covered by frames that are not rebuilt come back exactly; the rebuilt
    # frames are Praat's voiced ones plus Harvest's next to them, never the noise
    track = editor.edit_track(a)
    assert not np.isfinite(track[:50]).any() and np.isfinite(track[a.voiced.cpu().numpy()]).all()
    first_voiced = int(np.flatnonzero(np.isfinite(track))[0])
    stop = (first_voiced - 1) * 256 - 512
    np.testing.assert_allclose(y[:stop], x[:stop], atol=1e-5)
    assert not np.allclose(y[17000:], x[17000:], atol=1e-2)


def test_whisper_removes_voicing(editor):
    from conftest import speech_like

    x = speech_like(1.5, f0=200.0)  # harmonic, gliding pitch, syllable envelope
    assert _pyin_median(x)[1] > 0.9
    assert _pyin_median(editor.reconstruct(x, 16000))[1] > 0.6  # the prior keeps voicing
    assert _pyin_median(editor.whisper(x, 16000))[1] < 0.2  # whispering removes it


def test_semitones_keep_the_contour_and_clip_outside_the_range(editor):
    x = synthesize_vowel(150.0, [640, 1190, 2390, 3300], duration=0.6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = editor.shift_f0(x, 16000, semitones=24)  # 600 Hz: outside, clipped
    assert any("outside the learned range" in str(w.message) for w in caught)
    assert y.shape == x.shape and np.isfinite(y).all()
    with pytest.raises(ValueError, match="exactly one"):
        editor.shift_f0(x, 16000)


def test_edit_formant_checks_its_arguments(editor):
    x = synthesize_vowel(150.0, [640, 1190, 2390, 3300], duration=0.6)
    with pytest.raises(ValueError, match="formant must be 1, 2 or 3"):
        editor.edit_formant(x, 16000, 4, 500.0)
    with pytest.raises(ValueError, match="outside the learned range"):
        editor.edit_formant(x, 16000, 1, 5000.0)
    y = editor.edit_formant(x, 16000, 1, 450.0)
    assert y.shape == x.shape and np.isfinite(y).all()
    # the source is left alone: f0 stays where it was
    f0_out, voiced = _pyin_median(y)
    assert voiced > 0.8 and abs(f0_out / 150.0 - 1) < 0.03


# -- commands -------------------------------------------------------------------------
def test_shift_f0_command(invoke, expect_error, tmp_path):
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6)
    src = tmp_path / "in.wav"
    sf.write(src, x, 16000)
    result = invoke("shift-f0", "--target", 200, src, "--threads", 1)
    assert result.exit_code == 0, result.output
    out = tmp_path / "in_shift-f0.wav"
    y, sr = sf.read(out)
    assert sr == 16000 and y.shape == x.shape
    expect_error(invoke("shift-f0", "--target", 200, src), "output exists", "--overwrite")
    expect_error(invoke("shift-f0", "--target", 900, src, "-o", tmp_path / "o.wav"),
                 "outside the learned range")
    assert not (tmp_path / "o.wav").exists()
    result = invoke("shift-f0", src, "--target", 200, "--semitones", 2)
    assert result.exit_code != 0 and "exactly one" in result.output
    expect_error(invoke("shift-f0", "--target", 200, src, "-o", src), "overwrite the input")
    expect_error(invoke("whisper", tmp_path / "missing.wav"), "no such file")
    assert invoke("whisper", src, "--threads", 1).exit_code == 0
    assert invoke("edit-formant", src, "--formant", 2, "--target", 1500,
                  "--threads", 1).exit_code == 0


def test_learn_subspaces_command(invoke, expect_error, tmp_path):
    out = tmp_path / "sub.pt"
    result = invoke("learn-subspaces", "-o", out, "--files-per-factor", 48, "--threads", 1,
                    "--json")
    assert result.exit_code == 0, result.output
    s = SourceFilterSubspaces.load(out)
    assert set(s.factors) == {"f0", "F1", "F2", "F3"}
    for sub in s.factors.values():
        U = sub.basis
        torch.testing.assert_close(U.T @ U, torch.eye(sub.dim), atol=1e-5, rtol=0)
    expect_error(invoke("learn-subspaces", "-o", out), "output exists")


def test_factor_subspace_is_a_plain_dataclass():
    sub = FactorSubspace("f0", torch.eye(3)[:, :1], torch.ones(3), torch.tensor([1.0, 2.0]),
                         torch.zeros(2, 1))
    assert sub.dim == 1 and sub.label_range == (1.0, 2.0)
    assert abs(sub.variance_kept - 1 / 3) < 1e-6


def test_shift_f0_with_a_waveglow_checkpoint(invoke, tmp_path):
    """Issue 7: ``shift-f0 --vocoder waveglow --vocoder-checkpoint PATH`` end to end (a
    tiny random WaveGlow: the output is noise-like, but rate, length and files are right)."""
    from test_vocoders import tiny_waveglow

    from speechvae.vocoders import save_waveglow

    ckpt = save_waveglow(tiny_waveglow(), tmp_path / "wg.pt")
    src = tmp_path / "in.wav"
    sf.write(src, synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6), 16000)
    out = tmp_path / "wg_out.wav"
    result = invoke("shift-f0", src, "--target", 220, "--vocoder", "waveglow",
                    "--vocoder-checkpoint", ckpt, "-o", out, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    y, sr = sf.read(out)
    assert sr == 16000 and y.size == round(0.6 * 16000) and np.isfinite(y).all()
    result = invoke("shift-f0", src, "--target", 220, "--vocoder", "waveglow",
                    "-o", tmp_path / "x.wav")
    assert result.exit_code != 0 and "--vocoder-checkpoint" in result.output


def test_unvoiced_input_comes_back_unchanged_with_a_warning(editor):
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = editor.shift_f0(x, 16000, target_hz=200.0)
    assert any("no voiced frame" in str(w.message) for w in caught)
    np.testing.assert_allclose(y, x, atol=1e-6)


# -- relative (input-anchored) edits, envelopes, harmonic resynthesis (issue 16) ---------------


def _praat_median_f0(y: np.ndarray, sr: int = 16000) -> float:
    from speechvae.metrics import f0_track

    _, f0 = f0_track(y, sr, method="praat", fmin=60, fmax=500)
    return float(np.nanmedian(f0))


def _burg_median(y: np.ndarray, formant: int, sr: int = 16000) -> float:
    from speechvae.metrics import formant_tracks

    _, fm = formant_tracks(y, sr, max_formant=5500.0)
    return float(np.nanmedian(fm[formant - 1, 10:-10]))


def test_true_envelope_passes_through_the_harmonic_peaks_without_the_comb():
    sr, f0 = 16000, 200.0
    t = np.arange(sr) / sr
    # harmonics whose amplitudes follow a smooth envelope (one resonance at 1 kHz)
    amps = {k: 1.0 / np.sqrt(1 + ((k * f0 - 1000) / 300) ** 2) for k in range(1, 40)}
    x = sum(a * np.cos(2 * np.pi * k * f0 * t) for k, a in amps.items()).astype(np.float32)
    power = stft(torch.from_numpy(x)).abs().square()[:, 5:-5]
    env = true_envelope(power, torch.full((power.shape[1],), f0), sr)
    bins = [round(k * f0 * 1024 / sr) for k in range(2, 30)]
    peak_db = 10 * torch.log10(power[bins]).mean(1)
    env_db = 10 * torch.log10(env[bins]).mean(1)
    assert (peak_db - env_db).abs().max() < 3.0  # through the peaks (dB)
    # plain cepstral smoothing (no iteration) lies well below them
    smooth_db = 10 * torch.log10(true_envelope(power, torch.full((power.shape[1],), f0), sr,
                                               iterations=0)[bins]).mean(1)
    assert (peak_db - smooth_db).mean() > (peak_db - env_db).mean() + 2.0
    # and not through the valleys: half-way between harmonics the envelope stays high
    mid = [round((k + 0.5) * f0 * 1024 / sr) for k in range(2, 30)]
    valley_db = 10 * torch.log10(power[mid]).mean(1)
    assert (10 * torch.log10(env[mid]).mean(1) - valley_db).min() > 20


def test_envelope_ratio_is_one_for_an_identical_decode_and_is_limited():
    rng = np.random.default_rng(0)
    v = torch.from_numpy(rng.uniform(0.1, 10, (513, 12))).float()
    f0 = torch.full((12,), 150.0)
    assert torch.equal(envelope_ratio(v, v, f0, f0, 16000), torch.ones_like(v))
    louder = envelope_ratio(v * 1e4, v, f0, f0, 16000, limit_db=12.0)  # +40 dB
    torch.testing.assert_close(louder, torch.full_like(v, 10 ** 1.2), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="shapes"):
        envelope_ratio(v[:, :3], v, f0, f0, 16000)


@pytest.mark.parametrize("f0_hz", [110.0, 220.0])
def test_harmonic_synthesis_has_the_f0_and_the_envelope_it_is_given(f0_hz):
    sr, n = 16000, 16000
    frames = n // ENVELOPE_STFT.hop_length + 1
    freqs = np.arange(257) * sr / 512
    env = np.exp(-((freqs - 700) / 400) ** 2) + 0.05  # one broad resonance at 700 Hz
    env_t = torch.from_numpy(np.repeat(env[:, None], frames, 1)).float()
    y = harmonic_synthesis(env_t, np.full(n, f0_hz), sr)
    assert abs(_praat_median_f0(y) / f0_hz - 1) < 0.005
    # each harmonic's STFT peak has the envelope's power there (same window as the grid)
    from speechvae.stft import stft as _stft

    p = _stft(torch.from_numpy(y), ENVELOPE_STFT).abs().square()[:, 20:-20].mean(1).numpy()
    for k in (2, 4, 6):
        b = round(k * f0_hz * 512 / sr)
        got = p[b - 1: b + 2].max()
        want = np.interp(k * f0_hz, freqs, env)
        assert abs(10 * np.log10(got / want)) < 1.0, (k, got, want)
    # zero where unvoiced; bad arguments are refused
    assert not harmonic_synthesis(env_t, np.zeros(n), sr).any()
    with pytest.raises(ValueError, match="bins"):
        harmonic_synthesis(env_t[:100], np.full(n, f0_hz), sr)
    with pytest.raises(ValueError, match="phase"):
        harmonic_synthesis(env_t, np.full(n, f0_hz), sr, phase="random")


def test_minimum_phase_of_a_one_pole_filter():
    a = 0.8  # H(z) = 1 / (1 - a z^-1): minimum phase, known phase response
    w = 2 * np.pi * np.arange(257) / 512
    h = 1 / (1 - a * np.exp(-1j * w))
    theta = minimum_phase(torch.from_numpy(np.abs(h)[:, None] ** 2))
    np.testing.assert_allclose(theta[:, 0], np.angle(h), atol=1e-3)


def test_lpc_shape_finds_a_resonance():
    sr = 16000
    rng = np.random.default_rng(0)
    r, fc = 0.97, 1500.0  # AR(2) with a resonance at 1.5 kHz
    a1, a2 = -2 * r * np.cos(2 * np.pi * fc / sr), r * r
    e = rng.standard_normal(sr)
    x = np.zeros(sr)
    for i in range(2, sr):
        x[i] = e[i] - a1 * x[i - 1] - a2 * x[i - 2]
    shape = lpc_shape(x.astype(np.float32), ENVELOPE_STFT)
    peak_hz = np.argmax(shape[:, 20:-20].mean(1)) * sr / 512
    assert abs(peak_hz - fc) < 2 * sr / 512


def test_sample_f0_voicing_threshold():
    times = np.arange(4) * 0.016
    f0 = np.array([np.nan, 100.0, 120.0, np.nan])
    q = np.array([0.004, 0.016, 0.024, 0.040])
    np.testing.assert_allclose(sample_f0(f0, times, q), [0.0, 100.0, 110.0, 0.0])
    assert sample_f0(f0, times, q, threshold=0.0)[0] > 0  # extended voicing reaches frame 0


def test_edit_voicing_takes_the_second_tracker_and_fills_short_gaps():
    from speechvae.editing.common import edit_voicing

    nan = np.nan
    praat = np.array([nan, 100.0, nan, nan, 121.0, nan, nan, nan, nan, 150.0])
    harvest = np.array([90.0, 101.0, nan, nan, nan, nan, 130.0, nan, nan, nan])
    out = edit_voicing(praat, 0.01, harvest, max_gap_s=0.02)
    assert out[0] == 90.0 and out[1] == 100.0  # Praat's value where both are voiced
    # the 2-frame gap between 100 and 121 Hz: log-linear, 110 Hz in the geometric middle
    np.testing.assert_allclose(out[2:4], [100 * 1.1 ** (2 / 3), 100 * 1.1 ** (4 / 3)],
                               rtol=1e-6)
    # Harvest's isolated frame 6 is left out; the 4-frame gap is longer than 20 ms
    assert np.isnan(out[5:9]).all()
    assert out[9] == 150.0
    np.testing.assert_array_equal(edit_voicing(praat, 0.01), praat)  # nothing to add
    with pytest.raises(ValueError, match="differ in length"):
        edit_voicing(praat, 0.01, harvest[:3])
    with pytest.raises(ValueError, match="max_gap_s"):
        edit_voicing(praat, 0.01, None, -1.0)
    with pytest.raises(ValueError, match="voicing must be"):
        EditConfig(voicing="pyin")
    with pytest.raises(ValueError, match="lpc_order"):
        EditConfig(lpc_order=1)


def test_lpc_order_follows_the_input_f0(editor):
    low = editor.analyse(synthesize_vowel(110.0, [640, 1190, 2390, 3300], duration=0.6), 16000)
    high = editor.analyse(synthesize_vowel(220.0, [640, 1190, 2390, 3300], duration=0.6),
                          16000)
    assert editor.lpc_order(low) == 22 and editor.lpc_order(high) == 18
    assert load_editor(config=EditConfig(lpc_order=12)).lpc_order(low) == 12


def test_harvest_voicing_rebuilds_frames_praat_leaves_at_the_input_pitch():
    pytest.importorskip("pyworld", reason="the Harvest voicing needs pyworld")
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=1.2)
    x = x / np.abs(x).max()
    x[int(0.5 * 16000):] *= 0.015  # below Praat's silence threshold, still voiced
    x = x.astype(np.float32)
    quiet = slice(int(0.65 * 16000), int(1.1 * 16000))
    results = {}
    for voicing in ("praat", "praat+harvest"):
        ed = load_editor(config=EditConfig(voicing=voicing))
        a = ed.analyse(x, 16000)
        track = ed.edit_track(a)
        assert np.isfinite(track[np.isfinite(a.f0)]).all()  # Praat's frames are all kept
        y = ed.shift_f0(x, 16000, target_hz=250.0)
        q = y[quiet] / np.abs(y[quiet]).max()
        results[voicing] = (np.isfinite(track).mean(), *_pyin_median(q))
    # Praat calls the quiet part unvoiced: it stays at 140 Hz; with Harvest's voicing it
    # is rebuilt at the target and stays voiced
    assert results["praat"][0] < 0.6 and results["praat+harvest"][0] > 0.9
    assert abs(results["praat"][1] / 140.0 - 1) < 0.03
    assert abs(results["praat+harvest"][1] / 250.0 - 1) < 0.02
    assert results["praat+harvest"][2] > 0.9


def test_without_pyworld_the_edit_warns_and_rebuilds_praats_frames(monkeypatch):
    import speechvae.editing.transforms as tr
    from speechvae.audio import AudioWarning

    def missing(*args, **kwargs):
        raise ImportError("the Harvest voicing needs the 'pyworld' package")

    monkeypatch.setattr(tr, "harvest_f0", missing)
    ed = load_editor(config=EditConfig(voicing_gap_s=0.0))
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6)
    a = ed.analyse(x, 16000)
    with pytest.warns(AudioWarning, match="pyworld.*Praat's voiced frames only"):
        track = ed.edit_track(a)
    np.testing.assert_array_equal(track, a.f0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per editor
        ed.edit_track(a)


def test_relative_reconstruction_is_the_input(editor):
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6)
    a = editor.analyse(x, 16000)
    ratio = editor.latent_envelope_ratio(a, a.z)
    assert torch.equal(ratio, torch.ones_like(ratio))  # identity latent change: ratio 1
    np.testing.assert_allclose(editor.reconstruct(x, 16000), x, atol=1e-5)


def test_relative_shift_f0_reaches_the_target_and_keeps_the_formants(editor):
    x = synthesize_vowel(120.0, [600, 1200, 2500, 3400], duration=0.8)
    f1_in, f2_in = _burg_median(x, 1), _burg_median(x, 2)
    for target in (100.0, 200.0):
        y = editor.shift_f0(x, 16000, target_hz=target)
        assert abs(_praat_median_f0(y) / target - 1) < 0.01
        assert abs(_burg_median(y, 1) / f1_in - 1) < 0.08, target
        assert abs(_burg_median(y, 2) / f2_in - 1) < 0.05, target


def test_the_latent_method_stays_selectable():
    with pytest.raises(ValueError, match="unknown edit method"):
        EditConfig(method="nope")
    with pytest.raises(ValueError, match="f0_envelope"):
        EditConfig(f0_envelope="nope")
    ed = load_editor(config=EditConfig(method="latent"))
    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6)
    y = ed.shift_f0(x, 16000, target_hz=250.0)
    assert abs(_pyin_median(y)[0] / 250 - 1) < 0.05
    # the latent reconstruction is not the input (the decoder smooths it)
    assert np.abs(ed.reconstruct(x, 16000) - x).max() > 1e-2


def test_formant_edit_warns_with_the_achieved_value():
    x = synthesize_vowel(140.0, [500, 1500, 2500, 3400], duration=0.6)
    ed = load_editor(config=EditConfig(formant_tolerance=1e-4, formant_correction_steps=1))
    with pytest.warns(UserWarning, match=r"F1 reached \d+ Hz .* for a 700 Hz target"):
        y = ed.edit_formant(x, 16000, 1, 700.0)
    rec = ed.last_formant
    assert rec["formant"] == 1 and rec["target_hz"] == 700.0
    assert abs(_burg_median(y, 1) - rec["achieved_hz"]) < 0.1 * rec["achieved_hz"]
    # never further from the target than the input was (the input itself is a candidate)
    assert abs(rec["achieved_hz"] - 700.0) <= abs(rec["input_hz"] - 700.0)
    # a loose tolerance: no warning
    ed = load_editor(config=EditConfig(formant_tolerance=10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ed.edit_formant(x, 16000, 1, 700.0)


def test_formant_edit_warns_when_the_other_praat_ceiling_disagrees(monkeypatch):
    # reached with the ceiling chosen from f0, missed with Praat's other one: warn with
    # that measurement (the voice's sex is only guessed from f0)
    from speechvae.editing.transforms import Editor

    x = synthesize_vowel(140.0, [500, 1500, 2500, 3400], duration=0.6)
    ed = load_editor(config=EditConfig(formant_tolerance=0.05, formant_correction_steps=0))
    real = Editor._measure_formant

    def fake(self, y, a, formant, ceiling_hz=None, both_voiced=False):
        if ceiling_hz is None and not both_voiced:  # the editor's own choice: on target
            return 700.0 if np.abs(y).max() > 0 and y is not a.waveform else real(
                self, y, a, formant)
        return 700.0 if ceiling_hz == 5500.0 else 600.0

    monkeypatch.setattr(Editor, "_measure_formant", fake)
    with pytest.warns(UserWarning, match=r"F1 reached 600 Hz .*700 Hz target.*5000 or 5500"):
        ed.edit_formant(x, 16000, 1, 700.0)
    assert ed.last_formant["achieved_hz"] == 700.0  # the editor's own measurement is kept

    def agree(self, y, a, formant, ceiling_hz=None, both_voiced=False):
        return 700.0 if y is not a.waveform else real(self, y, a, formant)

    monkeypatch.setattr(Editor, "_measure_formant", agree)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ed.edit_formant(x, 16000, 1, 700.0)


def test_no_import_cycle_between_transforms_and_subspaces():
    import ast
    from pathlib import Path

    import speechvae.editing as pkg

    root = Path(pkg.__file__).parent

    def imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "transforms" not in imports("subspaces")
    assert not {"transforms", "subspaces"} & imports("common")


def test_edit_commands_method_option_and_achieved_formant(invoke, tmp_path):
    import json

    x = synthesize_vowel(140.0, [640, 1190, 2390, 3300], duration=0.6)
    src = tmp_path / "in.wav"
    sf.write(src, x, 16000)
    result = invoke("shift-f0", "--target", 200, src, "--method", "latent", "-o",
                    tmp_path / "lat.wav", "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["method"] == "latent"
    result = invoke("edit-formant", src, "--formant", 2, "--target", 1500, "-o",
                    tmp_path / "f2.wav", "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["method"] == "relative" and summary["achieved_hz"] > 0
    assert invoke("whisper", src, "--method", "nope").exit_code != 0


def test_import_pyworld_names_the_purpose_and_the_alternative(monkeypatch):
    import sys

    from speechvae.editing.common import import_pyworld

    monkeypatch.setitem(sys.modules, "pyworld", None)  # as if not installed
    with pytest.raises(ImportError, match=r"^the CheapTrick envelope needs the 'pyworld' "
                                          r"package: pip install .*, or EditConfig"):
        import_pyworld("the CheapTrick envelope", "EditConfig(envelope='dap')")
