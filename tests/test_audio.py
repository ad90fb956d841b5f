"""Audio I/O: reading with conversions, streaming, atomic writing, file listing."""
import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from speechvae.audio import (
    AtomicAudioWriter,
    AudioError,
    AudioWarning,
    check_waveform,
    list_audio_files,
    load_audio,
    stream_audio,
    write_audio,
)


def _noise(n, channels=None, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return np.clip(scale * rng.standard_normal(shape), -0.9, 0.9).astype(np.float32)


def _write(path, x, sr, subtype="FLOAT"):
    sf.write(str(path), x, sr, subtype=subtype)
    return path


def test_load_mono_16k_is_exact_and_silent(tmp_path):
    x = _noise(16000)
    p = _write(tmp_path / "a.wav", x, 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no conversion, so no warning
        y, sr = load_audio(p)
    assert sr == 16000
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_array_equal(y, x)


def test_load_stereo_44k_gives_mono_16k_with_warnings(tmp_path):
    n = int(2.5 * 44100)
    x = _noise(n, channels=2)
    p = _write(tmp_path / "stereo.wav", x, 44100)
    with pytest.warns(AudioWarning) as rec:
        y, sr = load_audio(p)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "channels" in msgs and "resampled" in msgs
    assert all(issubclass(w.category, AudioWarning) for w in rec)
    assert sr == 16000
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(y.size - round(n * 16000 / 44100)) <= 1
    assert y.size / sr == pytest.approx(2.5, abs=1e-3)
    # downmix is the channel average: a mono file of the average gives the same result
    q = _write(tmp_path / "avg.wav", x.mean(axis=1), 44100)
    with pytest.warns(AudioWarning):
        z, _ = load_audio(q)
    np.testing.assert_allclose(y, z, atol=1e-6)


def test_load_other_rate_keeps_a_tone(tmp_path):
    sr_in, f = 22050, 440.0
    t = np.arange(sr_in) / sr_in
    p = _write(tmp_path / "tone.flac", (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32),
               sr_in, subtype="PCM_16")
    with pytest.warns(AudioWarning, match="resampled"):
        y, sr = load_audio(p)
    spec = np.abs(np.fft.rfft(y[2000:-2000]))
    freq = np.fft.rfftfreq(y[2000:-2000].size, 1 / sr)[np.argmax(spec)]
    assert abs(freq - f) < 2.0
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=0.02)


def test_stream_long_file_concatenates_to_load_audio(tmp_path):
    x = _noise(25 * 44100, seed=1)
    p = _write(tmp_path / "long.wav", x, 44100)
    with pytest.warns(AudioWarning):
        blocks = list(stream_audio(p, block_s=10.0))
    with pytest.warns(AudioWarning):
        whole, _ = load_audio(p)
    assert len(blocks) >= 3  # really streamed in several blocks
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert whole.size == 25 * 16000


def test_stream_without_resampling_is_the_file(tmp_path):
    x = _noise(25 * 16000, seed=2)
    p = _write(tmp_path / "long16.wav", x, 16000)
    blocks = list(stream_audio(p, block_s=3.0))
    assert len(blocks) == 9
    np.testing.assert_array_equal(np.concatenate(blocks), x)


@pytest.mark.parametrize("content,match", [
    (np.zeros(1000, np.float32), "silent"),
    (np.zeros(0, np.float32), "empty"),
])
def test_load_rejects_silent_and_empty(tmp_path, content, match):
    p = _write(tmp_path / "bad.wav", content, 16000)
    with pytest.raises(AudioError, match=match):
        load_audio(p)


def test_load_rejects_nan_missing_and_non_audio(tmp_path):
    x = _noise(1000)
    x[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load_audio(_write(tmp_path / "nan.wav", x, 16000))
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    txt = tmp_path / "notes.wav"
    txt.write_text("not audio")
    with pytest.raises(AudioError):
        load_audio(txt)
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)


def test_clipped_input_warns(tmp_path):
    x = np.clip(3 * _noise(16000), -1, 1)
    p = _write(tmp_path / "clip.wav", x, 16000)
    with pytest.warns(AudioWarning, match="clipped"):
        load_audio(p)


def test_check_waveform():
    x = _noise(100)
    np.testing.assert_array_equal(check_waveform(x.astype(np.float64)), x)
    with pytest.warns(AudioWarning, match="channels"):
        y = check_waveform(np.stack([x, 0 * x]))
    np.testing.assert_allclose(y, x / 2)
    for bad in (np.zeros(10), np.zeros(0), np.zeros((1, 2, 3)), np.array([0.1, np.inf])):
        with pytest.raises(AudioError):
            check_waveform(bad)


def test_write_audio_round_trip_and_no_overwrite(tmp_path):
    x = _noise(8000)
    p = tmp_path / "sub" / "out.wav"
    assert write_audio(p, x, 16000) == p
    y, sr = sf.read(str(p), dtype="float32")
    assert sr == 16000 and sf.info(str(p)).subtype == "PCM_16"
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)
    with pytest.raises(FileExistsError):
        write_audio(p, 0.5 * x, 16000)
    np.testing.assert_array_equal(sf.read(str(p), dtype="float32")[0], y)  # untouched
    write_audio(p, 0.5 * x, 16000, overwrite=True)
    np.testing.assert_allclose(sf.read(str(p), dtype="float32")[0], 0.5 * x,
                               atol=1 / 32768 + 1e-7)
    assert sorted(os.listdir(p.parent)) == ["out.wav"]  # no temporary file left


def test_write_audio_clips_out_of_range(tmp_path):
    with pytest.warns(AudioWarning, match="200 samples beyond full scale were clipped"):
        p = write_audio(tmp_path / "c.flac", np.array([2.0, -3.0, 0.25] * 100), 16000)
    y, _ = sf.read(str(p))
    assert y.max() <= 1.0 and y.min() >= -1.0
    assert y[2] == pytest.approx(0.25, abs=1e-4)


def test_atomic_writer_leaves_nothing_on_error(tmp_path):
    p = tmp_path / "out.wav"
    with pytest.raises(RuntimeError, match="boom"), AtomicAudioWriter(p, 16000) as w:
        w.write(_noise(4000))
        assert len(os.listdir(tmp_path)) == 1  # the hidden temporary file
        raise RuntimeError("boom")
    assert not p.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_writer_invisible_until_commit(tmp_path):
    p = tmp_path / "out.flac"
    w = AtomicAudioWriter(p, 16000)
    w.write(_noise(1000))
    w.write(_noise(1000, seed=1))
    assert not p.exists()
    assert w.commit() == p
    assert sf.info(str(p)).frames == 2000
    assert os.listdir(tmp_path) == ["out.flac"]
    w2 = AtomicAudioWriter(tmp_path / "x.wav", 16000)
    w2.abort()
    assert os.listdir(tmp_path) == ["out.flac"]


def test_atomic_writer_bad_extension_leaves_nothing(tmp_path):
    with pytest.raises(AudioError, match="extension"):
        AtomicAudioWriter(tmp_path / "out.mp4", 16000)
    assert os.listdir(tmp_path) == []


def test_atomic_writer_bad_subtype_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="subtype"):
        AtomicAudioWriter(tmp_path / "out.wav", 16000, subtype="NOT_A_SUBTYPE")
    assert os.listdir(tmp_path) == []


def test_list_audio_files(tmp_path):
    d = tmp_path / "corpus"
    (d / "b").mkdir(parents=True)
    for name in ("b/2.flac", "1.WAV", "b/3.ogg"):  # extensions match case-insensitively
        write_audio(d / name, _noise(100), 16000)
    (d / "readme.txt").write_text("x")
    (d / ".hidden.wav").write_bytes(b"")
    found = list_audio_files([d])
    assert found == sorted([d / "1.WAV", d / "b" / "2.flac", d / "b" / "3.ogg"])
    single = d / "readme.txt"
    assert list_audio_files([single, d / "b"]) == [single, d / "b" / "2.flac", d / "b" / "3.ogg"]
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    with pytest.raises(AudioError, match="no audio file"):
        list_audio_files([empty])
    with pytest.raises(AudioError, match="no such file"):
        list_audio_files([tmp_path / "nope"])


def test_check_waveform_accepts_soundfile_layout():
    """A (time, channels) array, as soundfile.read returns it, is averaged over channels."""
    import warnings as _w

    from speechvae.audio import AudioWarning, check_waveform

    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), 0.5 * np.sin(2 * np.pi * 200 * t)], axis=1)
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        mono = check_waveform(stereo)
        assert check_waveform(stereo.T).shape == (16000,)  # (channels, time) too
    assert mono.shape == (16000,)
    np.testing.assert_allclose(mono, 0.75 * np.sin(2 * np.pi * 200 * t), atol=1e-6)
    assert sum(issubclass(w.category, AudioWarning) for w in caught) == 2
