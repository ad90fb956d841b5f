"""Import the published priors of the DVAE_SE code (Bie, Leglaive, Alameda-Pineda & Girin,
"Unsupervised speech enhancement using dynamical variational autoencoders", IEEE/ACM TASLP
2022) as speechvae priors.

A DVAE_SE model folder holds the ``config.ini`` the model was trained with (sections
``[STFT]`` and ``[Network]``) and one ``*.pt`` file, a plain PyTorch state dict whose keys name
the layers (``mlp_x_z``, ``inf_mean``, ``rnn_g_x``, ``gen_logvar``, ...). :func:`load_dvae_se`
reads both (``configparser``; ``torch.load(..., weights_only=True)``), checks that the STFT is
speechvae's (16 kHz, 1024-sample sine window, hop 256) and maps the weights, exactly, onto

* ``name = VAE``: :class:`~speechvae.priors.VAE` with ``encoder_input="power"`` (their
  encoder reads the power spectrogram) and ``hidden_dims = dense_x_z`` (their decoder must
  mirror the encoder, as ours does);
* ``name = RVAE``: :class:`~speechvae.priors.RVAE`, non-causal if ``bidir_g_x`` and
  ``bidir_h`` are true, causal if both are false, with ``encoder_input="power"``,
  ``dense_dims = dense_g_z`` (empty in the published model: the mean and log-variance layers
  read the recurrences directly) and ``encoder_z_initial_step=True`` (their encoder steps its
  z-LSTM once on ``z_0 = 0`` before the first frame).

The mapping of the RVAE encoder needs care: their code runs ``rnn_g_x`` on the time-reversed
spectrogram and reverses its output back, also when ``rnn_g_x`` is bidirectional, so the
LSTM's forward weights (``*_l0``) make the *backward-in-time* recurrence and its reverse weights
(``*_l0_reverse``) the forward-in-time one, concatenated in the order [backward, forward];
speechvae's RVAE concatenates [forward, backward], so the columns of the first combining
layer are permuted accordingly. The decoder's ``rnn_h`` runs on the sequence as it is
([forward, backward], as ours).

* ``name = DKF``: :class:`~speechvae.priors.DKF` with ``encoder_input="power"``, the layer
  widths of the config (``dense_x_gx``, ``dense_ztm1_g`` + ``linear_last``, ``dense_g_z``,
  ``dense_z_x``), ``transition_dim = z_dim`` and ``transition_var_floor=0`` (their
  transition variance is the softplus alone); ``bidir_gx`` must be false.

SRNN folders are refused (no SRNN prior in speechvae), as are architectures outside the
options above (dense stacks before the RVAE's recurrences, several LSTM layers, another
activation than tanh).

The published weights are GPL-3; speechvae neither ships nor copies them.
"""
from __future__ import annotations

import configparser
import os
from pathlib import Path

import torch

from ..stft import DEFAULT_STFT, STFTConfig
from .base import CheckpointError, Prior, safe_torch_load
from .dkf import DKF, DKFConfig
from .rvae import RVAE, RVAEConfig
from .vae import VAE, VAEConfig

__all__ = ["is_dvae_se_folder", "load_dvae_se", "read_dvae_se_config"]

SOURCE = "DVAE_SE (Bie et al., TASLP 2022)"


def is_dvae_se_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding a ``config.ini`` with a ``[Network]`` section."""
    cfg = Path(path) / "config.ini"
    if not cfg.is_file():
        return False
    parser = configparser.ConfigParser()
    try:
        parser.read(cfg)
    except configparser.Error:
        return False
    return parser.has_section("Network")


def read_dvae_se_config(folder: str | os.PathLike) -> configparser.ConfigParser:
    """The folder's ``config.ini``.

    Raises:
        CheckpointError: no ``config.ini``, an unparsable one, or no ``[Network]`` /
            ``[STFT]`` section.
    """
    path = Path(folder) / "config.ini"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.ini (not a DVAE_SE model folder)")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: unreadable config ({first})") from None
    for section in ("Network", "STFT"):
        if not parser.has_section(section):
            raise CheckpointError(f"{path}: no [{section}] section")
    return parser


def _stft_config(cfg: configparser.ConfigParser, path: Path) -> STFTConfig:
    """Their STFT (window rounded up to a power of two, as their code does) as ours."""
    try:
        fs = cfg.getint("STFT", "fs")
        wlen = cfg.getfloat("STFT", "wlen_sec") * fs
        hop_percent = cfg.getfloat("STFT", "hop_percent")
        zp = cfg.getfloat("STFT", "zp_percent", fallback=0.0)
    except (configparser.Error, ValueError) as exc:
        raise CheckpointError(f"{path}: bad [STFT] section ({exc})") from None
    n_fft = 1 << max(0, int(wlen - 1).bit_length())
    stft = STFTConfig(sample_rate=fs, n_fft=n_fft, hop_length=int(hop_percent * n_fft),
                      window="sine")
    if zp != 0 or stft != DEFAULT_STFT:
        raise CheckpointError(f"{path}: STFT {stft} (zero padding {zp}) differs from "
                              f"speechvae's {DEFAULT_STFT}")
    return stft


def _dims(cfg: configparser.ConfigParser, key: str) -> tuple[int, ...]:
    """A comma-separated list of layer widths (empty: no layer)."""
    text = cfg.get("Network", key, fallback="").strip()
    return tuple(int(v) for v in text.split(",") if v.strip())


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.pt"))
    if len(files) != 1:
        raise CheckpointError(f"{folder}: expected one .pt state dict, found {len(files)}")
    state = safe_torch_load(files[0], map_location="cpu")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{files[0]}: not a state dict of tensors")
    return dict(state)


def _linear_stack(state: dict, prefix: str) -> list[str]:
    """Names ``prefix.linear0``, ``prefix.linear1``, ... present in the state dict."""
    names = []
    while f"{prefix}.linear{len(names)}.weight" in state:
        names.append(f"{prefix}.linear{len(names)}")
    return names


def _vae(cfg, state, path: Path) -> tuple[VAE, dict]:
    hidden = _dims(cfg, "dense_x_z")
    decoder = _linear_stack(state, "mlp_z_x")
    dec_dims = tuple(state[f"{n}.weight"].shape[0] for n in decoder)
    if dec_dims != tuple(reversed(hidden)):
        raise CheckpointError(f"{path}: decoder widths {dec_dims} do not mirror the encoder's "
                              f"{hidden} (speechvae's VAE needs a mirrored decoder)")
    config = VAEConfig(n_freq=cfg.getint("Network", "x_dim"), hidden_dims=hidden,
                       latent_dim=cfg.getint("Network", "z_dim"), encoder_input="power")
    mapped = {}
    for i, name in enumerate(_linear_stack(state, "mlp_x_z")):
        mapped[f"encoder_body.{2 * i}"] = name
    for i, name in enumerate(decoder):
        mapped[f"decoder_body.{2 * i}"] = name
    mapped.update({"encoder_mean": "inf_mean", "encoder_logvar": "inf_logvar",
                   "decoder_logvar": "gen_logvar"})
    out = {}
    for ours, theirs in mapped.items():
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = state[f"{theirs}.{p}"]
    return VAE(config), out


def _rvae(cfg, state, path: Path) -> tuple[RVAE, dict]:
    net = cfg["Network"]
    for key in ("dense_x_gx", "dense_z_gz", "dense_z_h", "dense_h_x"):
        if _dims(cfg, key):
            raise CheckpointError(f"{path}: {key} = {net[key]!r} is not supported (speechvae's "
                                  "RVAE has no dense layers there)")
    for key in ("num_RNN_g_x", "num_RNN_g_z", "num_RNN_h"):
        if cfg.getint("Network", key) != 1:
            raise CheckpointError(f"{path}: {key} = {net[key]} is not supported (one LSTM "
                                  "layer only)")
    hid = {cfg.getint("Network", k) for k in ("dim_RNN_g_x", "dim_RNN_g_z", "dim_RNN_h")}
    if len(hid) != 1:
        raise CheckpointError(f"{path}: LSTM sizes {sorted(hid)} differ (speechvae's RVAE uses "
                              "one size)")
    bidir_x, bidir_h = cfg.getboolean("Network", "bidir_g_x"), cfg.getboolean("Network",
                                                                             "bidir_h")
    if bidir_x != bidir_h:
        raise CheckpointError(f"{path}: bidir_g_x = {bidir_x} with bidir_h = {bidir_h} is "
                              "neither the causal nor the non-causal RVAE")
    h = hid.pop()
    dense = _dims(cfg, "dense_g_z")
    config = RVAEConfig(n_freq=cfg.getint("Network", "x_dim"),
                        latent_dim=cfg.getint("Network", "z_dim"), hidden_dim=h,
                        dense_dims=dense, causal=not bidir_x, encoder_input="power",
                        encoder_z_initial_step=True)
    out = {}

    def lstm(ours: str, theirs: str, suffix: str, cell: bool = False):
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            out[f"{ours}.{p}" + ("" if cell else "_l0")] = state[f"{theirs}.{p}_l0{suffix}"]

    # rnn_g_x runs on the reversed spectrogram: l0 = backward in time, l0_reverse = forward
    lstm("encoder_s_backward", "rnn_g_x", "")
    if bidir_x:
        lstm("encoder_s_forward", "rnn_g_x", "_reverse")
    lstm("encoder_z_cell", "rnn_g_z", "", cell=True)

    def first_layer(w: torch.Tensor) -> torch.Tensor:
        # theirs reads [g_x (backward, forward if bidirectional), g_z]; ours [forward,
        # backward, z-state]
        if not bidir_x:
            return w
        return torch.cat([w[:, h:2 * h], w[:, :h], w[:, 2 * h:]], 1)

    layers = _linear_stack(state, "mlp_g_z")
    if tuple(state[f"{n}.weight"].shape[0] for n in layers) != dense:
        raise CheckpointError(f"{path}: mlp_g_z layers do not match dense_g_z = {dense}")
    for i, name in enumerate(layers):
        w = state[f"{name}.weight"]
        out[f"encoder_dense.{i}.weight"] = first_layer(w) if i == 0 else w
        out[f"encoder_dense.{i}.bias"] = state[f"{name}.bias"]
    for ours, theirs in (("encoder_mean", "inf_mean"), ("encoder_logvar", "inf_logvar")):
        w = state[f"{theirs}.weight"]
        out[f"{ours}.weight"] = first_layer(w) if not layers else w
        out[f"{ours}.bias"] = state[f"{theirs}.bias"]
    lstm("decoder_forward", "rnn_h", "")
    if bidir_h:
        lstm("decoder_backward", "rnn_h", "_reverse")
    out["decoder_logvar.weight"] = state["gen_logvar.weight"]
    out["decoder_logvar.bias"] = state["gen_logvar.bias"]
    return RVAE(config), out


def _dkf(cfg, state, path: Path) -> tuple[DKF, dict]:
    if cfg.getboolean("Network", "bidir_gx"):
        raise CheckpointError(f"{path}: bidir_gx = True is not supported (speechvae's DKF "
                              "encoder runs backward in time only)")
    if cfg.getint("Network", "num_RNN_gx") != 1:
        raise CheckpointError(f"{path}: num_RNN_gx = {cfg['Network']['num_RNN_gx']} is not "
                              "supported (one LSTM layer only)")
    lat = cfg.getint("Network", "z_dim")
    config = DKFConfig(n_freq=cfg.getint("Network", "x_dim"), latent_dim=lat,
                       encoder_dense_dims=_dims(cfg, "dense_x_gx"),
                       rnn_dim=cfg.getint("Network", "dim_RNN_gx"),
                       combiner_z_dims=_dims(cfg, "dense_ztm1_g"),
                       combiner_dims=_dims(cfg, "dense_g_z"),
                       decoder_dims=_dims(cfg, "dense_z_x"), transition_dim=lat,
                       encoder_input="power", transition_var_floor=0.0)
    pairs = {}
    for ours, theirs in (("encoder_dense", "mlp_x_gx"), ("encoder_combiner", "mlp_g_z"),
                         ("decoder_body", "mlp_z_x")):
        for i, name in enumerate(_linear_stack(state, theirs)):
            pairs[f"{ours}.{i}"] = name
    chain = _linear_stack(state, "mlp_ztm1_g")
    for i, name in enumerate([*chain, "mlp_ztm1_g.linear_last"]):
        pairs[f"encoder_z.{i}"] = name
    pairs.update({"encoder_mean": "inf_mean", "encoder_logvar": "inf_logvar",
                  "gate_hidden": "mlp_gate.linear1", "gate_out": "mlp_gate.linear2",
                  "proposal_hidden": "mlp_z_prop.linear1", "proposal_out": "mlp_z_prop.linear2",
                  "transition_mean": "prior_mean", "transition_var": "prior_logvar.1",
                  "decoder_logvar": "gen_logvar"})
    out = {f"{ours}.{p}": state[f"{theirs}.{p}"] for ours, theirs in pairs.items()
           for p in ("weight", "bias")}
    for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        out[f"encoder_rnn.{p}_l0"] = state[f"rnn_gx.{p}_l0"]
    return DKF(config), out


_BUILDERS = {"VAE": _vae, "RVAE": _rvae, "DKF": _dkf}


def load_dvae_se(folder: str | os.PathLike, device="cpu") -> Prior:
    """Load a DVAE_SE model folder (``config.ini`` + one ``.pt`` state dict) as a speechvae
    prior with the same weights (see the module docstring for the mapping).

    Args:
        folder: the model folder, e.g. ``.../dvae_se/wsj_rvae``.
        device: device of the returned prior.

    Returns:
        A :class:`~speechvae.priors.VAE`, :class:`~speechvae.priors.RVAE` or
        :class:`~speechvae.priors.DKF` in eval mode, with
        ``metadata`` naming the source folder, model name, tag and training beta.

    Raises:
        CheckpointError: not a DVAE_SE folder, an STFT other than speechvae's, a model type
            or architecture option that does not map (SRNN, dense stacks before the RVAE's
            recurrences, ...), or weights that do not fit the config.

    References:
        Bie, Leglaive, Alameda-Pineda, Girin, IEEE/ACM TASLP 2022 (the models and their
        code); Leglaive, Alameda-Pineda, Girin, Horaud, ICASSP 2020 (the RVAE).
    """
    folder = Path(folder)
    cfg = read_dvae_se_config(folder)
    path = folder / "config.ini"
    _stft_config(cfg, path)
    name = cfg.get("Network", "name", fallback="")
    if name not in _BUILDERS:
        raise CheckpointError(f"{path}: DVAE_SE model {name!r} does not map onto a speechvae "
                              f"prior (supported: {', '.join(_BUILDERS)})")
    activation = cfg.get("Network", "activation", fallback="tanh")
    if activation != "tanh":
        raise CheckpointError(f"{path}: activation {activation!r} is not supported (tanh only)")
    state = _state_dict(folder)
    try:
        prior, mapped = _BUILDERS[name](cfg, state, path)
    except KeyError as exc:
        raise CheckpointError(f"{folder}: state dict lacks {exc.args[0]!r} for a {name} with "
                              "this config") from None
    except (ValueError, configparser.Error) as exc:
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from None
    extra = sorted(set(state) - _used(state, name, cfg))
    if extra:
        raise CheckpointError(f"{folder}: unexpected weights {extra[:3]} for a {name} with this "
                              "config")
    try:
        prior.load_state_dict(mapped)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not match the config "
                              f"({str(exc).splitlines()[0]})") from None
    prior.metadata = {"source": SOURCE, "folder": str(folder), "model": name,
                      "tag": cfg.get("Network", "tag", fallback=""),
                      "beta": cfg.get("Training", "beta", fallback=""),
                      "licence": "GPL-3 (not shipped with speechvae)"}
    prior.eval()
    return prior.to(device)


def _used(state: dict, name: str, cfg) -> set[str]:
    """Their weight names the mapping reads (to refuse folders with layers it would drop)."""
    if name == "VAE":
        stacks = ("mlp_x_z", "mlp_z_x")
        singles = ("inf_mean", "inf_logvar", "gen_logvar")
    elif name == "DKF":
        stacks = ("mlp_x_gx", "mlp_ztm1_g", "mlp_g_z", "mlp_z_x")
        singles = ("mlp_ztm1_g.linear_last", "inf_mean", "inf_logvar", "mlp_gate.linear1",
                   "mlp_gate.linear2", "mlp_z_prop.linear1", "mlp_z_prop.linear2",
                   "prior_mean", "prior_logvar.1", "gen_logvar")
    else:
        stacks = ("mlp_g_z",)
        singles = ("inf_mean", "inf_logvar", "gen_logvar")
    used = set()
    for s in stacks:
        for n in _linear_stack(state, s):
            used |= {f"{n}.weight", f"{n}.bias"}
    for n in singles:
        used |= {f"{n}.weight", f"{n}.bias"}
    if name == "RVAE":
        used |= {k for k in state if k.split(".")[0] in ("rnn_g_x", "rnn_g_z", "rnn_h")}
    if name == "DKF":
        used |= {f"rnn_gx.{p}_l0" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return used
