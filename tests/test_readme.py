"""The README's "Use" section runs as written: every command and every Python block, in order,
in a temporary folder holding short audio cut from examples/ (so the README cannot drift from
the code)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def use_section(text: str) -> str:
    """The text of ``## Use`` up to the next second-level heading."""
    match = re.search(r"^## Use\n(.*?)(?=^## )", text, flags=re.DOTALL | re.MULTILINE)
    assert match, "README.md has no '## Use' section"
    return match.group(1)


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)


def commands(block: str) -> list[list[str]]:
    """Shell lines of a bash block as argument lists: ``\\`` continuations joined, comments
    dropped."""
    joined = re.sub(r"\\\n", " ", block)
    return [args for line in joined.splitlines() if (args := shlex.split(line, comments=True))]


def test_use_section_is_parsed():
    section = use_section(README.read_text())
    cmds = [c for b in code_blocks(section, "bash") for c in commands(b)]
    assert len(cmds) >= 15 and all(c[0] in ("speechvae", "python") for c in cmds)
    assert len(code_blocks(section, "python")) == 1
    # the CPU wheel index comes before the install command at the top
    top = README.read_text()[:1500]
    assert top.index("download.pytorch.org/whl/cpu") < top.index("pip install -e .")


def _cut(src: Path, dst: Path, start_s: float, seconds: float, rate: int | None = None,
         channels: int = 1, **kwargs) -> np.ndarray:
    x, sr = sf.read(str(src), dtype="float32")
    x = x[int(start_s * sr): int((start_s + seconds) * sr)]
    if rate is not None and rate != sr:
        import soxr

        x = soxr.resample(x, sr, rate).astype(np.float32)
        sr = rate
    if channels > 1:
        x = np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), x, sr, **kwargs)
    return x


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The files the Use section names, cut from examples/noisy.wav and clean.wav."""
    noisy, clean = ROOT / "examples" / "noisy.wav", ROOT / "examples" / "clean.wav"
    _cut(noisy, tmp_path / "noisy.wav", 0.0, 2.0)
    _cut(clean, tmp_path / "clean.wav", 0.0, 2.0)
    _cut(noisy, tmp_path / "a.wav", 2.0, 1.0)
    _cut(noisy, tmp_path / "b.flac", 3.0, 1.0, rate=44100, channels=2)  # 44.1 kHz stereo
    for i, name in enumerate(["r1.wav", "sub/r2.wav"]):
        _cut(noisy, tmp_path / "recordings" / name, 1.0 + i, 1.0)
        _cut(clean, tmp_path / "clean" / name, 1.0 + i, 1.0)
    for i in range(3):
        _cut(clean, tmp_path / "my_clean_speech" / f"s{i}.wav", 2.0 * i, 2.0)
    s = _cut(clean, tmp_path / "speech" / "s.wav", 0.5, 1.5)
    x, sr = sf.read(str(noisy), dtype="float32")
    (tmp_path / "noise").mkdir()
    sf.write(str(tmp_path / "noise" / "n.wav"), x[int(0.5 * sr): int(0.5 * sr) + s.size] - s,
             sr)  # the example's noise: noisy minus clean
    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(args: list[str]):
    if args[0] == "python":
        assert args[:3] == ["python", "-m", "speechvae"], args
        proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True,
                              timeout=120, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    from click.testing import CliRunner
    from speechvae_cli import cli

    result = CliRunner().invoke(cli, args[1:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_use_section_runs_verbatim(workdir):
    section = use_section(README.read_text())
    outputs = {}
    for block in code_blocks(section, "bash"):
        for args in commands(block):
            code, out, err = _run(args)
            assert code == 0, f"{shlex.join(args)}\nstdout: {out}\nstderr: {err}"
            assert "Traceback" not in err, err
            outputs[shlex.join(args)] = (out, err)
    for block in code_blocks(section, "python"):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102

    # what the commands promise
    assert sf.info("noisy_enhanced.wav").samplerate == 16000
    b = sf.info("out/b_enhanced.wav")
    assert (b.samplerate, b.channels, b.frames) == (44100, 1, 44100)  # 44.1 kHz stereo input
    assert sf.info("out/speech_16k.wav").samplerate == 16000
    assert Path("out/speech_noise.wav").is_file() and Path("out/sub/r2_enhanced.wav").is_file()
    skip = next(out for cmd, (out, _) in outputs.items() if "--skip-existing" in cmd)
    assert "skipped 2 whose outputs exist" in skip, skip
    assert Path("runs/mine/best.pt").is_file() and Path("runs/myset/index.html").is_file()
    assert Path("runs/myset/figures/scores.png").is_file()
    assert Path("runs/nofig/table.md").is_file() and not Path("runs/nofig/figures").exists()
    assert Path("clean_resynth.wav").is_file() and Path("sample.wav").is_file()
    assert Path("out.wav").is_file()
