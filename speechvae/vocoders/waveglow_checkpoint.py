"""Saving and loading WaveGlow weights: our own format and both public NVIDIA layouts.

Layouts read by :func:`load_waveglow`:

* ours: ``{"format": "speechvae-vocoder", "name": "waveglow", "config": {...},
  "state_dict": {...}}`` (written by :func:`save_waveglow`, loaded with
  ``torch.load(weights_only=True)``);
* NVIDIA's torch-hub release (512 channels): ``{"state_dict": {...}, "config": {...}}``,
  keys possibly prefixed ``module.``; also loaded with ``weights_only=True``;
* the whole-model pickle ``waveglow_256channels_universal_v5.pt``: ``{"model":
  <glow.WaveGlow>, ...}``. Such a file names Python classes, and unpickling an arbitrary
  class can run code, so it goes through :class:`RestrictedUnpickler`, which rebuilds only
  tensors, torch containers/convolutions, OrderedDicts and the three ``glow`` classes (as
  inert stubs whose parameters are read out); any other global is refused before anything is
  called.

Weight normalisation: NVIDIA stores WN convolutions as ``weight_g`` / ``weight_v``; they are
folded into plain ``weight = g * v / ||v||`` (norm over all axes but the first, torch's
``weight_norm(dim=0)``). Older releases have one conditioning conv per layer
(``cond_layers.{i}``); they are concatenated into our single ``cond_layer``.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import re
import types
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, atomic_torch_save, versions
from .waveglow import DEFAULT_WAVEGLOW, WaveGlow, WaveGlowConfig

__all__ = ["RestrictedUnpickler", "load_waveglow", "save_waveglow", "waveglow_state_dict"]

FORMAT = "speechvae-vocoder"


def save_waveglow(model: WaveGlow, path: str | os.PathLike, metadata: dict | None = None
                  ) -> Path:
    """Write a self-describing WaveGlow checkpoint atomically (loads with
    ``weights_only=True``)."""
    payload = {"format": FORMAT, "name": "waveglow", "config": model.config.to_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "versions": versions(), "metadata": dict(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, path)
    return path


# -- restricted unpickling of the whole-model pickle ---------------------------------------
class _GlowStub:
    """Inert stand-in for a pickled ``glow.*`` module: it only receives the pickled
    ``__dict__`` (parameters, sub-modules, hyper-parameters); it has no methods that run."""


class PickledWaveGlow(_GlowStub):
    pass


class PickledWN(_GlowStub):
    pass


class PickledInvertible1x1Conv(_GlowStub):
    pass


_GLOW_CLASSES = {"WaveGlow": PickledWaveGlow, "WN": PickledWN,
                 "Invertible1x1Conv": PickledInvertible1x1Conv}

_ALLOWED = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.nn.modules.conv", "Conv1d"),
    ("torch.nn.modules.conv", "ConvTranspose1d"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.utils.weight_norm", "WeightNorm"),
    ("torch", "Size"),
}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only what a WaveGlow whole-model pickle needs.

    Allowed: the ``glow`` classes ``WaveGlow``, ``WN`` and ``Invertible1x1Conv`` (mapped onto
    inert stubs), tensor/parameter rebuilding functions, torch storages (handled by
    ``torch.load``), ``Conv1d``, ``ConvTranspose1d``, ``ModuleList``, the ``WeightNorm``
    hook, ``OrderedDict`` and ``set``. Anything else raises :class:`pickle.UnpicklingError`
    naming the refused global, before it is called.
    """

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)  # protocol 2 pickles name Python 2 modules
        if module == "glow" and name in _GLOW_CLASSES:
            return _GLOW_CLASSES[name]
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not part of a "
                                     "WaveGlow checkpoint")


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


#: a pickle "module" for ``torch.load(pickle_module=...)``
_restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=_restricted_load,
                                           __name__="speechvae_restricted_pickle")


def _collect(obj, prefix: str, out: dict) -> None:
    """Walk a pickled module tree (stubs and real torch modules) reading parameters."""
    d = obj.__dict__ if hasattr(obj, "__dict__") else {}
    for key in ("_parameters", "_buffers"):
        for name, t in (d.get(key) or {}).items():
            if t is not None:
                out[prefix + name] = t.detach() if isinstance(t, torch.Tensor) else t
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def _stub_config(model) -> dict:
    d = model.__dict__
    keys = ("n_flows", "n_group", "n_early_every", "n_early_size")
    return {k: d[k] for k in keys if isinstance(d.get(k), int)}


# -- state-dict conversion ----------------------------------------------------------------
def _fold_weight_norm(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            base = k[: -len("_g")]
            vv = sd[base + "_v"]
            norm = vv.flatten(1).norm(dim=1).reshape(-1, *[1] * (vv.ndim - 1))
            out[base] = v * vv / norm
        elif k.endswith(".weight_v"):
            continue
        else:
            out[k] = v
    return out


def _merge_cond_layers(sd: dict) -> dict:
    pat = re.compile(r"^WN\.(\d+)\.cond_layers\.(\d+)\.(weight|bias)$")
    groups: dict[tuple[int, str], dict[int, torch.Tensor]] = collections.defaultdict(dict)
    out = {}
    for k, v in sd.items():
        m = pat.match(k)
        if m:
            groups[(int(m.group(1)), m.group(3))][int(m.group(2))] = v
        else:
            out[k] = v
    for (flow, kind), layers in groups.items():
        out[f"WN.{flow}.cond_layer.{kind}"] = torch.cat([layers[i] for i in sorted(layers)])
    return out


def waveglow_state_dict(sd: dict) -> dict:
    """NVIDIA-named state dict -> ours: strip ``module.``, fold weight norm, merge
    per-layer conditioning convs."""
    sd = {(k.removeprefix("module.")): v for k, v in sd.items()}
    return _merge_cond_layers(_fold_weight_norm(sd))


def _infer_config(sd: dict, known: dict, base: WaveGlowConfig) -> WaveGlowConfig:
    """Architecture from the tensor shapes (and any known hyper-parameters)."""
    n_flows = len({k.split(".")[1] for k in sd if k.startswith("convinv.")})
    chans = [sd[f"convinv.{k}.conv.weight"].shape[0] for k in range(n_flows)]
    drops = [k for k in range(1, n_flows) if chans[k] < chans[k - 1]]
    every = known.get("n_early_every", drops[0] if drops else n_flows + 1)
    size = known.get("n_early_size", chans[drops[0] - 1] - chans[drops[0]] if drops else 2)
    up = sd["upsample.weight"]
    n_layers = len({k.split(".")[3] for k in sd if k.startswith("WN.0.in_layers.")})
    in0 = sd["WN.0.in_layers.0.weight"]
    return dataclasses.replace(
        base, n_flows=n_flows, n_group=known.get("n_group", chans[0]), n_early_every=every,
        n_early_size=size, n_mels=up.shape[0], win_length=up.shape[2], n_layers=n_layers,
        n_channels=in0.shape[1], kernel_size=in0.shape[2])


def _build(sd: dict, known: dict, path, base: WaveGlowConfig) -> WaveGlow:
    sd = waveglow_state_dict(sd)
    try:
        config = _infer_config(sd, known, base)
        model = WaveGlow(config)
        model.load_state_dict(sd)
    except (KeyError, IndexError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a loadable WaveGlow state dict "
                              f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def load_waveglow(path: str | os.PathLike, base_config: WaveGlowConfig = DEFAULT_WAVEGLOW
                  ) -> WaveGlow:
    """Load a WaveGlow from our checkpoint format or either public NVIDIA layout.

    Args:
        path: checkpoint file.
        base_config: analysis settings (rate, mel) for public checkpoints, which do not
            store them (default: 22.05 kHz, the public models' rate); the architecture is
            read from the tensor shapes.

    Returns:
        the model in eval mode, on CPU.

    Raises:
        CheckpointError: missing/unreadable file, a pickle naming a class that is not part of
            a WaveGlow checkpoint (refused before it is called), or weights that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):
            raise CheckpointError(f"{path}: unreadable checkpoint "
                                  f"({str(exc).splitlines()[0]})") from None
        payload = None  # names classes: try the restricted unpickler below
    except Exception as exc:  # noqa: BLE001 -- RuntimeError for non-zip files, EOFError, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if payload is None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False,
                                 pickle_module=_restricted_pickle)
        except pickle.UnpicklingError as exc:
            text = str(exc).splitlines()[0] if str(exc) else "UnpicklingError"
            what = "refused" if text.startswith("refused") else "unreadable checkpoint"
            raise CheckpointError(f"{path}: {what}: {text}") from None
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a WaveGlow checkpoint")
    if payload.get("format") == FORMAT:
        if payload.get("name") != "waveglow":
            raise CheckpointError(f"{path}: vocoder {payload.get('name')!r}, not waveglow")
        config = WaveGlowConfig(**payload["config"])
        model = WaveGlow(config)
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not match the config "
                                  f"({str(exc).splitlines()[0]})") from None
        return model.eval()
    if isinstance(payload.get("model"), PickledWaveGlow):
        model = payload["model"]
        sd: dict = {}
        _collect(model, "", sd)
        return _build(sd, _stub_config(model), path, base_config)
    if isinstance(payload.get("state_dict"), dict):
        known = dict(payload.get("config") or {})
        return _build(payload["state_dict"], known, path, base_config)
    raise CheckpointError(f"{path}: not a WaveGlow checkpoint (expected our format, a "
                          "{'state_dict', 'config'} release or a {'model': glow.WaveGlow} "
                          "pickle)")
