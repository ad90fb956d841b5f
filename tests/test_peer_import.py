"""Import of DVAE_SE model folders (Bie et al., TASLP 2022) and the RVAE options it needs.

The mapping is checked against a forward pass written here from the state-dict key names and
the config alone (torch LSTMs loaded with their weights, run as their code runs them: the
encoder's spectrogram LSTM on the time-reversed input, the z-LSTM stepped once on z_0 = 0
before the first frame). Synthetic folders (random weights in their layout) run everywhere;
the published folders in ../shared/peer are checked too where present.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from speechvae.priors import DKF, RVAE, CheckpointError, RVAEConfig, load_prior
from speechvae.priors.peer import is_dvae_se_folder, load_dvae_se

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer" / "dvae_se"
needs_peer = pytest.mark.skipif(not PEER.is_dir(), reason=f"published DVAE_SE priors not found "
                                f"at {PEER} (../shared/peer; GPL-3, never in this repository)")

STFT = """[STFT]
wlen_sec = 64e-3
hop_percent = 0.25
fs = 16000
zp_percent = 0
trim = True
"""


# -- synthetic folders in the DVAE_SE layout --------------------------------------------------

def _lstm_keys(prefix: str, n_in: int, hid: int, bidir: bool) -> dict:
    shapes = {"weight_ih": (4 * hid, n_in), "weight_hh": (4 * hid, hid),
              "bias_ih": (4 * hid,), "bias_hh": (4 * hid,)}
    out = {}
    for suffix in ("", "_reverse") if bidir else ("",):
        for k, s in shapes.items():
            out[f"{prefix}.{k}_l0{suffix}"] = s
    return out


def _write_folder(path: Path, name: str, network: str, shapes: dict, seed: int = 0) -> Path:
    path.mkdir(parents=True)
    (path / "config.ini").write_text(f"{STFT}\n[Network]\nname = {name}\n{network}\n"
                                     "[Training]\nbeta = 1e-2\n")
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.3 * torch.randn(s, generator=g) for k, s in shapes.items()}
    torch.save(state, path / f"{name}_final_epoch1.pt")
    return path


def vae_folder(path: Path, f: int = 513, hid: int = 24, lat: int = 5) -> Path:
    net = f"x_dim = {f}\nz_dim = {lat}\nactivation = tanh\ndense_x_z = {hid}\ndropout_p = 0\n"
    shapes = {"mlp_x_z.linear0.weight": (hid, f), "mlp_x_z.linear0.bias": (hid,),
              "inf_mean.weight": (lat, hid), "inf_mean.bias": (lat,),
              "inf_logvar.weight": (lat, hid), "inf_logvar.bias": (lat,),
              "mlp_z_x.linear0.weight": (hid, lat), "mlp_z_x.linear0.bias": (hid,),
              "gen_logvar.weight": (f, hid), "gen_logvar.bias": (f,)}
    return _write_folder(path, "VAE", net, shapes)


def rvae_folder(path: Path, bidir: bool = True, dense: tuple[int, ...] = (), hid: int = 12,
                lat: int = 4, f: int = 513) -> Path:
    b = "True" if bidir else "False"
    net = (f"x_dim = {f}\nz_dim = {lat}\nactivation = tanh\ndense_x_gx = \n"
           f"dim_RNN_g_x = {hid}\nnum_RNN_g_x = 1\nbidir_g_x = {b}\ndense_z_gz = \n"
           f"dim_RNN_g_z = {hid}\nnum_RNN_g_z = 1\n"
           f"dense_g_z = {','.join(map(str, dense))}\ndense_z_h = \ndim_RNN_h = {hid}\n"
           f"num_RNN_h = 1\nbidir_h = {b}\ndense_h_x = \ndropout_p = 0\n")
    n_dir = 2 if bidir else 1
    shapes = {**_lstm_keys("rnn_g_x", f, hid, bidir), **_lstm_keys("rnn_g_z", lat, hid, False),
              **_lstm_keys("rnn_h", lat, hid, bidir)}
    dims = [n_dir * hid + hid, *dense]
    for i, (a, c) in enumerate(itertools.pairwise(dims)):
        shapes[f"mlp_g_z.linear{i}.weight"] = (c, a)
        shapes[f"mlp_g_z.linear{i}.bias"] = (c,)
    for k in ("inf_mean", "inf_logvar"):
        shapes[f"{k}.weight"] = (lat, dims[-1])
        shapes[f"{k}.bias"] = (lat,)
    shapes["gen_logvar.weight"] = (f, n_dir * hid)
    shapes["gen_logvar.bias"] = (f,)
    return _write_folder(path, "RVAE", net, shapes)


def dkf_folder(path: Path, f: int = 513, lat: int = 4) -> Path:
    net = (f"x_dim = {f}\nz_dim = {lat}\nactivation = tanh\ndense_x_gx = 20\n"
           "dim_RNN_gx = 10\nnum_RNN_gx = 1\nbidir_gx = False\ndense_ztm1_g = 6\n"
           "dense_g_z = 7\ndense_z_x = 5,9\ndropout_p = 0\n")
    shapes = {**_lstm_keys("rnn_gx", 20, 10, False)}
    for name, dims in (("mlp_x_gx", [f, 20]), ("mlp_ztm1_g", [lat, 6]), ("mlp_g_z", [10, 7]),
                       ("mlp_z_x", [lat, 5, 9])):
        for i, (a, c) in enumerate(itertools.pairwise(dims)):
            shapes[f"{name}.linear{i}.weight"] = (c, a)
            shapes[f"{name}.linear{i}.bias"] = (c,)
    for name, (c, a) in {"mlp_ztm1_g.linear_last": (10, 6), "inf_mean": (lat, 7),
                         "inf_logvar": (lat, 7), "mlp_gate.linear1": (lat, lat),
                         "mlp_gate.linear2": (lat, lat), "mlp_z_prop.linear1": (lat, lat),
                         "mlp_z_prop.linear2": (lat, lat), "prior_mean": (lat, lat),
                         "prior_logvar.1": (lat, lat), "gen_logvar": (f, 9)}.items():
        shapes[f"{name}.weight"] = (c, a)
        shapes[f"{name}.bias"] = (c,)
    return _write_folder(path, "DKF", net, shapes)


# -- reference forward passes, from the raw state dict ----------------------------------------

def _state(folder: Path) -> dict:
    return torch.load(next(folder.glob("*.pt")), map_location="cpu", weights_only=True)


def _torch_lstm(state: dict, prefix: str, bidir: bool) -> nn.LSTM:
    w = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    lstm = nn.LSTM(w["weight_ih_l0"].shape[1], w["weight_hh_l0"].shape[1], bidirectional=bidir)
    lstm.load_state_dict(w)
    return lstm


def _dense(state, prefix, x):
    i = 0
    while f"{prefix}.linear{i}.weight" in state:
        x = torch.tanh(x @ state[f"{prefix}.linear{i}.weight"].T + state[f"{prefix}.linear{i}.bias"])
        i += 1
    return x


def ref_vae(state, power, z):
    """Their VAE: power (T, F) -> mean, logvar (T, L); z (T, L) -> variance (T, F)."""
    h = _dense(state, "mlp_x_z", power)
    mean = h @ state["inf_mean.weight"].T + state["inf_mean.bias"]
    logvar = h @ state["inf_logvar.weight"].T + state["inf_logvar.bias"]
    v = torch.exp(_dense(state, "mlp_z_x", z) @ state["gen_logvar.weight"].T
                  + state["gen_logvar.bias"])
    return mean, logvar, v


def ref_rvae_encoder(state, power, eps, bidir):
    """Their RVAE encoder: power (T, F), eps (T, L) -> z, mean, logvar (T, L)."""
    x = power[:, None, :]
    g_x = _torch_lstm(state, "rnn_g_x", bidir)(x.flip(0))[0].flip(0)[:, 0]  # (T, n_dir*H)
    rnn_z = _torch_lstm(state, "rnn_g_z", False)
    hid = rnn_z.hidden_size
    h = c = torch.zeros(1, 1, hid)
    z_t = torch.zeros(1, 1, eps.shape[1])
    zs, means, logvars = [], [], []
    for t in range(power.shape[0]):
        _, (h, c) = rnn_z(z_t, (h, c))
        g = _dense(state, "mlp_g_z", torch.cat([g_x[t], h[0, 0]]))
        mean = g @ state["inf_mean.weight"].T + state["inf_mean.bias"]
        logvar = g @ state["inf_logvar.weight"].T + state["inf_logvar.bias"]
        z = mean + torch.exp(0.5 * logvar) * eps[t]
        z_t = z[None, None]
        zs.append(z)
        means.append(mean)
        logvars.append(logvar)
    return torch.stack(zs), torch.stack(means), torch.stack(logvars)


def ref_rvae_decoder(state, z, bidir):
    """Their RVAE decoder: z (T, L) -> variance (T, F)."""
    h = _torch_lstm(state, "rnn_h", bidir)(z[:, None, :])[0][:, 0]
    return torch.exp(h @ state["gen_logvar.weight"].T + state["gen_logvar.bias"])


def _lin(state, name, x):
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def ref_dkf(state, power, eps):
    """Their DKF: power (T, F), eps (T, L) -> z, mean, logvar (T, L), the transition's mean
    and log-variance given the drawn past (z_0 = 0), and the variance (T, F)."""
    x = _dense(state, "mlp_x_gx", power)[:, None, :]
    g_x = _torch_lstm(state, "rnn_gx", False)(x.flip(0))[0].flip(0)[:, 0]
    z_t = torch.zeros(eps.shape[1])
    zs, means, logvars = [], [], []
    for t in range(power.shape[0]):
        u = torch.tanh(_lin(state, "mlp_ztm1_g.linear_last", _dense(state, "mlp_ztm1_g", z_t)))
        g = _dense(state, "mlp_g_z", (u + g_x[t]) / 2)
        mean, logvar = _lin(state, "inf_mean", g), _lin(state, "inf_logvar", g)
        z_t = mean + torch.exp(0.5 * logvar) * eps[t]
        zs.append(z_t)
        means.append(mean)
        logvars.append(logvar)
    z = torch.stack(zs)
    prev = torch.cat([torch.zeros_like(z[:1]), z[:-1]])
    gate = torch.sigmoid(_lin(state, "mlp_gate.linear2",
                              torch.relu(_lin(state, "mlp_gate.linear1", prev))))
    prop = _lin(state, "mlp_z_prop.linear2", torch.relu(_lin(state, "mlp_z_prop.linear1", prev)))
    p_mean = (1 - gate) * _lin(state, "prior_mean", prev) + gate * prop
    p_logvar = torch.log(nn.functional.softplus(_lin(state, "prior_logvar.1", torch.relu(prop))))
    v = torch.exp(_lin(state, "gen_logvar", _dense(state, "mlp_z_x", z)))
    return z, torch.stack(means), torch.stack(logvars), p_mean, p_logvar, v


def _power(n_frames=9, f=513, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, f, n_frames, generator=g) ** 4 * 3.0


# -- checks --------------------------------------------------------------------------------------

def check_vae(folder: Path, tol: float = 1e-5) -> None:
    prior = load_prior(str(folder))
    state = _state(folder)
    power = _power()
    z = torch.randn(1, prior.latent_dim, power.shape[-1], generator=torch.Generator()
                    .manual_seed(2))
    mean, logvar, v = ref_vae(state, power[0].T, z[0].T)
    post = prior.encode(power)
    with torch.no_grad():
        torch.testing.assert_close(post.mean[0].T, mean, rtol=tol, atol=tol)
        torch.testing.assert_close(post.logvar[0].T, logvar, rtol=tol, atol=tol)
        torch.testing.assert_close(prior.decode(z)[0].T, v, rtol=tol, atol=tol * v.abs().max())


def check_rvae(folder: Path, bidir: bool, tol: float = 1e-4) -> None:
    prior = load_prior(str(folder))
    assert isinstance(prior, RVAE) and prior.config.causal is (not bidir)
    state = _state(folder)
    power = _power()
    n_frames, lat = power.shape[-1], prior.latent_dim
    with torch.no_grad():
        # the encoder mean path
        post = prior.encode(power)
        _, mean, logvar = ref_rvae_encoder(state, power[0].T, torch.zeros(n_frames, lat), bidir)
        torch.testing.assert_close(post.mean[0].T, mean, rtol=tol, atol=tol)
        torch.testing.assert_close(post.logvar[0].T, logvar, rtol=tol, atol=tol)
        # a random draw: the same noise through their encoder gives the same draw
        for recurrence in ("fast", "reference"):
            prior.recurrence = recurrence
            z, draw = prior.sample_posterior(power, torch.Generator().manual_seed(3))
            eps = ((z - draw.mean) * torch.exp(-0.5 * draw.logvar))[0].T
            z_ref, mean_ref, _ = ref_rvae_encoder(state, power[0].T, eps, bidir)
            torch.testing.assert_close(z[0].T, z_ref, rtol=tol, atol=tol)
            torch.testing.assert_close(draw.mean[0].T, mean_ref, rtol=tol, atol=tol)
        v_ref = ref_rvae_decoder(state, z[0].T, bidir)
        torch.testing.assert_close(prior.decode(z)[0].T, v_ref, rtol=tol,
                                   atol=tol * v_ref.abs().max())


def check_dkf(folder: Path, tol: float = 1e-4) -> None:
    prior = load_prior(str(folder))
    assert isinstance(prior, DKF) and prior.config.transition_var_floor == 0.0
    state = _state(folder)
    power = _power()
    with torch.no_grad():
        post = prior.encode(power)
        _, mean, logvar, *_ = ref_dkf(state, power[0].T, torch.zeros(power.shape[-1],
                                                                     prior.latent_dim))
        torch.testing.assert_close(post.mean[0].T, mean, rtol=tol, atol=tol)
        torch.testing.assert_close(post.logvar[0].T, logvar, rtol=tol, atol=tol)
        z, draw = prior.sample_posterior(power, torch.Generator().manual_seed(3))
        eps = ((z - draw.mean) * torch.exp(-0.5 * draw.logvar))[0].T
        z_ref, mean_ref, logvar_ref, p_mean, p_logvar, v_ref = ref_dkf(state, power[0].T, eps)
        torch.testing.assert_close(z[0].T, z_ref, rtol=tol, atol=tol)
        torch.testing.assert_close(prior.decode(z)[0].T, v_ref, rtol=tol,
                                   atol=tol * v_ref.abs().max())
        kl_ref = 0.5 * (p_logvar - logvar_ref + (logvar_ref.exp() + (mean_ref - p_mean) ** 2)
                        / p_logvar.exp() - 1).sum(-1)
        torch.testing.assert_close(prior.kl(draw, z)[0], kl_ref, rtol=tol, atol=tol)


def test_dkf_folder_maps_exactly(tmp_path):
    check_dkf(dkf_folder(tmp_path / "dkf"))


def test_vae_folder_maps_exactly(tmp_path):
    check_vae(vae_folder(tmp_path / "vae"))


@pytest.mark.parametrize("bidir,dense", [(True, ()), (False, ()), (True, (10,)),
                                         (False, (10, 7))])
def test_rvae_folder_maps_exactly(tmp_path, bidir, dense):
    check_rvae(rvae_folder(tmp_path / "rvae", bidir=bidir, dense=dense), bidir)


def test_rvae_folder_config(tmp_path):
    prior = load_dvae_se(rvae_folder(tmp_path / "rvae"))
    assert prior.config.encoder_input == "power"
    assert prior.config.encoder_z_initial_step is True
    assert prior.config.dense_dims == ()
    assert prior.metadata["model"] == "RVAE" and "GPL-3" in prior.metadata["licence"]


def test_bad_folders_refused(tmp_path):
    assert not is_dvae_se_folder(tmp_path)
    with pytest.raises(CheckpointError, match="no config.ini"):
        load_prior(str(tmp_path))
    folder = vae_folder(tmp_path / "vae")
    cfg = folder / "config.ini"
    text = cfg.read_text()
    cfg.write_text(text.replace("hop_percent = 0.25", "hop_percent = 0.5"))
    with pytest.raises(CheckpointError, match="STFT"):
        load_prior(str(folder))
    cfg.write_text(text.replace("name = VAE", "name = SRNN"))
    with pytest.raises(CheckpointError, match="'SRNN' does not map"):
        load_prior(str(folder))
    cfg.write_text(text.replace("dense_x_z = 24", "dense_x_z = 25"))
    with pytest.raises(CheckpointError, match="weights do not match|mirror"):
        load_prior(str(folder))
    cfg.write_text(text)
    next(folder.glob("*.pt")).unlink()
    with pytest.raises(CheckpointError, match="expected one .pt"):
        load_prior(str(folder))
    folder = rvae_folder(tmp_path / "rvae")
    cfg = folder / "config.ini"
    cfg.write_text(cfg.read_text().replace("dense_x_gx = ", "dense_x_gx = 64"))
    with pytest.raises(CheckpointError, match="dense_x_gx"):
        load_prior(str(folder))


# -- the RVAE options, without any folder -------------------------------------------------------

@pytest.mark.parametrize("dense,step0,causal", list(itertools.product(
    [(), (9,)], [False, True], [False, True])))
def test_rvae_options_fast_equals_reference(dense, step0, causal):
    """Values and gradients of the fused recurrence equal the plain loop (float64), and the
    grouped (batched) path equals the single one, for every combination of the options."""
    cfg = RVAEConfig(latent_dim=3, hidden_dim=8, dense_dims=dense, causal=causal,
                     encoder_z_initial_step=step0)
    torch.manual_seed(0)
    prior = RVAE(cfg).double()
    power = _power(6).double() + 0.1
    res = {}
    for recurrence in ("fast", "reference"):
        prior.recurrence = recurrence
        prior.zero_grad()
        z, post = prior.sample_posterior(power, torch.Generator().manual_seed(4), num_samples=2)
        (z.sin().sum() + post.mean.square().sum() + post.logvar.cos().sum()).backward()
        res[recurrence] = (z.detach(), post.logvar.detach(),
                           {n: p.grad.clone() for n, p in prior.named_parameters()
                            if p.grad is not None})
    (zf, lf, gf), (zr, lr, gr) = res["fast"], res["reference"]
    torch.testing.assert_close(zf, zr, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lf, lr, rtol=1e-10, atol=1e-10)
    assert gf.keys() == gr.keys() and len(gr) > 0
    for n in gr:
        torch.testing.assert_close(gf[n], gr[n], rtol=1e-9, atol=1e-9)
    enc = {id(p) for p in prior.encoder_parameters()}
    params = {n: p.detach().unsqueeze(0).repeat(2, *[1] * p.dim())
              for n, p in prior.named_parameters() if id(p) in enc}
    eps = torch.randn(2, 2, 3, 6, generator=torch.Generator().manual_seed(5), dtype=power.dtype)
    both = torch.cat([power, power.flip(-1)])
    zg, mg, _ = prior.grouped_posterior(params, both, eps, [6, 6])
    with torch.no_grad():
        z1, m1, _ = prior._posterior(both, eps, None)
    torch.testing.assert_close(zg, z1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mg, m1, rtol=1e-10, atol=1e-10)


def test_rvae_initial_step_changes_the_first_frame_only_through_the_state():
    """With the initial step, frame 0's posterior depends on the z-LSTM biases (its state is
    LSTM(0, 0)); without it, it does not."""
    torch.manual_seed(0)
    power = _power(4)
    for step0 in (False, True):
        prior = RVAE(RVAEConfig(latent_dim=3, hidden_dim=8, dense_dims=(),
                                encoder_z_initial_step=step0))
        before = prior.encode(power).mean[..., 0].clone()
        with torch.no_grad():
            prior.encoder_z_cell.bias_ih.add_(1.0)
        after = prior.encode(power).mean[..., 0]
        assert torch.allclose(before, after) is (not step0)


def test_dkf_default_floor_unchanged():
    from speechvae.priors import DKFConfig
    assert DKFConfig().transition_var_floor == 1e-6
    with pytest.raises(ValueError, match="transition_var_floor"):
        DKFConfig(transition_var_floor=-1.0)


def test_rvae_defaults_unchanged():
    """Defaults keep the shipped architecture: one 128-unit dense layer, no initial step."""
    cfg = RVAEConfig()
    assert cfg.dense_dims == (128,) and cfg.encoder_z_initial_step is False
    assert "encoder_dense.0.weight" in RVAE(cfg).state_dict()


# -- the published folders ---------------------------------------------------------------------

@needs_peer
def test_published_vae_maps_exactly():
    check_vae(PEER / "wsj_vae")


@needs_peer
def test_published_rvae_maps_exactly():
    check_rvae(PEER / "wsj_rvae", bidir=True)


@needs_peer
def test_published_dkf_maps_exactly():
    check_dkf(PEER / "wsj_dkf")


@needs_peer
def test_published_srnn_refused_with_reason():
    with pytest.raises(CheckpointError, match="'SRNN' does not map"):
        load_prior(str(PEER / "wsj_srnn"))
