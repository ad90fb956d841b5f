"""Evaluation: mixing, baselines, ``speechvae mix`` and ``speechvae evaluate`` (tables,
resume, figures, HTML page), on small generated signals."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from speechvae.evaluation import baselines as B
from speechvae.evaluation.mixing import mix, snr_db_of
from speechvae.metrics import METRICS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_corpus = pytest.mark.skipif(not (DATA / "make_mixtures.py").is_file(),
                                  reason=f"corpus not found at {DATA} (../shared/data)")
CHROMIUM = Path("/usr/bin/chromium")


def corpus_script():
    spec = importlib.util.spec_from_file_location("make_mixtures", DATA / "make_mixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_sources(root: Path) -> tuple[Path, Path]:
    """Two speakers' speech and two noise types (white, hum), 16 kHz."""
    rng = np.random.default_rng(0)
    for i, (speaker, seconds) in enumerate((("spk1", 0.9), ("spk2", 0.8))):
        path = root / "speech" / speaker / f"utt{i}.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, speech_like(seconds, seed=i, f0=110 + 60 * i), 16000, subtype="PCM_16")
    for kind, x in (("white", 0.1 * rng.standard_normal(6000)),
                    ("hum", 0.2 * np.sin(2 * np.pi * 100 * np.arange(24000) / 16000)
                     + 0.02 * rng.standard_normal(24000))):
        (root / "noise" / kind).mkdir(parents=True)
        sf.write(root / "noise" / kind / f"{kind}.wav", x, 16000, subtype="PCM_16")
    return root / "speech", root / "noise"


TABLE_KEYS = ("group_by", "group", "method", "n")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- mixing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 10.0, 2.5])
def test_mix_gives_exact_snr(snr):
    clean = speech_like(1.0, seed=1).astype(np.float64)
    noise = np.random.default_rng(2).standard_normal(5000)  # shorter: looped
    c, y = mix(clean, noise, 1234, snr)
    assert c.shape == y.shape == clean.shape
    assert snr_db_of(c, y) == pytest.approx(snr, abs=1e-9)


def test_mix_rescales_jointly_when_clipping():
    clean = 0.9 * speech_like(0.5, seed=3, amplitude=1.0).astype(np.float64)
    noise = np.random.default_rng(4).standard_normal(8000)
    c, y = mix(clean, noise, 0, -5.0)
    assert np.max(np.abs(y)) == pytest.approx(0.99)
    assert snr_db_of(c, y) == pytest.approx(-5.0, abs=1e-9)
    assert np.allclose(c / clean, c[0] / clean[0])  # clean scaled by the same factor


@needs_corpus
def test_mix_equals_corpus_script():
    theirs = corpus_script().mix
    rng = np.random.default_rng(0)
    for n_clean, n_noise, offset, snr in ((16000, 3000, 2500, -5), (8000, 20000, 19999, 10),
                                          (4000, 4000, 0, 0)):
        clean = 0.3 * rng.standard_normal(n_clean)
        noise = rng.standard_normal(n_noise)
        for a, b in zip(mix(clean, noise, offset, snr), theirs(clean, noise, offset, snr)):
            assert np.array_equal(a, b)
    row = read_csv(DATA / "devset.csv")[0]
    clean, _ = sf.read(DATA / row["clean"], dtype="float64")
    noise, _ = sf.read(DATA / row["noise"], dtype="float64")
    args = (int(row["noise_offset"]), float(row["snr_db"]))
    for a, b in zip(mix(clean, noise, *args), theirs(clean, noise, *args)):
        assert np.array_equal(a, b)


@needs_corpus
def test_mix_list_renders_the_corpus_files_byte_for_byte(tmp_path, invoke):
    rows = read_csv(DATA / "devset.csv")[:2]
    lst = tmp_path / "two.csv"
    with open(lst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subprocess.run([sys.executable, str(DATA / "make_mixtures.py"), str(lst),
                    str(tmp_path / "ref"), "--root", str(DATA)], check=True,
                   capture_output=True)
    result = invoke("mix", "--list", lst, "--root", DATA, "--out", tmp_path / "ours")
    assert result.exit_code == 0, result.output
    ref, ours = files_of(tmp_path / "ref"), files_of(tmp_path / "ours")
    wavs = [k for k in ref if k.endswith(".wav")]
    assert len(wavs) == 4 and all(ref[k] == ours[k] for k in wavs)
    ref_rows = read_csv(tmp_path / "ref" / "list.csv")
    our_rows = read_csv(tmp_path / "ours" / "list.csv")
    assert [{k: r[k] for k in ref_rows[0]} for r in our_rows] == ref_rows
    assert our_rows[0]["noise_type"] == Path(rows[0]["noise"]).parent.name


def test_cli_mix_is_reproducible(tmp_path, invoke):
    speech, noise = write_sources(tmp_path)
    outs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = invoke("mix", "--clean", speech, "--noise", noise, "--snr", "-5", "0", "5",
                        "10", "--out", tmp_path / label, "--seed", seed)
        assert result.exit_code == 0, result.output
        outs[label] = files_of(tmp_path / label)
    assert outs["a"] == outs["b"]
    assert outs["a"] != outs["c"]
    rows = read_csv(tmp_path / "a" / "list.csv")
    assert list(rows[0])[:6] == ["name", "clean", "noisy", "snr_db", "speaker", "gender"]
    assert len(rows) == 8 and sorted({r["snr_db"] for r in rows}) == ["-5", "0", "10", "5"]
    assert {r["speaker"] for r in rows} == {"spk1", "spk2"}
    assert {r["noise_type"] for r in rows} <= {"white", "hum"}
    assert rows[0]["name"] == "utt0_snr-5"
    for r in rows:
        c, sr = sf.read(tmp_path / "a" / r["clean"])
        y, _ = sf.read(tmp_path / "a" / r["noisy"])
        assert sr == 16000 and sf.info(tmp_path / "a" / r["noisy"]).subtype == "PCM_16"
        assert snr_db_of(c, y) == pytest.approx(float(r["snr_db"]), abs=0.05)  # 16-bit


def test_cli_mix_options(tmp_path, invoke, expect_error):
    from speechvae_cli.mix import expand_multi_value

    assert expand_multi_value(["--snr", "-5", "0", "+5", "1e1", "--out", "x"], ("--snr",)) == [
        "--snr", "-5", "--snr", "0", "--snr", "+5", "--snr", "1e1", "--out", "x"]
    assert expand_multi_value(["--snr=-5", "2.5", "-x"], ("--snr",)) == [
        "--snr=-5", "--snr", "2.5", "-x"]
    speech, noise = write_sources(tmp_path)
    result = invoke("mix", "--snr=-5", "--clean", speech, "--noise", noise, "--snr", "7.5",
                    "--per-file", "1", "--out", tmp_path / "s", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pairs"] == 2 and summary["snr_db"] == [-5.0, 7.5]  # balanced over files
    expect_error(invoke("mix", "--clean", speech, "--noise", noise, "--snr", "0", "--out",
                        tmp_path / "s"), "exists", "--overwrite")
    expect_error(invoke("mix", "--clean", speech, "--snr", "0", "--out", tmp_path / "t"),
                 "--noise", exit_code=2)
    expect_error(invoke("mix", "--clean", speech, "--noise", noise, "--snr", "zero",
                        "--out", tmp_path / "t"), "--snr", exit_code=2)


# -- baselines -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["noisy", "spectral-gating", "nmf"])
def test_baseline_returns_input_length(name):
    if name == "spectral-gating":
        pytest.importorskip("noisereduce", reason="noisereduce not installed (speechvae[eval])")
    x = speech_like(1.3, seed=5, noise=0.05)[:20_001]  # odd length
    y = B.get_baseline(name)(x, 16000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and np.any(y)


def test_nmf_updates_never_increase_the_divergence():
    g = torch.Generator().manual_seed(0)
    power = torch.rand((65, 40), generator=g, dtype=torch.float64) ** 2 + 1e-3
    costs: list[float] = []
    W = B.learn_dictionary(power, rank=6, iterations=30, costs=costs)
    assert W.shape == (65, 6) and torch.allclose(W.sum(0), torch.ones(6, dtype=W.dtype))
    assert all(b <= a * (1 + 1e-9) for a, b in pairwise(costs))
    costs = []
    speech, noise = B.semi_supervised_nmf(power, W, noise_rank=3, iterations=30, costs=costs)
    assert speech.shape == noise.shape == power.shape
    assert all(b <= a * (1 + 1e-9) for a, b in pairwise(costs))
    assert costs[-1] < costs[0]


def test_speech_dictionary_round_trip(tmp_path):
    from speechvae.stft import STFTConfig

    shipped = B.load_dictionary()
    assert shipped.W.shape == (513, 32) and shipped.metadata["frames"] >= 1000
    path = B.save_dictionary(B.SpeechDictionary(shipped.W[:, :4]), tmp_path / "d.pt")
    loaded = B.load_dictionary(path)
    assert torch.equal(loaded.W, shipped.W[:, :4])
    with pytest.raises(ValueError, match="learned with"):
        B.load_dictionary(path, STFTConfig(n_fft=512, hop_length=128))
    torch.save({"W": shipped.W}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a speech dictionary"):
        B.load_dictionary(tmp_path / "other.pt")
    user = B.NMFBaseline(dictionary=path)
    assert user.settings()["speech_rank"] == 4 and user.settings()["dictionary"] == str(path)
    x = speech_like(0.5, seed=6, noise=0.05)
    assert user(x, 16000).shape == x.shape


def test_missing_optional_packages_say_what_to_install(monkeypatch):
    from speechvae.evaluation.report import require_plotting

    monkeypatch.setitem(sys.modules, "noisereduce", None)
    with pytest.raises(ImportError, match=r"pip install speechvae\[eval\]"):
        B.get_baseline("spectral-gating")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install speechvae\[eval\]"):
        require_plotting()


# -- evaluate --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eval_set(tmp_path_factory) -> Path:
    """4 pairs: 2 utterances at -5 and 5 dB, white and hum noise."""
    from speechvae.evaluation import plan_mixtures, render_mixtures

    root = tmp_path_factory.mktemp("set")
    speech, noise = write_sources(root)
    render_mixtures(plan_mixtures(speech, noise, [-5, 5], seed=0), root / "set")
    return root / "set"


def methods_args(tiny_prior) -> list[str]:
    args = ["--method", "tiny-vem", "--prior", f"tiny={tiny_prior}", "--iterations", "2",
            "--baseline", "noisy", "--baseline", "nmf"]
    if importlib.util.find_spec("noisereduce") is not None:
        args += ["--baseline", "spectral-gating"]
    return args


@pytest.fixture(scope="module")
def evaluated(eval_set, tiny_prior, tmp_path_factory) -> Path:
    """One uninterrupted evaluation of the set."""
    from click.testing import CliRunner
    from speechvae_cli import cli

    pytest.importorskip("matplotlib", reason="matplotlib not installed (speechvae[eval])")
    out = tmp_path_factory.mktemp("eval") / "out"
    result = CliRunner().invoke(cli, [str(a) for a in (
        "evaluate", eval_set, *methods_args(tiny_prior), "--output-dir", out,
        "--threads", "1", "--json")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["computed"] == 4 * len(summary["methods"]) and summary["reused"] == 0
    return out


def same(a: float, b: float) -> bool:
    # equal up to float rounding: STOI/ESTOI may differ in the last bit between two calls on
    # the same arrays (SIMD paths of numpy depend on memory alignment)
    return a == pytest.approx(b, rel=1e-12, abs=1e-15, nan_ok=True)


def test_evaluate_scores_equal_metrics_score_on_the_files(evaluated, eval_set):
    from speechvae.audio import load_audio
    from speechvae.metrics import score

    rows = read_csv(evaluated / "results.csv")
    pairs = {r["name"]: r for r in read_csv(eval_set / "list.csv")}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    assert len(rows) == 4 * len(methods)
    for r in rows:
        clean, _ = load_audio(eval_set / pairs[r["name"]]["clean"])
        estimate, _ = load_audio(evaluated / r["output"], allow_silent=True)
        assert r["output"] == f"{r['method']}/{r['name']}.wav"
        assert estimate.size == clean.size  # every method keeps the input length
        expected = score(clean, estimate)
        assert all(same(float(r[k]), expected[k]) for k in METRICS), (r, expected)
    table = read_csv(evaluated / "table.csv")
    assert {t["group_by"] for t in table} == {"overall", "SNR", "noise type"}
    assert {t["group"] for t in table if t["group_by"] == "SNR"} == {"-5 dB", "5 dB"}
    types = {pairs[n]["noise_type"] for n in pairs}
    assert {t["group"] for t in table if t["group_by"] == "noise type"} == types
    for t in table:
        sel = [r for r in rows if r["method"] == t["method"] and (
            t["group_by"] == "overall"
            or (t["group_by"] == "SNR" and f"{float(r['snr_db']):g} dB" == t["group"])
            or (t["group_by"] == "noise type" and r["noise_type"] == t["group"]))]
        assert int(t["n"]) == len(sel)
        for k in METRICS:
            vals = [float(r[k]) for r in sel if not math.isnan(float(r[k]))]
            want = math.fsum(vals) / len(vals) if vals else math.nan
            assert same(float(t[k]), want)
        rtf = math.fsum(float(r["seconds"]) for r in sel) / math.fsum(
            float(r["duration_s"]) for r in sel)
        assert float(t["RTF"]) == pytest.approx(rtf)
    md = (evaluated / "table.md").read_text()
    overall = next(t for t in table if t["group_by"] == "overall" and t["method"] == "nmf")
    assert "| nmf | 4 | " in md and f"{float(overall['STOI']):.3f}" in md
    for needle in ("threads: 1", "device: cpu", "machine: ", "commit ", "## Per input SNR",
                   "## Per noise type", "RTF"):
        assert needle in md, needle


def test_resumed_run_gives_the_same_table(evaluated, eval_set, tiny_prior, tmp_path, invoke):
    out = tmp_path / "resumed"
    args = ["evaluate", eval_set, *methods_args(tiny_prior), "--output-dir", out,
            "--threads", "1", "--figure-files", "0", "--json"]
    first = invoke(*args, "--limit", "2")
    assert first.exit_code == 0, first.output
    n_methods = len(json.loads(first.stdout)["methods"])
    with open(out / "results.csv", "a") as f:  # a row cut short by a kill
        f.write("utt1_snr-5,noisy,-5.0,white,0.8")
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["reused"] == 2 * n_methods and summary["computed"] == 2 * n_methods

    resumed, straight = read_csv(out / "table.csv"), read_csv(evaluated / "table.csv")
    assert len(resumed) == len(straight)
    for a, b in zip(resumed, straight):
        assert [a[k] for k in TABLE_KEYS] == [b[k] for k in TABLE_KEYS]
        assert all(same(float(a[k]), float(b[k])) for k in METRICS), (a, b)

    def without_rtf(path):  # the Markdown tables, timing column left out
        return [line.rsplit("|", 2)[0] for line in path.read_text().splitlines()
                if line.startswith("|")]

    assert without_rtf(out / "table.md") == without_rtf(evaluated / "table.md")
    assert len(read_csv(out / "results.csv")) == 4 * n_methods
    third = invoke(*args)  # nothing left to do
    assert json.loads(third.stdout)["computed"] == 0


def test_evaluate_refuses_other_settings_and_bad_methods(evaluated, eval_set, tiny_prior,
                                                          tmp_path, invoke, expect_error):
    copy = tmp_path / "copy"
    shutil.copytree(evaluated, copy)
    args = [a if a != "2" else "3" for a in methods_args(tiny_prior)]  # --iterations 3
    expect_error(invoke("evaluate", eval_set, *args, "--output-dir", copy),
                 "other settings", "iterations", "--restart")
    expect_error(invoke("evaluate", eval_set, "--method", "tiny-nope", "--prior",
                        f"tiny={tiny_prior}", "--output-dir", tmp_path / "x"),
                 "unknown method", "vem")
    expect_error(invoke("evaluate", eval_set, "--method", "nothere-vem", "--output-dir",
                        tmp_path / "x"), "nothere", "--prior nothere=CHECKPOINT")
    expect_error(invoke("evaluate", eval_set, "--baseline", "wiener", "--output-dir",
                        tmp_path / "x"), "unknown baseline", "nmf")
    expect_error(invoke("evaluate", eval_set, "--output-dir", tmp_path / "x"),
                 "--method or --baseline", exit_code=2)


def test_methods_map_prior_and_algorithm_names(tiny_prior):
    from speechvae.evaluation import available_algorithms, build_methods
    from speechvae.pretrained import shipped_priors

    algorithms = available_algorithms()
    assert "vem" in algorithms
    names = [f"tiny-{a}" for a in algorithms]
    methods = build_methods(names, ["noisy"], priors={"tiny": str(tiny_prior)},
                            overrides={"iterations": 2})
    assert [m.name for m in methods] == ["noisy", *names]
    x = speech_like(0.5, seed=7, noise=0.05)
    for m, algorithm in zip(methods[1:], algorithms):
        assert (m.algorithm, m.config.iterations) == (algorithm, 2)
        assert m.settings()["algorithm"] == algorithm
        y = m(x, 16000)
        assert y.shape == x.shape and np.all(np.isfinite(y))
    if "vae" in shipped_priors():
        (vae,) = build_methods(["vae-vem"])
        assert vae.prior_label == "vae" and vae.algorithm == "vem"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.audio: list[str] = []
        self.img: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("audio", "img"):
            getattr(self, tag).append(unquote(attrs["src"]))


def test_html_page_links_audio_and_figures_that_exist(evaluated):
    page = evaluated / "index.html"
    links = _Links()
    links.feed(page.read_text())
    methods = [r["method"] for r in read_csv(evaluated / "table.csv")
               if r["group_by"] == "overall"]
    # per file: clean, noisy and every method but `noisy`
    assert len(links.audio) == 4 * (2 + len(methods) - 1)
    assert len(links.img) == 3  # scores + 2 spectrogram figures
    for src in links.audio + links.img:
        assert not Path(src).is_absolute() and (evaluated / src).is_file(), src
    assert any("/clean/" in s for s in links.audio)
    assert all(sf.info(evaluated / s).samplerate == 16000 for s in links.audio)
    for src in links.img:
        assert (evaluated / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="/usr/bin/chromium not installed (apt-get install chromium)")
def test_html_page_renders_in_headless_chromium(evaluated, tmp_path):
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         (evaluated / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    links = _Links()
    links.feed((evaluated / "index.html").read_text())
    assert dom.count("<audio") == len(links.audio) > 0
    assert dom.count("<img") == len(links.img) == 3
    assert "Per input SNR" in dom and "</table>" in dom


def test_no_figures_needs_no_matplotlib(eval_set, tmp_path, invoke, monkeypatch,
                                        expect_error):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    out = tmp_path / "nofig"
    args = ["evaluate", eval_set, "--baseline", "noisy", "--threads", "1", "--limit", "1"]
    result = invoke(*args, "--output-dir", out, "--no-figures", "--json")
    assert result.exit_code == 0, result.output
    assert (out / "table.md").is_file() and (out / "index.html").is_file()
    assert not (out / "figures").exists() and "<img" not in (out / "index.html").read_text()
    # asking for figures without matplotlib: one line that says what to do, before any work
    expect_error(invoke(*args, "--output-dir", tmp_path / "fig"), "matplotlib", "--no-figures")
    assert not (tmp_path / "fig" / "results.csv").exists()


def test_resume_with_other_threads_is_flagged(eval_set, tmp_path, invoke):
    out = tmp_path / "mixed"
    args = ["evaluate", eval_set, "--baseline", "noisy", "--baseline", "nmf", "--output-dir",
            out, "--no-figures", "--json"]
    try:
        assert invoke(*args, "--threads", "1", "--limit", "1").exit_code == 0
        # a results.csv of an earlier version: no threads column (rows kept, threads unknown)
        rows = read_csv(out / "results.csv")
        with open(out / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "threads"])
            w.writeheader()
            w.writerows([{k: v for k, v in r.items() if k != "threads"} for r in rows])
        assert invoke(*args, "--threads", "1", "--limit", "2").exit_code == 0
        last = invoke(*args, "--threads", "2")
        assert last.exit_code == 0, last.output
        assert json.loads(last.stdout)["reused"] == 4
    finally:
        torch.set_num_threads(1)
    rows = read_csv(out / "results.csv")
    assert sorted(r["threads"] for r in rows) == ["", "", "1", "1", "2", "2", "2", "2"]
    md = (out / "table.md").read_text()
    assert "threads: mixed: 1, 2, ?" in md
    assert "(mixed: 1, 2, ? threads)" in md  # the overall RTF cells say what they mix
    table = read_csv(out / "table.csv")
    assert {t["threads"] for t in table if t["group_by"] == "overall"} == {"mixed: 1, 2, ?"}


def test_resume_accepts_config_fields_added_later_at_their_default(evaluated, eval_set,
                                                                   tiny_prior, tmp_path,
                                                                   invoke):
    """A run recorded before a config field existed resumes while the field has its
    default (nothing to recompute), and is refused once it does not."""
    copy = tmp_path / "copy"
    shutil.copytree(evaluated, copy)
    record = json.loads((copy / "run.json").read_text())
    for settings in record["methods"].values():
        settings.get("config", {}).pop("nmf_smoothness", None)  # as written before the field
    (copy / "run.json").write_text(json.dumps(record))
    out = invoke("evaluate", eval_set, *methods_args(tiny_prior), "--output-dir", copy,
                 "--threads", "1", "--figure-files", "0", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["computed"] == 0
    (copy / "run.json").write_text(json.dumps(record))
    from speechvae.evaluation.evaluate import _same_settings

    prev = next(s for s in record["methods"].values() if "config" in s)
    changed = {**prev, "config": {**prev["config"], "nmf_smoothness": 5.0}}
    assert not _same_settings(prev, changed)
    assert _same_settings(prev, {**prev, "config": {**prev["config"], "nmf_smoothness": 0.0}})
