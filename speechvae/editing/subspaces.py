"""Source–filter latent subspaces of a frame-wise prior, learned from labelled vowels.

For each factor ``i`` (``f0``, ``F1``, ``F2``, ``F3``) a labelled dataset ``D_i`` of synthetic
vowels varies that factor alone (:mod:`speechvae.editing.vowels`). Every frame of every file is
encoded with the prior's encoder, and the aggregated posterior
``q_i(z) = mean_n q(z | s_n)`` gives the factor's covariance

    C_i = mean_n [ mu_n mu_n^T + diag(sigma_n^2) ] - mean_n mu_n  mean_n mu_n^T,

whose leading eigenvectors span the subspace ``U_i`` (``K x M_i``, orthonormal columns);
``M_i`` is the smallest number of eigenvectors keeping a given share of the variance (80 % in
the paper). A piecewise-linear regression ``g_i(y)`` then maps the factor value ``y`` (Hz) to
the coordinates ``U_i^T z`` in the subspace. Editing sets those coordinates and leaves the
orthogonal complement alone:

    z_new = z - U_i U_i^T z + U_i g_i(y).

Generalisation here: a dataset may hold several *series* (fixed settings of the other
factors, e.g. different vowels or talkers). ``C_i`` is then the pooled *within-series*
covariance (each series centred on its own mean), so that the subspace captures the variation
due to factor ``i`` and not the differences between the fixed settings; with one series this
is exactly the paper's ``C_i``. The regression is fitted on the uncentred coordinates of all
series together, so that ``g_i(y)`` is the same for every voice.

References:
    Sadok, Leglaive, Girin, Alameda-Pineda, Séguier, "Learning and controlling the
    source-filter representation of speech with a variational autoencoder", Speech
    Communication 148, 2023 (§3–4).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..priors.base import Prior, atomic_torch_save, safe_torch_load
from ..stft import power_spectrogram
from .common import FACTORS, frame_f0

__all__ = [
    "FACTORS",
    "FactorSubspace",
    "SourceFilterSubspaces",
    "SubspaceError",
    "encode_frames",
    "fit_factor_subspace",
    "learn_subspaces",
    "piecewise_linear_fit",
]

SUBSPACES_FORMAT = "speechvae-subspaces"


class SubspaceError(ValueError):
    """A subspace file that is not ours, is corrupt, or does not match the prior."""


def piecewise_linear_fit(y: np.ndarray, c: np.ndarray, segments: int = 20
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous piecewise-linear least-squares fit of ``c`` against the scalar ``y``.

    The knots are the quantiles of ``y`` (so every segment holds data); the function is a
    weighted sum of "hat" basis functions, one per knot, and the knot values solve an
    ordinary least-squares problem (``numpy.linalg.lstsq``). With the knots fixed this is the
    exact minimiser of the squared error over continuous piecewise-linear functions.

    Args:
        y: factor values, ``(N,)`` (Hz).
        c: targets, ``(N, M)`` (subspace coordinates).
        segments: number of linear pieces (fewer if ``y`` has fewer distinct values).

    Returns:
        ``(knots, values)``: ``(S + 1,)`` increasing knots and ``(S + 1, M)`` values at them.

    Raises:
        ValueError: fewer than two distinct values of ``y`` or mismatched lengths.
    """
    y = np.asarray(y, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64).reshape(len(y), -1)
    distinct = np.unique(y)
    if distinct.size < 2:
        raise ValueError("a regression needs at least two distinct factor values")
    segments = max(1, min(segments, distinct.size - 1))
    knots = np.unique(np.quantile(distinct, np.linspace(0.0, 1.0, segments + 1)))
    basis = _hat_basis(y, knots)
    values, *_ = np.linalg.lstsq(basis, c, rcond=None)
    return knots, values


def _hat_basis(y: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """``(N, S + 1)`` linear-interpolation weights of ``y`` (clamped to the knot range)."""
    y = np.clip(y, knots[0], knots[-1])
    j = np.clip(np.searchsorted(knots, y, side="right") - 1, 0, len(knots) - 2)
    t = (y - knots[j]) / (knots[j + 1] - knots[j])
    basis = np.zeros((len(y), len(knots)))
    rows = np.arange(len(y))
    basis[rows, j] = 1.0 - t
    basis[rows, j + 1] = t
    return basis


@dataclass
class FactorSubspace:
    """The latent subspace and regression of one factor.

    Attributes:
        factor: ``"f0"``, ``"F1"``, ``"F2"`` or ``"F3"``.
        basis: ``U_i``, ``(latent, M)`` with orthonormal columns.
        eigenvalues: all eigenvalues of ``C_i`` in decreasing order, ``(latent,)``.
        knots: regression knots, ``(S + 1,)`` in Hz (their range is the range of the labels).
        knot_values: ``g_i`` at the knots, ``(S + 1, M)``.
    """

    factor: str
    basis: torch.Tensor
    eigenvalues: torch.Tensor
    knots: torch.Tensor
    knot_values: torch.Tensor

    @property
    def dim(self) -> int:
        """``M_i``, the subspace dimension."""
        return self.basis.shape[1]

    @property
    def variance_kept(self) -> float:
        """Share of the factor's latent variance kept by the projection (0..1)."""
        ev = self.eigenvalues.clamp_min(0)
        return float(ev[: self.dim].sum() / ev.sum())

    @property
    def label_range(self) -> tuple[float, float]:
        """The range of factor values (Hz) the regression was fitted on."""
        return float(self.knots[0]), float(self.knots[-1])

    def coordinates(self, z: torch.Tensor) -> torch.Tensor:
        """``U_i^T z``: ``(..., latent, time)`` -> ``(..., M, time)``."""
        return torch.einsum("km,...kt->...mt", self.basis.to(z), z)

    def regression(self, y) -> torch.Tensor:
        """``g_i(y)``: factor values ``(time,)`` or a scalar (Hz) -> coordinates
        ``(M, time)`` (``(M, 1)`` for a scalar), by linear interpolation between the knots.

        Raises:
            ValueError: a value outside :attr:`label_range` or not finite.
        """
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        lo, hi = self.label_range
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{self.factor} values must be finite")
        if y.min() < lo - 1e-6 or y.max() > hi + 1e-6:
            raise ValueError(f"{self.factor} {_hz(y.min() if y.min() < lo else y.max())} is "
                             f"outside the learned range {lo:.0f}–{hi:.0f} Hz")
        weights = _hat_basis(y, self.knots.double().numpy())
        values = weights @ self.knot_values.double().numpy()  # (time, M)
        return torch.from_numpy(values.T.copy()).to(self.basis.dtype)

    def move(self, z: torch.Tensor, y, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Move ``z`` inside the subspace to the factor value ``y``:
        ``z - U U^T z + U g(y)`` (Sadok et al. 2023, eq. of §4.2).

        Args:
            z: latents ``(latent, time)`` (or with leading batch dims).
            y: target (Hz), a scalar or ``(time,)``.
            frames: optional boolean ``(time,)``; frames where it is False are returned
                unchanged.

        Returns:
            the edited latents, same shape as ``z``.
        """
        U = self.basis.to(z)
        target = self.regression(y).to(z)  # (M, time or 1)
        moved = z - torch.einsum("km,...mt->...kt", U, self.coordinates(z) - target)
        return moved if frames is None else torch.where(frames, moved, z)

    def remove(self, z: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Project out the subspace: ``z - U U^T z`` (for ``f0``: whispering, Sadok et al.
        2023, Fig. 6). Same shapes as :meth:`move`."""
        U = self.basis.to(z)
        out = z - torch.einsum("km,...mt->...kt", U, self.coordinates(z))
        return out if frames is None else torch.where(frames, out, z)

    def to_dict(self) -> dict:
        return {"factor": self.factor, "basis": self.basis, "eigenvalues": self.eigenvalues,
                "knots": self.knots, "knot_values": self.knot_values}


@dataclass
class SourceFilterSubspaces:
    """The four factor subspaces of one prior, with what they were learned from.

    Attributes:
        factors: ``{"f0": FactorSubspace, "F1": ..., ...}`` (a subset is allowed).
        prior: description of the prior (name, checkpoint file name, latent size).
        info: how they were learned (variance share, segments, dataset sizes, seed).
    """

    factors: dict[str, FactorSubspace]
    prior: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __getitem__(self, factor: str) -> FactorSubspace:
        try:
            return self.factors[factor]
        except KeyError:
            raise KeyError(f"no subspace for {factor!r}; learned: "
                           f"{', '.join(self.factors)}") from None

    def disentanglement(self) -> tuple[list[str], torch.Tensor]:
        """Dot products between all pairs of basis vectors of different factors (the
        paper's disentanglement measure: 0 means orthogonal subspaces).

        Returns:
            ``(labels, G)``: labels like ``"f0.1"`` (factor, component) and the Gram matrix
            ``G`` of all basis vectors, ``(sum M_i, sum M_i)``.
        """
        labels, columns = [], []
        for name, sub in self.factors.items():
            labels += [f"{name}.{j + 1}" for j in range(sub.dim)]
            columns.append(sub.basis)
        basis = torch.cat(columns, dim=1)
        return labels, basis.T @ basis

    def max_cross_dot(self) -> float:
        """Largest ``|u^T v|`` between basis vectors of two different factors."""
        labels, gram = self.disentanglement()
        owner = [label.split(".")[0] for label in labels]
        best = 0.0
        for a in range(len(labels)):
            for b in range(len(labels)):
                if owner[a] != owner[b]:
                    best = max(best, abs(float(gram[a, b])))
        return best

    def summary(self) -> str:
        """A Markdown table: factor, M_i, variance kept, label range."""
        rows = ["| factor | M | variance kept | range (Hz) |", "|---|---|---|---|"]
        for name, sub in self.factors.items():
            lo, hi = sub.label_range
            rows.append(f"| {name} | {sub.dim} | {100 * sub.variance_kept:.1f} % | "
                        f"{lo:.0f}–{hi:.0f} |")
        return "\n".join(rows)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically; the file holds tensors and plain values only (it loads with
        ``weights_only=True``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": SUBSPACES_FORMAT, "version": 1, "prior": dict(self.prior),
                   "info": dict(self.info),
                   "factors": {k: v.to_dict() for k, v in self.factors.items()}}
        atomic_torch_save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SourceFilterSubspaces:
        """Read a file written by :meth:`save` (restricted loader).

        Raises:
            SubspaceError: not a subspace file, or an unknown factor.
            CheckpointError: missing, unreadable or unsafe file.
        """
        payload = safe_torch_load(path)
        if not isinstance(payload, dict) or payload.get("format") != SUBSPACES_FORMAT:
            raise SubspaceError(f"{path}: not a speechvae subspace file")
        factors = {}
        for name, d in payload["factors"].items():
            if name not in FACTORS:
                raise SubspaceError(f"{path}: unknown factor {name!r}")
            factors[name] = FactorSubspace(**d)
        return cls(factors, payload.get("prior", {}), payload.get("info", {}))

    def check_prior(self, prior: Prior) -> None:
        """Raise :class:`SubspaceError` if the subspaces were learned for a latent of
        another size."""
        latent = self.prior.get("latent_dim")
        if latent is not None and latent != prior.latent_dim:
            raise SubspaceError(f"subspaces were learned for a {latent}-dim latent, the "
                                f"prior has {prior.latent_dim}")


@torch.no_grad()
def encode_frames(prior: Prior, waveform: np.ndarray, trim_frames: int = 4
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and variances of the steady frames of one waveform.

    The waveform (at the prior's rate) is peak-normalised as in training; the first and
    last ``trim_frames`` frames (onset/offset transients, partial windows) are dropped.

    Returns:
        ``(mean, var)``, each ``(frames, latent)``.
    """
    device = next(prior.parameters()).device
    x = np.asarray(waveform, dtype=np.float32)
    x = x / max(float(np.abs(x).max()), 1e-12)
    power = power_spectrogram(torch.from_numpy(x).to(device), prior.stft_config)[None]
    post = prior.encode(power)
    sl = slice(trim_frames, -trim_frames if trim_frames else None)
    mean = post.mean[0, :, sl].T.double().cpu()
    var = post.logvar[0, :, sl].exp().T.double().cpu()
    if mean.shape[0] == 0:
        raise ValueError(f"a waveform of {x.size} samples has no frames left after "
                         f"trimming {trim_frames} at each end")
    return mean, var


def fit_factor_subspace(factor: str, means: Sequence[torch.Tensor],
                        variances: Sequence[torch.Tensor], labels: Sequence[float],
                        series: Sequence, variance_share: float = 0.8, segments: int = 20,
                        dim: int | None = None,
                        extra: tuple[np.ndarray, torch.Tensor] | None = None
                        ) -> FactorSubspace:
    """Subspace and regression of one factor from per-file encoded frames.

    Args:
        factor: factor name.
        means, variances: per file, ``(frames, latent)`` posterior means / variances.
        labels: per file, the factor value (Hz).
        series: per file, a hashable key of the fixed setting of the other factors; the
            covariance is pooled within series (see the module docstring).
        variance_share: keep the fewest eigenvectors whose eigenvalues sum to at least this
            share of the total (0 < share <= 1).
        segments: pieces of the piecewise-linear regression.
        dim: force ``M_i`` (overrides ``variance_share``).
        extra: optional ``(labels (N,), means (N, latent))`` of single frames added to the
            regression data only (e.g. voiced frames of real speech labelled by a pitch
            tracker); frames whose label is outside the vowels' range are ignored.

    Returns:
        :class:`FactorSubspace`.

    Raises:
        ValueError: no files, share outside (0, 1], or ``dim`` out of range.
    """
    if not means:
        raise ValueError(f"no encoded files for {factor}")
    if not 0 < variance_share <= 1:
        raise ValueError(f"variance_share must be in (0, 1], got {variance_share}")
    latent = means[0].shape[1]
    groups: dict = {}
    for m, v, key in zip(means, variances, series):
        groups.setdefault(key, []).append((m, v))
    cov = torch.zeros(latent, latent, dtype=torch.float64)
    total = 0
    for items in groups.values():
        mu = torch.cat([m for m, _ in items])
        var = torch.cat([v for _, v in items])
        centred = mu - mu.mean(dim=0)
        cov += centred.T @ centred + torch.diag(var.sum(dim=0))
        total += mu.shape[0]
    cov /= total
    eigenvalues, vectors = torch.linalg.eigh(cov)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    share = eigenvalues.clamp_min(0).cumsum(0) / eigenvalues.clamp_min(0).sum()
    if dim is None:
        dim = int(torch.searchsorted(share, torch.tensor(variance_share - 1e-9,
                                                         dtype=share.dtype))) + 1
    if not 1 <= dim <= latent:
        raise ValueError(f"subspace dimension must be in 1..{latent}, got {dim}")
    basis = vectors[:, :dim]
    # a deterministic sign: the largest-magnitude entry of each column is positive
    signs = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    basis = basis * signs
    y = np.concatenate([np.full(m.shape[0], float(lab)) for m, lab in zip(means, labels)])
    coords = torch.cat(means) @ basis
    if extra is not None:
        y_extra, means_extra = np.asarray(extra[0], dtype=np.float64), extra[1].double()
        inside = (y_extra >= y.min()) & (y_extra <= y.max())
        y = np.concatenate([y, y_extra[inside]])
        coords = torch.cat([coords, means_extra[torch.from_numpy(inside)] @ basis])
    knots, values = piecewise_linear_fit(y, coords.numpy(), segments)
    return FactorSubspace(factor, basis.float(), eigenvalues.float(),
                          torch.from_numpy(knots).float(), torch.from_numpy(values).float())


def learn_subspaces(prior: Prior, datasets: Mapping,
                    variance_share: float | Mapping[str, float] = 0.8,
                    segments: int = 20, trim_frames: int = 4, progress: bool = False,
                    speech: Sequence[np.ndarray] | None = None) -> SourceFilterSubspaces:
    """Learn the source–filter subspaces of a frame-wise prior (Sadok et al. 2023).

    Args:
        prior: a frame-wise prior (``prior.frame_factorised``), e.g. the shipped VAE.
        datasets: ``{factor: dataset}`` where each dataset has ``waveforms`` (list of
            ``(time,)`` arrays at the prior's rate), ``labels`` (``(N,)`` Hz) and
            ``settings`` (list of dicts: the fixed other factors, which define the series),
            as made by :func:`speechvae.editing.vowels.make_factor_datasets`.
        variance_share: share of each factor's latent variance the subspace keeps (0.8 in
            the paper), or a ``{factor: share}`` mapping (factors not in it use 0.8).
        segments: pieces of each piecewise-linear regression (about 20 in the paper's code).
        trim_frames: frames dropped at both ends of each file.
        progress: show a tqdm progress bar.
        speech: optional clean speech waveforms (at the prior's rate) whose voiced frames,
            labelled with Praat's f0 (:func:`speechvae.editing.frame_f0`), are added to the
            data of the f0 *regression* (not of the subspace). An addition to the paper:
            the regression then also fits where real speech lies in the latent space.

    Returns:
        :class:`SourceFilterSubspaces`.

    Raises:
        ValueError: a prior that is not frame-wise, an unknown factor, or an empty dataset.
    """
    if not prior.frame_factorised:
        raise ValueError(f"latent editing needs a frame-wise prior; {prior.name!r} is not")
    factors = {}
    sizes = {}
    for name, data in datasets.items():
        if name not in FACTORS:
            raise ValueError(f"unknown factor {name!r}; use {', '.join(FACTORS)}")
        waveforms = data.waveforms
        it = waveforms
        if progress:
            from tqdm import tqdm

            it = tqdm(waveforms, desc=f"encoding {name}", unit="file", leave=False)
        encoded = [encode_frames(prior, w, trim_frames) for w in it]
        series = [_series_key(s) for s in data.settings]
        extra = _speech_f0_frames(prior, speech) if speech and name == "f0" else None
        share = (variance_share.get(name, 0.8) if isinstance(variance_share, Mapping)
                 else variance_share)
        factors[name] = fit_factor_subspace(
            name, [m for m, _ in encoded], [v for _, v in encoded], list(data.labels),
            series, variance_share=share, segments=segments, extra=extra)
        sizes[name] = {"files": len(waveforms), "series": len(set(series)),
                       "frames": int(sum(m.shape[0] for m, _ in encoded))}
    prior_info = {"name": prior.name, "latent_dim": prior.latent_dim,
                  "source": str(getattr(prior, "metadata", {}).get("source", ""))}
    info = {"variance_share": (dict(variance_share) if isinstance(variance_share, Mapping)
                               else variance_share), "segments": segments,
            "trim_frames": trim_frames, "datasets": sizes,
            "speech_files_in_f0_regression": len(speech or [])}
    return SourceFilterSubspaces(factors, prior_info, info)


@torch.no_grad()
def _speech_f0_frames(prior: Prior, speech: Sequence[np.ndarray]
                      ) -> tuple[np.ndarray, torch.Tensor]:
    """Voiced frames of real speech: Praat f0 labels ``(N,)`` and posterior means
    ``(N, latent)``."""
    device = next(prior.parameters()).device
    labels, means = [], []
    for waveform in speech:
        x = np.asarray(waveform, dtype=np.float32)
        x = x / max(float(np.abs(x).max()), 1e-12)
        power = power_spectrogram(torch.from_numpy(x).to(device), prior.stft_config)[None]
        mu = prior.encode(power).mean[0].T.double().cpu()
        f0 = frame_f0(x, prior.stft_config)[: mu.shape[0]]
        voiced = np.isfinite(f0)
        labels.append(f0[voiced])
        means.append(mu[torch.from_numpy(voiced)])
    return np.concatenate(labels), torch.cat(means)


def _series_key(settings) -> tuple:
    if isinstance(settings, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in settings.items()))
    return (_hashable(settings),)


def _hashable(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _hz(v: float) -> str:
    return f"{v:.0f} Hz"
