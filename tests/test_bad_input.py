"""Bad inputs: each is refused with one ``error:`` line and leaves no file behind; documented
conversions succeed with one ``warning:`` line each."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like, write_wav

HOP = 256


def refused(invoke, expect_error, tmp_path: Path, target, *needles, extra=()) -> str:
    """Run enhance on ``target`` into ``tmp_path/out`` and check the one-line refusal and that
    no output (nor temporary file) was left anywhere under ``tmp_path``."""
    out = tmp_path / "out"
    result = invoke("enhance", target, "--output-dir", out, *extra)
    line = expect_error(result, *needles)
    leftovers = [p for p in tmp_path.rglob("*") if "_enhanced" in p.name or ".part" in p.name]
    assert not leftovers, leftovers
    assert not out.exists() or not any(out.iterdir())
    return line


# -- refused inputs -------------------------------------------------------------------------

def test_missing_path(tmp_path, invoke, expect_error, fast):
    refused(invoke, expect_error, tmp_path, tmp_path / "nothing.wav", "nothing.wav",
            "no such file", extra=fast)


def test_folder_without_audio(tmp_path, invoke, expect_error, fast):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no audio here")
    refused(invoke, expect_error, tmp_path, tmp_path / "docs", "docs", "no audio file",
            extra=fast)


def test_text_file_named_wav(tmp_path, invoke, expect_error, fast):
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio\n" * 20)
    refused(invoke, expect_error, tmp_path, fake, "fake.wav", "not an audio file", extra=fast)


def test_empty_file(tmp_path, invoke, expect_error, fast):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    refused(invoke, expect_error, tmp_path, empty, "empty.wav", "empty file (0 bytes)",
            extra=fast)


def test_wav_with_zero_samples(tmp_path, invoke, expect_error, fast):
    path = tmp_path / "nosamples.wav"
    sf.write(str(path), np.zeros(0, np.float32), 16000)
    assert path.stat().st_size > 0
    refused(invoke, expect_error, tmp_path, path, "nosamples.wav", "0 samples", extra=fast)


def test_all_zero_signal(tmp_path, invoke, expect_error, fast):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(20000, np.float32), 16000)
    refused(invoke, expect_error, tmp_path, path, "silence.wav", "silent", extra=fast)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples(tmp_path, invoke, expect_error, fast, bad):
    x = speech_like(1.0)
    x[5000] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    assert not np.all(np.isfinite(sf.read(str(path))[0]))
    refused(invoke, expect_error, tmp_path, path, "nonfinite.wav", "NaN or infinite",
            extra=fast)


def test_shorter_than_one_frame(tmp_path, invoke, expect_error, fast):
    path = tmp_path / "short.wav"
    sf.write(str(path), speech_like(1.0)[:500], 16000)
    refused(invoke, expect_error, tmp_path, path, "short", "shorter than one STFT frame",
            extra=fast)


def test_bad_file_in_batch_stops_before_anything(tmp_path, invoke, expect_error, fast):
    """A header problem in any input is found before the first file is processed."""
    write_wav(tmp_path / "in" / "a.wav")
    (tmp_path / "in" / "b.wav").write_text("garbage")
    refused(invoke, expect_error, tmp_path, tmp_path / "in", "b.wav", "not an audio file",
            extra=fast)


# -- checkpoints ----------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this object would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_checkpoint_running_code_is_refused(tmp_path, invoke, expect_error):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "speechvae-prior", "payload": _RunsCode(marker)}, evil)
    noisy = write_wav(tmp_path / "noisy.wav")
    refused(invoke, expect_error, tmp_path, noisy, "evil.pt", "refused",
            extra=["--prior", evil, "--iterations", "3"])
    assert not marker.exists()


def test_checkpoint_not_a_prior(tmp_path, invoke, expect_error):
    noisy = write_wav(tmp_path / "noisy.wav")
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint")
    refused(invoke, expect_error, tmp_path, noisy, "notes.pt", "checkpoint",
            extra=["--prior", notes])
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    refused(invoke, expect_error, tmp_path, noisy, "not a speechvae prior",
            extra=["--prior", other])


def test_unknown_prior_name(tmp_path, invoke, expect_error):
    noisy = write_wav(tmp_path / "noisy.wav")
    refused(invoke, expect_error, tmp_path, noisy, "no-such-prior",
            extra=["--prior", "no-such-prior"])


def test_train_bad_config(tmp_path, invoke, expect_error):
    write_wav(tmp_path / "speech" / "a.wav")
    conf = tmp_path / "conf.yaml"
    conf.write_text("prior:\n  name: vae\n  config:\n    hidden_dimz: [16]\n")
    expect_error(invoke("train", "--config", conf, "--out", tmp_path / "run", "--train-dir",
                        tmp_path / "speech"), "prior.config", "hidden_dimz")
    conf.write_text("prior:\n  name: transformer\n")
    expect_error(invoke("train", "--config", conf, "--out", tmp_path / "run", "--train-dir",
                        tmp_path / "speech"), "unknown prior", "transformer")
    conf.write_text("prior: [unclosed\n")
    expect_error(invoke("train", "--config", conf, "--out", tmp_path / "run", "--train-dir",
                        tmp_path / "speech"), "not valid YAML")
    assert not (tmp_path / "run").exists()


def test_train_needs_two_files_to_split(tmp_path, invoke, expect_error):
    write_wav(tmp_path / "speech" / "a.wav")
    conf = tmp_path / "conf.yaml"
    conf.write_text("prior:\n  name: vae\n  config:\n    hidden_dims: [16]\n    latent_dim: 4\n")
    expect_error(invoke("train", "--config", conf, "--out", tmp_path / "run", "--train-dir",
                        tmp_path / "speech"), "at least 2", "--val-dir")


# -- documented conversions: succeed with a warning -----------------------------------------

def converted(invoke, tmp_path: Path, path: Path, fast, *needles, options=(),
              rate=None) -> np.ndarray:
    """Enhance ``path``; exit 0, a ``warning:`` line holding the needles, output mono at
    ``rate`` (default the input's) with the input's duration (within a hop)."""
    info = sf.info(str(path))
    rate = rate or info.samplerate
    result = invoke("enhance", path, *fast, *options)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), result.stderr
    assert any(all(n.lower() in line.lower() for n in needles) for line in lines), lines
    out = path.with_name(path.stem + "_enhanced.wav")
    y, sr = sf.read(str(out), always_2d=True)
    assert sr == rate and y.shape[1] == 1
    assert abs(y.shape[0] - info.frames / info.samplerate * rate) <= HOP
    return y[:, 0]


def test_clipped_input_warns(tmp_path, invoke, fast):
    x = np.clip(4 * speech_like(1.0), -1, 1)
    path = tmp_path / "clipped.wav"
    sf.write(str(path), x, 16000)
    converted(invoke, tmp_path, path, fast, "clipped")


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_output_rate_16k_resamples_with_a_warning(tmp_path, invoke, fast, rate):
    path = write_wav(tmp_path / f"at{rate}.wav", seconds=1.0, sample_rate=rate)
    converted(invoke, tmp_path, path, fast, f"from {rate} Hz", "16000 Hz",
              options=["--output-rate", "16000"], rate=16000)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_output_keeps_the_input_rate_and_length(tmp_path, invoke, fast, rate):
    path = write_wav(tmp_path / f"at{rate}.wav", seconds=1.3, sample_rate=rate)
    result = invoke("enhance", path, *fast, "--noise-output")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # the input's rate is the default: nothing to warn about
    for suffix in ("_enhanced.wav", "_noise.wav"):
        info = sf.info(str(path.with_name(path.stem + suffix)))
        assert info.samplerate == rate and info.frames == round(1.3 * rate), suffix


def test_stereo_44k_gives_44k_of_the_same_duration(tmp_path, invoke, fast):
    path = write_wav(tmp_path / "stereo.wav", seconds=2.5, sample_rate=44100, channels=2)
    result = invoke("enhance", path, *fast)
    assert result.exit_code == 0, result.output
    assert "2 channels averaged to mono" in result.stderr
    info = sf.info(str(tmp_path / "stereo_enhanced.wav"))
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, round(2.5 * 44100))


def test_stereo_is_downmixed(tmp_path, invoke, fast):
    path = write_wav(tmp_path / "stereo.wav", channels=2)
    converted(invoke, tmp_path, path, fast, "2 channels", "mono")
