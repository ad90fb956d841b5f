"""Worker processes over files (``--jobs``, ``enhance_files(workers=...)``): the same outputs
as one process, warnings and progress brought back, the defaults and help texts."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from conftest import write_wav

from speechvae.audio import AudioWarning
from speechvae.enhancement import VEMConfig, enhance_files
from speechvae.parallel import available_cores

FAST = VEMConfig(iterations=3)


def _folder(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write_wav(root / "in" / f"f{i}.wav", seconds=0.6 + 0.4 * i, seed=i)
    return root / "in"


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sf.read(str(p), dtype="int16")[0] for p in sorted(folder.glob("*.wav"))}


def test_jobs_outputs_equal_one_process(tmp_path, invoke, fast):
    src = _folder(tmp_path)
    one = invoke("enhance", src, *fast, "--output-dir", tmp_path / "one", "--jobs", "1",
                 "--noise-output", "--json")
    two = invoke("enhance", src, *fast, "--output-dir", tmp_path / "two", "--jobs", "2",
                 "--noise-output", "--json")
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    a, b = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert len(a) == 6 and a.keys() == b.keys()
    for name in a:  # bit for bit: every file is seeded alone, one thread in each process
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert (s1["jobs"], s1["threads"], s2["jobs"], s2["threads"]) == (1, 1, 2, 1)
    # results come back in input order whatever order the processes finish in
    assert [f["input"] for f in s2["files"]] == [f["input"] for f in s1["files"]]


def test_default_jobs_from_available_cores(tmp_path, invoke, fast):
    src = _folder(tmp_path, 2)
    result = invoke("enhance", src, *fast, "--output-dir", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["jobs"] == min(available_cores(), 2) and summary["threads"] == 1


def test_jobs_keep_going_reports_bad_file(tmp_path, invoke, fast):
    src = _folder(tmp_path)
    sf.write(str(src / "short.wav"), np.full(300, 0.1, np.float32), 16000)
    result = invoke("enhance", src, *fast, "--output-dir", tmp_path / "out", "--jobs", "2",
                    "--keep-going")
    assert result.exit_code == 1
    assert "short.wav: signal has 300 samples" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == [
        "f0_enhanced.wav", "f1_enhanced.wav", "f2_enhanced.wav"]


def test_enhance_files_workers_api(tmp_path, tiny_prior):
    src = _folder(tmp_path)
    write_wav(src / "stereo.wav", seconds=0.8, channels=2, sample_rate=22050)
    inputs = sorted(src.glob("*.wav"))
    jobs_a = [(p, tmp_path / "a" / p.name, None) for p in inputs]
    jobs_b = [(p, tmp_path / "b" / p.name, None) for p in inputs]
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioWarning)
        serial = dict(enhance_files(jobs_a, prior=str(tiny_prior), config=FAST))
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pooled = dict(enhance_files(jobs_b, prior=str(tiny_prior), config=FAST, workers=2,
                                    progress=lambda *a: seen.append(a)))
    assert sorted(pooled) == list(range(len(inputs)))
    for i, p in enumerate(inputs):
        assert not isinstance(pooled[i], Exception), pooled[i]
        assert pooled[i]["sample_rate"] == serial[i]["sample_rate"]
        np.testing.assert_array_equal(sf.read(str(jobs_a[i][1]))[0],
                                      sf.read(str(jobs_b[i][1]))[0], err_msg=p.name)
    assert pooled[inputs.index(src / "stereo.wav")]["sample_rate"] == 22050
    # a warning raised in whichever process ran the file reaches the caller
    assert any(issubclass(w.category, AudioWarning) and "2 channels" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    # progress of every file, with its job index
    assert {i for i, _, _ in seen} == set(range(len(inputs)))


def test_jobs_with_batches(tmp_path, tiny_prior):
    src = _folder(tmp_path, 4)
    inputs = sorted(src.glob("*.wav"))
    torch.set_num_threads(1)
    a = dict(enhance_files([(p, tmp_path / "a" / p.name, None) for p in inputs],
                           prior=str(tiny_prior), config=FAST, batch_size=2))
    b = dict(enhance_files([(p, tmp_path / "b" / p.name, None) for p in inputs],
                           prior=str(tiny_prior), config=FAST, batch_size=2, workers=2))
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for p in inputs:
        np.testing.assert_array_equal(sf.read(str(tmp_path / "a" / p.name))[0],
                                      sf.read(str(tmp_path / "b" / p.name))[0])


def test_help_texts(invoke):
    text = " ".join(invoke("enhance", "--help").stdout.split())
    assert "Every prior batches" in text and "one by one" not in text
    assert "--jobs" in text and "--output-rate" in text


def test_progress_bar_with_jobs(tmp_path, invoke, fast):
    src = _folder(tmp_path)
    result = invoke("enhance", src, *fast, "--output-dir", tmp_path / "out", "--jobs", "2",
                    "--progress")
    assert result.exit_code == 0, result.output
    assert "enhance: " in result.stderr and "s audio" in result.stderr
    assert "3/3 files" in result.stderr


def test_heartbeat_redraws_between_updates():
    import time

    from speechvae_cli.enhance import _Heartbeat

    class Bar:
        disable, refreshed = False, 0

        def refresh(self):
            self.refreshed += 1

    bar = Bar()
    with _Heartbeat(bar, interval=0.01):
        time.sleep(0.2)
    count = bar.refreshed
    assert count >= 3  # the clock moves during a long segment
    time.sleep(0.05)
    assert bar.refreshed == count  # stopped with the block
    quiet = Bar()
    quiet.disable = True
    with _Heartbeat(quiet, interval=0.01):
        time.sleep(0.05)
    assert quiet.refreshed == 0
