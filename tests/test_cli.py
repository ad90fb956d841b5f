"""Command-line interface: enhance, score, train and priors on small generated signals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like, write_wav

HOP = 256  # samples at 16 kHz: the tolerance on output durations


def read(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert x.shape[1] == 1, "output must be mono"
    return x[:, 0], sr


def assert_output_like(output: Path, input_seconds: float) -> np.ndarray:
    """Output exists, is 16 kHz mono with the input's duration (within a hop)."""
    assert output.is_file(), output
    x, sr = read(output)
    assert sr == 16000
    assert abs(x.size - input_seconds * 16000) <= HOP
    assert np.all(np.isfinite(x)) and np.any(x)
    return x


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".part" in p.name], list(folder.rglob("*"))


# -- entry points ---------------------------------------------------------------------------

def test_python_m_speechvae_help():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "speechvae", "--help"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in ("enhance", "score", "train", "priors"):
        assert command in proc.stdout
    assert proc.stderr == ""


def test_version_and_unknown_command(invoke, expect_error):
    from speechvae import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.stdout
    expect_error(invoke("denoise", "x.wav"), "no such command", exit_code=2)


def test_library_does_not_import_click():
    code = ("import sys, speechvae, speechvae.enhancement, speechvae.training, "
            "speechvae.metrics; assert 'click' not in sys.modules, 'click imported'")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


# -- enhance --------------------------------------------------------------------------------

def test_enhance_default_output_beside_input(tmp_path, invoke, fast):
    noisy = write_wav(tmp_path / "noisy.wav", seconds=1.3)
    result = invoke("enhance", noisy, *fast)
    assert result.exit_code == 0, result.output
    assert_output_like(tmp_path / "noisy_enhanced.wav", 1.3)
    assert "noisy_enhanced.wav" in result.stdout
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.wav", "noisy_enhanced.wav"]


def test_enhance_output_option(tmp_path, invoke, fast):
    noisy = write_wav(tmp_path / "noisy.wav")
    out = tmp_path / "sub" / "clean.wav"
    result = invoke("enhance", noisy, "-o", out, *fast)
    assert result.exit_code == 0, result.output
    assert_output_like(out, 1.0)
    assert not (tmp_path / "noisy_enhanced.wav").exists()


def test_enhance_output_dir_several_files(tmp_path, invoke, fast):
    a = write_wav(tmp_path / "in" / "a.wav", seed=1)
    b = write_wav(tmp_path / "elsewhere" / "b.wav", seconds=1.5, seed=2)
    result = invoke("enhance", a, b, "--output-dir", tmp_path / "out", *fast)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_enhanced.wav",
                                                                     "b_enhanced.wav"]
    assert_output_like(tmp_path / "out" / "a_enhanced.wav", 1.0)
    assert_output_like(tmp_path / "out" / "b_enhanced.wav", 1.5)


def test_enhance_folder_keeps_subfolders(tmp_path, invoke, fast):
    write_wav(tmp_path / "in" / "x.wav", seed=1)
    write_wav(tmp_path / "in" / "spk1" / "x.wav", seed=2)  # same name, other sub-folder
    write_wav(tmp_path / "in" / "spk2" / "y.flac", seed=3)
    (tmp_path / "in" / "notes.txt").write_text("not audio, ignored")
    result = invoke("enhance", tmp_path / "in", "--output-dir", tmp_path / "out", *fast)
    assert result.exit_code == 0, result.output
    found = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["spk1/x_enhanced.wav", "spk2/y_enhanced.wav", "x_enhanced.wav"]
    x1, _ = read(tmp_path / "out" / "x_enhanced.wav")
    x2, _ = read(tmp_path / "out" / "spk1" / "x_enhanced.wav")
    assert not np.array_equal(x1, x2)


def test_enhance_folder_twice_leaves_out_previous_outputs(tmp_path, invoke, fast):
    write_wav(tmp_path / "a.wav")
    assert invoke("enhance", tmp_path, *fast).exit_code == 0
    result = invoke("enhance", tmp_path, *fast, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "warning: left out 1 file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "a_enhanced.wav"]


def test_enhance_refuses_existing_output(tmp_path, invoke, fast, expect_error):
    noisy = write_wav(tmp_path / "noisy.wav")
    out = tmp_path / "noisy_enhanced.wav"
    out.write_bytes(b"precious")
    result = invoke("enhance", noisy, *fast)
    expect_error(result, "noisy_enhanced.wav", "output exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    no_temporaries(tmp_path)


def test_enhance_checks_all_outputs_before_processing(tmp_path, invoke, fast, expect_error):
    a = write_wav(tmp_path / "a.wav", seed=1)
    b = write_wav(tmp_path / "b.wav", seed=2)
    (tmp_path / "b_enhanced.wav").write_bytes(b"precious")
    expect_error(invoke("enhance", a, b, *fast), "b_enhanced.wav", "exists")
    assert not (tmp_path / "a_enhanced.wav").exists()  # nothing half done
    assert (tmp_path / "b_enhanced.wav").read_bytes() == b"precious"


def test_enhance_overwrite(tmp_path, invoke, fast):
    noisy = write_wav(tmp_path / "noisy.wav")
    out = tmp_path / "noisy_enhanced.wav"
    out.write_bytes(b"old")
    result = invoke("enhance", noisy, *fast, "--overwrite")
    assert result.exit_code == 0, result.output
    assert_output_like(out, 1.0)
    no_temporaries(tmp_path)


def test_enhance_skip_existing(tmp_path, invoke, fast):
    a = write_wav(tmp_path / "a.wav", seed=1)
    b = write_wav(tmp_path / "b.wav", seed=2)
    (tmp_path / "a_enhanced.wav").write_bytes(b"done before")
    result = invoke("enhance", a, b, *fast, "--skip-existing", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [Path(f["input"]).name for f in summary["files"]] == ["b.wav"]
    assert summary["skipped"] == 1
    assert (tmp_path / "a_enhanced.wav").read_bytes() == b"done before"
    assert_output_like(tmp_path / "b_enhanced.wav", 1.0)
    again = invoke("enhance", a, b, *fast, "--skip-existing")  # says how many it skipped
    assert again.exit_code == 0, again.output
    assert "enhanced 0 file(s)" in again.stdout and "skipped 2 whose outputs exist" in again.stdout


def test_enhance_never_overwrites_an_input(tmp_path, invoke, fast, expect_error):
    a = write_wav(tmp_path / "a.wav", seed=1)
    b = write_wav(tmp_path / "a_enhanced.wav", seed=2)  # an input named like a's output
    before = b.read_bytes()
    expect_error(invoke("enhance", a, b, *fast, "--overwrite"), "overwrite the input")
    assert b.read_bytes() == before
    expect_error(invoke("enhance", a, "-o", a, *fast, "--overwrite"), "overwrite the input")


def test_enhance_name_clash_refused(tmp_path, invoke, fast, expect_error):
    a = write_wav(tmp_path / "x.wav", seed=1)
    b = write_wav(tmp_path / "x.flac", seed=2)
    expect_error(invoke("enhance", a, b, *fast), "both be written", "x_enhanced.wav")
    assert not (tmp_path / "x_enhanced.wav").exists()


def test_enhance_seed_reproducible(tmp_path, invoke, fast):
    noisy = write_wav(tmp_path / "noisy.wav")
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / f"{name}.wav"
        result = invoke("enhance", noisy, "-o", out, "--seed", seed, *fast)
        assert result.exit_code == 0, result.output
        outs[name] = read(out)[0]
    assert np.array_equal(outs["a"], outs["b"])
    assert not np.array_equal(outs["a"], outs["c"])


def test_enhance_noise_output_and_json(tmp_path, invoke, fast):
    noisy = write_wav(tmp_path / "noisy.wav", seconds=1.2)
    result = invoke("enhance", noisy, "--noise-output", "--json", "--nmf-rank", 4,
                    "--threads", 1, *fast)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["config"]["iterations"] == 3 and summary["config"]["nmf_rank"] == 4
    (entry,) = summary["files"]
    assert entry["output"] == str(tmp_path / "noisy_enhanced.wav")
    assert entry["noise"] == str(tmp_path / "noisy_noise.wav")
    assert abs(entry["duration_s"] - 1.2) < 1e-3 and entry["iterations"] == [3]
    speech = assert_output_like(tmp_path / "noisy_enhanced.wav", 1.2)
    noise, _ = read(tmp_path / "noisy_noise.wav")
    x, _ = read(noisy)
    # Wiener masks sum to one: speech + noise gives back the input (16-bit rounding aside)
    assert np.max(np.abs(speech + noise - x)) < 1e-3


def test_enhance_keep_going(tmp_path, invoke, fast):
    write_wav(tmp_path / "in" / "a.wav")
    sf.write(str(tmp_path / "in" / "b.wav"), np.zeros(16000, np.float32), 16000)
    write_wav(tmp_path / "in" / "c.wav", seed=3)
    result = invoke("enhance", tmp_path / "in", "--output-dir", tmp_path / "out", "--keep-going",
                    *fast)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "b.wav" in errors[0] and "silent" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_enhanced.wav",
                                                                     "c_enhanced.wav"]


def test_enhance_output_option_needs_one_file(tmp_path, invoke, fast, expect_error):
    a = write_wav(tmp_path / "a.wav", seed=1)
    b = write_wav(tmp_path / "b.wav", seed=2)
    expect_error(invoke("enhance", a, b, "-o", tmp_path / "o.wav", *fast), "-o/--output",
                 exit_code=2)
    expect_error(invoke("enhance", tmp_path, "-o", tmp_path / "o.wav", *fast), "folder",
                 exit_code=2)
    expect_error(invoke("enhance", a, "-o", tmp_path / "o.wav", "--output-dir", tmp_path / "d",
                        *fast), "cannot be used together", exit_code=2)
    expect_error(invoke("enhance", a, "-o", tmp_path / "o.mp3", *fast), "extension")
    assert not list(tmp_path.glob("o.*")) and not (tmp_path / "d").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_enhance_cuda_unavailable(tmp_path, invoke, fast, expect_error):
    noisy = write_wav(tmp_path / "noisy.wav")
    expect_error(invoke("enhance", noisy, "--device", "cuda", *fast), "cuda is not available")
    expect_error(invoke("enhance", noisy, "--device", "tpu", *fast), "expected cpu")
    assert not (tmp_path / "noisy_enhanced.wav").exists()


# -- score ----------------------------------------------------------------------------------

METRIC_NAMES = ["SI-SDR", "PESQ-WB", "PESQ-NB", "STOI", "ESTOI"]


def test_score_identical_signals_json(tmp_path, invoke):
    from speechvae.metrics import METRICS

    assert list(METRICS) == METRIC_NAMES
    ref = write_wav(tmp_path / "ref.wav", seconds=2.0, noise=0.0)
    result = invoke("score", ref, ref, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    (scores,) = payload["files"]
    assert set(METRIC_NAMES) <= set(scores)
    assert scores["SI-SDR"] == "inf" or scores["SI-SDR"] > 100
    assert scores["PESQ-WB"] > 4.4 and scores["STOI"] > 0.99 and scores["ESTOI"] > 0.99


def test_score_orders_estimates(tmp_path, invoke):
    clean = speech_like(2.0, noise=0.0)
    rng = np.random.default_rng(5)
    sf.write(str(tmp_path / "ref.wav"), clean, 16000)
    sf.write(str(tmp_path / "good.wav"), clean + 0.003 * rng.standard_normal(clean.size),
             16000)
    sf.write(str(tmp_path / "bad.wav"), clean + 0.1 * rng.standard_normal(clean.size), 16000)
    good = json.loads(invoke("score", tmp_path / "ref.wav", tmp_path / "good.wav",
                             "--json").stdout)["files"][0]
    bad = json.loads(invoke("score", tmp_path / "ref.wav", tmp_path / "bad.wav",
                            "--json").stdout)["files"][0]
    assert 30 < good["SI-SDR"] < 60 and bad["SI-SDR"] < good["SI-SDR"] - 20
    assert bad["ESTOI"] < good["ESTOI"]


def test_score_table(tmp_path, invoke):
    ref = write_wav(tmp_path / "ref.wav", seconds=2.0)
    est = write_wav(tmp_path / "est.wav", seconds=2.0, seed=9)
    result = invoke("score", ref, est)
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["file", "SI-SDR", "(dB)", *METRIC_NAMES[1:]]
    assert row.split()[0] == str(est) and len(row.split()) == 6


def test_score_dirs_matching(tmp_path, invoke):
    refs, ests = tmp_path / "clean", tmp_path / "enhanced"
    for i, name in enumerate(["u1", "u2", "sub/u3"]):
        write_wav(refs / f"{name}.wav", seconds=2.0, seed=i, noise=0.0)
        write_wav(ests / f"{name}_enhanced.wav", seconds=2.0, seed=i, noise=0.01)
    write_wav(refs / "lonely.wav", seed=7)  # no estimate
    write_wav(ests / "stray_enhanced.wav", seed=8)  # no reference
    result = invoke("score", "--reference-dir", refs, "--estimate-dir", ests, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    pairs = sorted((Path(f["reference"]).relative_to(refs).as_posix(),
                    Path(f["estimate"]).relative_to(ests).as_posix()) for f in payload["files"])
    assert pairs == [("sub/u3.wav", "sub/u3_enhanced.wav"), ("u1.wav", "u1_enhanced.wav"),
                     ("u2.wav", "u2_enhanced.wav")]
    assert payload["count"] == 3 and set(payload["mean"]) == set(METRIC_NAMES)
    mean = np.mean([f["SI-SDR"] for f in payload["files"]])
    assert abs(payload["mean"]["SI-SDR"] - mean) < 1e-9
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert any("lonely.wav" in w for w in warnings)
    assert any("stray_enhanced.wav" in w for w in warnings)
    # table mode (positional folders), with a mean row
    table = invoke("score", refs, ests)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("mean (3 files)")


def test_score_dirs_without_match(tmp_path, invoke, expect_error):
    write_wav(tmp_path / "r" / "a.wav")
    write_wav(tmp_path / "e" / "b.wav")
    result = invoke("score", "--reference-dir", tmp_path / "r", "--estimate-dir", tmp_path / "e")
    assert result.exit_code != 0
    assert result.stderr.splitlines()[-1].startswith("error: no estimate")


def test_score_usage_errors(tmp_path, invoke, expect_error):
    ref = write_wav(tmp_path / "ref.wav")
    expect_error(invoke("score", ref), "expected reference and estimate", exit_code=2)
    expect_error(invoke("score", "--reference-dir", tmp_path), "go together", exit_code=2)
    expect_error(invoke("score", ref, tmp_path / "missing.wav"), "missing.wav", "no such file")


# -- priors ---------------------------------------------------------------------------------

def test_priors_lists_registry(invoke):
    result = invoke("priors")
    assert result.exit_code == 0, result.output
    assert "vae" in result.stdout and "shipped checkpoints" in result.stdout
    payload = json.loads(invoke("list-priors", "--json").stdout)
    assert "vae" in [p["name"] for p in payload["registered"]]
    assert isinstance(payload["shipped"], list)


# -- train ----------------------------------------------------------------------------------

TINY_RECIPE = """\
prior:
  name: vae
  config:
    hidden_dims: [16]
    latent_dim: 4
train:
  epochs: 3
  batch_size: 32
  lr: 0.001
  patience: 5
  seed: 0
data:
  val_fraction: 0.25
"""


def test_train_smoke(tmp_path, invoke, tiny_prior):
    from speechvae.priors import VAE, load_prior

    for i in range(4):
        write_wav(tmp_path / "speech" / f"s{i}.wav", seconds=1.0, seed=i, f0=110 + 30 * i)
    conf = tmp_path / "conf.yaml"
    conf.write_text(TINY_RECIPE)
    out = tmp_path / "run"
    result = invoke("train", "--config", conf, "--out", out, "--train-dir", tmp_path / "speech",
                    "--epochs", 1, "--threads", 1)
    assert result.exit_code == 0, result.output
    assert "best validation loss" in result.stdout
    prior = load_prior(str(out / "best.pt"))
    assert isinstance(prior, VAE)
    assert prior.config.hidden_dims == (16,) and prior.config.latent_dim == 4
    assert prior.metadata["epochs_trained"] == 1
    split = json.loads((out / "files.json").read_text())
    assert len(split["train"]) == 3 and len(split["val"]) == 1
    assert not set(split["train"]) & set(split["val"])
    # the trained prior plugs into enhance
    noisy = write_wav(tmp_path / "noisy.wav", seed=11)
    result = invoke("enhance", noisy, "--prior", out / "best.pt", "--iterations", 2)
    assert result.exit_code == 0, result.output


def test_train_with_val_dir_json(tmp_path, invoke):
    for i in range(2):
        write_wav(tmp_path / "tr" / f"s{i}.wav", seed=i)
    write_wav(tmp_path / "va" / "v.wav", seed=5)
    conf = tmp_path / "conf.yaml"
    conf.write_text(TINY_RECIPE)
    result = invoke("train", "--config", conf, "--out", tmp_path / "run", "--train-dir",
                    tmp_path / "tr", "--val-dir", tmp_path / "va", "--epochs", 1, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # per-epoch lines went to stderr
    assert summary["epochs_run"] == 1 and Path(summary["best_path"]).is_file()
    assert summary["train_config"]["epochs"] == 1


def test_enhance_share_tol_stops_early_or_runs_all(tmp_path, invoke):
    # --share-tol 1 stops every file at the first check (two windows of 25 iterations);
    # --share-tol 0 runs the --iterations cap
    noisy = write_wav(tmp_path / "noisy.wav", seconds=1.2)
    counts = {}
    for tol in ("1", "0"):
        result = invoke("enhance", noisy, "-o", tmp_path / f"out{tol}.wav", "--json",
                        "--iterations", 60, "--share-tol", tol, "--threads", 1)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["config"]["share_tol"] == float(tol)
        counts[tol] = summary["files"][0]["iterations"]
    assert counts == {"1": [50], "0": [60]}
