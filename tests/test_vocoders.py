"""Vocoders: WaveGlow flow, public checkpoint layouts, restricted unpickling, the mel bridge,
Griffin–Lim, the resynthesize/generate commands and the WaveGlow training smoke run."""
from __future__ import annotations

import copy
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like, write_wav
from torch import nn

pytest.importorskip("librosa")

from speechvae.priors import CheckpointError
from speechvae.stft import DEFAULT_STFT, istft, power_spectrogram, stft
from speechvae.vocoders import (
    GriffinLim,
    Vocoder,
    WaveGlow,
    WaveGlowConfig,
    WaveGlowVocoder,
    available_vocoders,
    get_vocoder,
    load_waveglow,
    power_to_waveglow_mel,
    save_waveglow,
    waveglow_loss,
    waveglow_mel,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {"n_channels": 8, "n_layers": 2, "n_flows": 12, "n_group": 8, "n_early_every": 4,
        "n_early_size": 2}


def tiny_waveglow(seed: int = 0, **kw) -> WaveGlow:
    """A small random WaveGlow whose couplings are not identity (the zero-initialised end
    layers are randomised too); the 1x1 convolutions keep their random rotations."""
    torch.manual_seed(seed)
    model = WaveGlow(WaveGlowConfig(**{**TINY, **kw}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("convinv"):
                p.normal_(0.0, 0.05)
    return model.eval()


def test_registry():
    assert {"griffin-lim", "waveglow"} <= set(available_vocoders())
    assert isinstance(get_vocoder("griffin-lim"), Vocoder)
    with pytest.raises(KeyError, match="griffin-lim"):
        get_vocoder("nope")
    with pytest.raises(ValueError, match="checkpoint"):
        get_vocoder("waveglow")


# -- WaveGlow flow --------------------------------------------------------------------------
def test_waveglow_inverts_exactly():
    model = tiny_waveglow().double()
    mel = torch.randn(2, 80, 6, dtype=torch.float64)
    audio = 0.3 * torch.randn(2, 6 * 256, dtype=torch.float64)
    z, log_s, log_det = model(mel, audio)
    assert z.shape == (2, 8, 6 * 256 // 8)
    assert len(log_s) == len(log_det) == 12
    assert torch.allclose(model.inverse(mel, z), audio, atol=1e-4, rtol=0)
    with torch.no_grad():
        assert float((model.inverse(mel, z) - audio).abs().max()) < 1e-9
    assert torch.isfinite(waveglow_loss(z, log_s, log_det))


def test_waveglow_logdet_matches_autograd_jacobian():
    """The flow's log-determinant terms equal log|det dz/dx| computed by autograd."""
    model = tiny_waveglow(n_flows=4, n_early_every=2).double()
    mel = torch.randn(1, 80, 1, dtype=torch.float64)
    audio = 0.3 * torch.randn(1, 256, dtype=torch.float64)
    _, log_s, log_det = model(mel, audio)
    jac = torch.autograd.functional.jacobian(lambda a: model(mel, a)[0].reshape(-1), audio)
    expected = torch.linalg.slogdet(jac.reshape(256, 256))[1]
    got = sum(ls.sum() for ls in log_s) + sum(log_det)
    assert torch.allclose(got, expected, atol=1e-6)


def test_infer_shape_and_seed():
    model = tiny_waveglow()
    mel = torch.randn(1, 80, 5)
    a = model.infer(mel, 0.6, torch.Generator().manual_seed(1))
    b = model.infer(mel, 0.6, torch.Generator().manual_seed(1))
    assert a.shape == (1, 5 * 256) and torch.equal(a, b)


# -- checkpoints ----------------------------------------------------------------------------
def _split_weight_norm(sd: dict, names) -> dict:
    """Store the given convolutions as weight_g / weight_v, like NVIDIA's releases."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight") and any(n in k for n in names):
            g = v.flatten(1).norm(dim=1).reshape(-1, 1, 1)
            out[k[:-len("weight")] + "weight_g"] = g.clone()
            out[k[:-len("weight")] + "weight_v"] = 3.0 * v  # any positive scale of v
        else:
            out[k] = v
    return out


def _per_layer_cond(sd: dict, n_layers: int) -> dict:
    """Split our fused cond_layer into the older per-layer cond_layers.{i}."""
    out = {}
    for k, v in sd.items():
        if ".cond_layer." in k:
            for i, part in enumerate(v.chunk(n_layers)):
                out[k.replace(".cond_layer.", f".cond_layers.{i}.")] = part.clone()
        else:
            out[k] = v
    return out


def _same_output(a: WaveGlow, b: WaveGlow) -> None:
    mel = torch.randn(1, 80, 4, generator=torch.Generator().manual_seed(3))
    ya = a.infer(mel, 0.6, torch.Generator().manual_seed(0))
    yb = b.infer(mel, 0.6, torch.Generator().manual_seed(0))
    assert torch.allclose(ya, yb, atol=1e-5), float((ya - yb).abs().max())


def test_own_checkpoint_round_trip(tmp_path):
    model = tiny_waveglow(sample_rate=16000, window="sine")
    loaded = load_waveglow(save_waveglow(model, tmp_path / "wg.pt"))
    assert loaded.config == model.config
    _same_output(model, loaded)


@pytest.mark.parametrize("per_layer_cond", [False, True])
def test_hub_state_dict_layout(tmp_path, per_layer_cond):
    """NVIDIA's torch-hub layout: {'state_dict': 'module.'-prefixed, weight-normed, 'config'}."""
    model = tiny_waveglow()
    sd = model.state_dict()
    if per_layer_cond:
        sd = _per_layer_cond(sd, TINY["n_layers"])
    sd = _split_weight_norm(sd, ("start", "in_layers", "res_skip_layers", "cond_layer"))
    sd = {f"module.{k}": v for k, v in sd.items()}
    config = {"n_mel_channels": 80, "n_flows": 12, "n_group": 8, "n_early_every": 4,
              "n_early_size": 2,
              "WN_config": {"n_layers": 2, "n_channels": 8, "kernel_size": 3}}
    torch.save({"state_dict": sd, "config": config}, tmp_path / "hub.pth")
    loaded = load_waveglow(tmp_path / "hub.pth")
    assert loaded.config.n_channels == 8 and loaded.config.sample_rate == 22050
    _same_output(model, loaded)


def _fake_glow_module():
    """A stand-in for NVIDIA's ``glow`` module (registered as sys.modules['glow'])."""
    mod = types.ModuleType("glow")
    for name in ("WaveGlow", "WN", "Invertible1x1Conv"):
        cls = type(name, (nn.Module,), {"__module__": "glow"})
        setattr(mod, name, cls)
    return mod


def _pickle_like_nvidia(model: WaveGlow, path: Path, legacy: bool = False) -> None:
    glow = _fake_glow_module()
    sys.modules["glow"] = glow
    try:
        fake = glow.WaveGlow()
        fake.upsample = copy.deepcopy(model.upsample)
        fake.WN, fake.convinv = nn.ModuleList(), nn.ModuleList()
        for wn, inv in zip(model.WN, model.convinv):
            w = glow.WN()
            w.n_layers, w.n_channels = wn.n_layers, wn.n_channels
            w.start = copy.deepcopy(wn.start)
            w.end = copy.deepcopy(wn.end)
            w.in_layers = copy.deepcopy(wn.in_layers)
            w.res_skip_layers = copy.deepcopy(wn.res_skip_layers)
            w.cond_layer = copy.deepcopy(wn.cond_layer)
            with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated
                warnings.simplefilter("ignore")
                w.start = nn.utils.weight_norm(w.start)  # pickles a WeightNorm hook
                for layer in w.in_layers:
                    nn.utils.weight_norm(layer)
            fake.WN.append(w)
            c = glow.Invertible1x1Conv()
            c.conv = copy.deepcopy(inv.conv)
            fake.convinv.append(c)
        cfg = model.config
        fake.n_flows, fake.n_group = cfg.n_flows, cfg.n_group
        fake.n_early_every, fake.n_early_size = cfg.n_early_every, cfg.n_early_size
        fake.n_remaining_channels = cfg.n_remaining_channels
        with warnings.catch_warnings():  # the legacy format warns about source code
            warnings.simplefilter("ignore")
            torch.save({"model": fake, "iteration": 10, "learning_rate": 1e-4}, path,
                       _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules["glow"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_whole_model_pickle_layout(tmp_path, legacy):
    """{'model': <glow.WaveGlow>} through the restricted unpickler, in torch's zip format and
    in the pre-1.6 format the 2019 release may use."""
    model = tiny_waveglow()
    _pickle_like_nvidia(model, tmp_path / "waveglow_256channels_universal_v5.pt", legacy)
    assert "glow" not in sys.modules
    loaded = load_waveglow(tmp_path / "waveglow_256channels_universal_v5.pt")
    assert loaded.config.n_flows == 12 and loaded.config.n_early_every == 4
    _same_output(model, loaded)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["model", "state_dict"])
def test_other_pickled_objects_are_refused(tmp_path, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    model = tiny_waveglow()
    if layout == "model":
        torch.save({"model": _Evil(marker)}, path)
    else:
        torch.save({"state_dict": {**model.state_dict(), "x": _Evil(marker)}}, path)
    with pytest.raises(CheckpointError, match="refused.*system"):
        load_waveglow(path)
    assert not marker.exists()


def test_not_a_waveglow_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a WaveGlow"):
        load_waveglow(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_waveglow(tmp_path / "junk.pt")


# -- the mel bridge -------------------------------------------------------------------------
def test_mel_bridge_matches_direct_analysis_at_22k():
    """Toolkit 16 kHz power spectrogram -> bridge, against WaveGlow's own analysis of the
    same signal resampled to 22.05 kHz with soxr.

    Tolerance (natural-log units, on bands within 60 dB of the maximum): mean difference
    below 0.12 (the gain is exact for broadband signals, harmonics differ by the ratio of the
    windows' sums, at most 0.06) and mean absolute difference below 0.3 (the two analyses
    use different windows and frame instants: 64 ms sine vs 46 ms Hann windows).
    """
    import soxr

    x = speech_like(2.0)
    config = WaveGlowConfig()
    bridged = power_to_waveglow_mel(power_spectrogram(torch.from_numpy(x).double()),
                                    DEFAULT_STFT, config, num_samples=x.size).double()
    x22 = soxr.resample(x.astype(np.float64), 16000, 22050)
    direct = waveglow_mel(torch.from_numpy(x22), config)
    assert bridged.shape == direct.shape == (80, 1 + x22.size // 256)
    active = direct > direct.max() - np.log(1e3)
    diff = (bridged - direct)[active]
    assert abs(float(diff.mean())) < 0.12
    assert float(diff.abs().mean()) < 0.3
    # without the gain and time interpolation the bridge would be clearly off
    assert float(diff.abs().mean()) < 0.5 * float((direct[active] - direct[active].mean()).abs().mean())


def test_mel_bridge_is_exact_for_matching_settings():
    """A WaveGlow trained at 16 kHz on the toolkit's STFT (recipes/waveglow): the bridge is
    the mel projection alone and equals the model's own analysis."""
    x = torch.from_numpy(speech_like(1.0)).double()
    config = WaveGlowConfig(sample_rate=16000, window="sine")
    bridged = power_to_waveglow_mel(power_spectrogram(x), DEFAULT_STFT, config, x.numel())
    assert torch.allclose(bridged.double(), waveglow_mel(x, config), atol=1e-4)


def test_waveglow_vocoder_rate_and_length():
    model = tiny_waveglow()
    voc = WaveGlowVocoder(model=model)
    power = power_spectrogram(torch.from_numpy(speech_like(0.5)))
    y = voc(power, length=8000)
    assert voc.sample_rate == 16000 and y.shape == (8000,) and torch.isfinite(y).all()
    yb = voc(torch.stack([power, power]), length=8000)
    assert torch.allclose(yb[0], y) and torch.allclose(yb[1], y)


# -- Griffin–Lim ----------------------------------------------------------------------------
def _spectral_convergence(magnitude: torch.Tensor, y: torch.Tensor) -> float:
    est = stft(y.double()).abs()
    return float(torch.linalg.norm(magnitude - est) / torch.linalg.norm(magnitude))


def test_griffin_lim_length_and_convergence():
    x = torch.from_numpy(speech_like(1.0)).double()
    power = power_spectrogram(x)
    gl = GriffinLim()
    y = gl(power, length=x.numel())
    assert y.shape == x.shape and y.dtype == torch.float32
    assert gl(power).shape == ((power.shape[-1] - 1) * 256,)
    mag = power.sqrt()
    rng = np.random.default_rng(0)
    phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, mag.shape))
    y_random = istft(mag * torch.exp(1j * phase), x.numel())
    sc_gl, sc_random = _spectral_convergence(mag, y), _spectral_convergence(mag, y_random)
    assert sc_gl < 0.5 * sc_random, (sc_gl, sc_random)


def test_griffin_lim_batched_equals_one_by_one():
    p = torch.stack([power_spectrogram(torch.from_numpy(speech_like(0.3, seed=s)))
                     for s in (0, 1)])
    gl = GriffinLim(n_iter=4)
    yb = gl(p)
    assert yb.shape[0] == 2
    for i in range(2):
        assert torch.allclose(yb[i], gl(p[i]))


def test_vocoder_rejects_bad_shapes():
    with pytest.raises(TypeError, match="freq, time"):
        GriffinLim()(torch.ones(513))
    with pytest.raises(ValueError, match="non-negative"):
        GriffinLim()(-torch.ones(513, 10))


# -- commands -------------------------------------------------------------------------------
def test_resynthesize_oracle_cli(tmp_path, invoke, tiny_prior, expect_error):
    src = write_wav(tmp_path / "clean.wav", 1.0)
    r = invoke("resynthesize", src, "--prior", tiny_prior, "--phase", "oracle")
    assert r.exit_code == 0, r.output
    out = tmp_path / "clean_resynth.wav"
    y, sr = sf.read(out)
    assert sr == 16000 and y.shape == (16000,) and np.abs(y).max() > 0
    expect_error(invoke("resynthesize", src, "--prior", tiny_prior), "exists", "--overwrite")
    assert invoke("resynthesize", src, "--prior", tiny_prior, "--overwrite").exit_code == 0
    expect_error(invoke("resynthesize", src, "--prior", tiny_prior, "-o", src), "input")
    expect_error(invoke("resynthesize", src, "--prior", tiny_prior, "--phase", "waveglow",
                        "-o", tmp_path / "w.wav"), "vocoder-checkpoint", exit_code=2)


def test_resynthesize_waveglow_cli(tmp_path, invoke, tiny_prior):
    src = write_wav(tmp_path / "clean.wav", 0.5)
    ckpt = save_waveglow(tiny_waveglow(), tmp_path / "wg.pt")
    r = invoke("resynthesize", src, "--prior", tiny_prior, "--phase", "waveglow",
               "--vocoder-checkpoint", ckpt, "-o", tmp_path / "wg.wav", "--json")
    assert r.exit_code == 0, r.output
    assert sf.info(str(tmp_path / "wg.wav")).frames == 8000


def test_generate_cli_writes_one_second(tmp_path, invoke, tiny_prior):
    out = tmp_path / "gen.wav"
    r = invoke("generate", "--prior", tiny_prior, "--duration", "1", "--seed", "3",
               "-o", out)
    assert r.exit_code == 0, r.output
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.frames == 16000


def test_generate_is_seeded(tiny_prior):
    from speechvae.priors import load_prior
    from speechvae.synthesis import generate

    prior = load_prior(str(tiny_prior))
    a = generate(prior, 0.2, seed=1, vocoder=GriffinLim(n_iter=2))
    b = generate(prior, 0.2, seed=1, vocoder=GriffinLim(n_iter=2))
    assert a.shape == (3200,) and np.array_equal(a, b)


# -- training recipe ------------------------------------------------------------------------
def test_waveglow_training_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("wg_train",
                                                  REPO / "recipes" / "waveglow" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wg_train"] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["wg_train"]
    write_wav(tmp_path / "data" / "a.wav", 0.5)
    write_wav(tmp_path / "data" / "b.wav", 0.1, seed=1)  # shorter than a segment: padded
    argv = [str(REPO / "recipes" / "waveglow" / "conf_tiny.yaml"), "--out",
            str(tmp_path / "run"), "--data", str(tmp_path / "data")]
    mod.main([*argv, "--steps", "1"])
    mod.main(argv)  # resumes at step 1, runs step 2
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 2
    model = load_waveglow(tmp_path / "run" / "waveglow.pt")
    assert model.config.sample_rate == 16000 and model.config.n_flows == 4
