"""``speechvae priors``: registered prior types and shipped checkpoints."""
from __future__ import annotations

import click

from ._common import emit, exception_message, print_json


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def describe_checkpoint(path) -> dict:
    """Facts about a checkpoint file, read with the restricted (safe) loader.

    Returns:
        dict with ``path``, ``size_mb`` and, when the file loads, ``type``, ``config`` and
        training facts from its metadata; otherwise ``error`` (one line).
    """
    from speechvae.priors import CheckpointError, safe_torch_load

    info = {"path": str(path), "size_mb": round(path.stat().st_size / 2**20, 2)}
    try:
        payload = safe_torch_load(path)
    except CheckpointError as exc:
        info["error"] = exception_message(exc)
        return info
    if not isinstance(payload, dict):
        info["error"] = "not a speechvae prior checkpoint"
        return info
    info["type"] = payload.get("name")
    info["config"] = payload.get("config")
    meta = payload.get("metadata") or {}
    for key in ("epochs_trained", "val_loss_per_frame"):
        if key in meta:
            info[key] = meta[key]
    card = path.with_suffix(".md")
    if card.exists():
        info["model_card"] = str(card)
    return info


@click.command(short_help="List registered prior types and shipped checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def priors(as_json):
    """List the registered prior types and the checkpoints shipped with speechvae.

    A shipped checkpoint is used by name ('speechvae enhance --prior vae'); any other
    checkpoint by path. A registered type can be trained with 'speechvae train'.
    """
    from speechvae.pretrained import pretrained_path, shipped_priors
    from speechvae.priors import available_priors, get_prior_class

    registered = [{"name": n, "description": _first_line(get_prior_class(n).__doc__)}
                  for n in available_priors()]
    shipped = [{"name": n, **describe_checkpoint(pretrained_path(n))} for n in shipped_priors()]
    if as_json:
        print_json({"registered": registered, "shipped": shipped})
        return
    emit("registered prior types:")
    width = max((len(r["name"]) for r in registered), default=0)
    for r in registered:
        emit(f"  {r['name'].ljust(width)}  {r['description']}")
    emit("shipped checkpoints:")
    if not shipped:
        emit("  (none; train one with 'speechvae train' and pass --prior PATH)")
    for s in shipped:
        if "error" in s:
            emit(f"  {s['name']}  {s['path']}  unreadable: {s['error']}")
            continue
        config = ", ".join(f"{k}={v}" for k, v in (s.get("config") or {}).items())
        facts = f"type {s.get('type')}, {s['size_mb']} MB"
        if "epochs_trained" in s:
            facts += f", {s['epochs_trained']} epochs"
        emit(f"  {s['name']}  {s['path']}  ({facts}; {config})")
