"""Shipped pretrained priors, one checkpoint and one model card (Markdown) each."""
from pathlib import Path

_HERE = Path(__file__).parent


def shipped_priors() -> list[str]:
    """Names of the priors shipped with the package (``vae`` -> ``vae.pt``)."""
    return sorted(p.stem for p in _HERE.glob("*.pt"))


def pretrained_path(name: str) -> Path:
    """Path of a shipped checkpoint."""
    return _HERE / f"{name}.pt"
