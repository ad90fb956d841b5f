"""Baselines evaluated beside the VAE methods: the noisy input, spectral gating, NMF alone.

Every baseline is a callable object ``method(waveform, sample_rate) -> waveform`` with the
input's shape ``(time,)`` and rate, a ``name`` and a ``settings()`` dict (stored with the
results so that a resumed evaluation can check it runs the same thing). They are built by
name through a registry::

    from speechvae.evaluation import get_baseline
    nmf = get_baseline("nmf", dictionary="my_dictionary.pt")
    enhanced = nmf(noisy, 16000)

* ``noisy``: the input itself (the reference point of every table).
* ``spectral-gating``: non-stationary spectral gating from the ``noisereduce`` package
  (Sainburg et al. 2020), with its default settings; needs ``pip install speechvae[eval]``.
* ``nmf``: semi-supervised NMF (Mysore & Smaragdis 2011; the baseline of Leglaive, Girin &
  Horaud 2018): a speech dictionary of 32 atoms learned beforehand by Itakura–Saito NMF on
  clean speech and kept fixed, a rank-8 noise NMF learned on the noisy file itself, and a
  Wiener filter. The dictionary shipped in ``speechvae/pretrained/nmf/`` is made by
  ``recipes/nmf/train_dictionary.py``; any other one is given by path.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import check_waveform
from ..registry import ClassRegistry
from ..stft import DEFAULT_STFT, STFTConfig, istft, stft

__all__ = [
    "SHIPPED_DICTIONARY",
    "NMFBaseline",
    "NMFBaselineConfig",
    "NoisyBaseline",
    "SpectralGating",
    "SpectralGatingConfig",
    "SpeechDictionary",
    "available_baselines",
    "get_baseline",
    "is_divergence",
    "learn_dictionary",
    "load_dictionary",
    "register_baseline",
    "save_dictionary",
    "semi_supervised_nmf",
]

TINY = 1e-12
#: the speech dictionary shipped with speechvae (made by recipes/nmf/train_dictionary.py)
SHIPPED_DICTIONARY = Path(__file__).resolve().parents[1] / "pretrained" / "nmf" / \
    "speech_dictionary.pt"
DICTIONARY_FORMAT = "speechvae-nmf-dictionary"

_REGISTRY = ClassRegistry("baseline")


def register_baseline(name: str):
    """Class decorator: make a baseline available to :func:`get_baseline` as ``name``."""

    return _REGISTRY.register(name)


def available_baselines() -> list[str]:
    """Names of the registered baselines."""
    return _REGISTRY.names()


def get_baseline(name: str, **kwargs):
    """Build the baseline ``name`` (keyword arguments go to its constructor).

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    return _REGISTRY.get(name)(**kwargs)


def _eval_extra(package: str) -> ImportError:
    return ImportError(f"the {package!r} package is needed here: pip install speechvae[eval] "
                       f"(or pip install {package})")


# -- noisy ----------------------------------------------------------------------------------

@register_baseline("noisy")
class NoisyBaseline:
    """The noisy input, unchanged: what every method has to improve on."""

    def __init__(self, **_ignored):
        pass

    def settings(self) -> dict:
        return {"baseline": self.name}

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Returns a float32 copy of ``waveform`` ``(time,)``."""
        return np.array(waveform, dtype=np.float32)


# -- spectral gating -------------------------------------------------------------------------

@dataclass(frozen=True)
class SpectralGatingConfig:
    """Settings of :class:`SpectralGating` (the ``noisereduce.reduce_noise`` arguments).

    Attributes:
        stationary: stationary gating (one noise threshold per frequency over the whole
            file) instead of the non-stationary default (a running noise floor).
        prop_decrease: proportion of the noise removed, 0 to 1.
        time_constant_s: time constant of the non-stationary noise floor, in seconds.
    """

    stationary: bool = False
    prop_decrease: float = 1.0
    time_constant_s: float = 2.0


@register_baseline("spectral-gating")
class SpectralGating:
    """Spectral gating (noise gate on an STFT mask) from ``noisereduce``.

    References:
        Sainburg, Thielk, Gentner, "Finding, visualizing, and quantifying latent structure
        across diverse animal vocal repertoires", PLoS Comp. Biol. 2020 (noisereduce).

    Raises:
        ImportError: noisereduce is not installed (``pip install speechvae[eval]``).
    """

    def __init__(self, config: SpectralGatingConfig | None = None, **_ignored):
        try:
            import noisereduce
        except ImportError:
            raise _eval_extra("noisereduce") from None
        self._nr = noisereduce
        self.config = config or SpectralGatingConfig()

    def settings(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        try:
            nr_version = version("noisereduce")
        except PackageNotFoundError:
            nr_version = "unknown"
        return {"baseline": self.name, "noisereduce": nr_version, **asdict(self.config)}

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Denoise ``waveform`` ``(time,)`` at ``sample_rate`` Hz; same shape, float32."""
        x = check_waveform(waveform)
        c = self.config
        y = self._nr.reduce_noise(y=x, sr=sample_rate, stationary=c.stationary,
                                  prop_decrease=c.prop_decrease,
                                  time_constant_s=c.time_constant_s, n_jobs=1)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        return _fit_length(y, x.size)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


# -- NMF -------------------------------------------------------------------------------------

def is_divergence(power: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """Itakura–Saito divergence ``sum(P / V - log(P / V) - 1)`` (a 0-d tensor).

    Shape:
        ``power`` and ``model`` of the same shape, e.g. ``(freq, time)``, positive.
    """
    r = power / model
    return (r - torch.log(r) - 1).sum()


def _normalise(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-sum columns of ``W (freq, rank)``, rows of ``H (rank, time)`` scaled inversely."""
    norm = W.sum(0).clamp_min(TINY)
    return W / norm, H * norm[:, None]


def _update_h(power, W, H):
    v = (W @ H).clamp_min(TINY)
    return H * ((W.T @ (power / v.square())) / (W.T @ v.reciprocal()).clamp_min(TINY)).sqrt()


def _update_w(power, W, H):
    v = (W @ H).clamp_min(TINY)
    return W * (((power / v.square()) @ H.T) / (v.reciprocal() @ H.T).clamp_min(TINY)).sqrt()


def learn_dictionary(power: torch.Tensor, rank: int = 32, iterations: int = 200,
                     seed: int = 0, costs: list | None = None) -> torch.Tensor:
    """Learn an NMF dictionary of a (speech) power spectrogram with the IS divergence.

    Multiplicative updates with exponent 1/2 (majorisation-minimisation, so the divergence
    never increases), columns of ``W`` scaled to unit sum after each pass.

    Args:
        power: ``(freq, frames)`` power spectrogram (|X|^2), e.g. clean-speech frames pooled
            from many files.
        rank: number of atoms.
        iterations: passes of the W and H updates.
        seed: seed of the random initialisation.
        costs: optional list to which the IS divergence after each pass is appended.

    Returns:
        ``W`` of shape ``(freq, rank)``, columns summing to one, same dtype as ``power``.

    References:
        Févotte, Bertin, Durrieu, "Nonnegative matrix factorization with the Itakura-Saito
        divergence", Neural Computation 2009; Févotte & Idier, Neural Computation 2011.
    """
    if power.ndim != 2:
        raise TypeError(f"expected a (freq, frames) power spectrogram, got shape "
                        f"{tuple(power.shape)}")
    power = power.clamp_min(TINY)
    gen = torch.Generator().manual_seed(seed)
    f, n = power.shape
    W = torch.rand((f, rank), generator=gen, dtype=power.dtype).to(power.device) + 0.1
    H = torch.rand((rank, n), generator=gen, dtype=power.dtype).to(power.device) + 0.1
    H = H * (power.mean() / (W @ H).mean())
    W, H = _normalise(W, H)
    for _ in range(iterations):
        W = _update_w(power, W, H)
        W, H = _normalise(W, H)
        H = _update_h(power, W, H)
        if costs is not None:
            costs.append(float(is_divergence(power, (W @ H).clamp_min(TINY))))
    return W


def semi_supervised_nmf(power: torch.Tensor, speech_dictionary: torch.Tensor,
                        noise_rank: int = 8, iterations: int = 100, seed: int = 0,
                        costs: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``P ~ W_s H_s + W_n H_n`` with the speech dictionary ``W_s`` fixed (IS-NMF).

    ``H_s``, ``W_n`` and ``H_n`` are learned on the noisy spectrogram itself with the
    exponent-1/2 multiplicative updates (the IS divergence never increases).

    Args:
        power: noisy power spectrogram ``(freq, time)``.
        speech_dictionary: ``W_s`` of shape ``(freq, speech_rank)``.
        noise_rank: number of noise atoms.
        iterations: update passes.
        seed: seed of the random initialisation.
        costs: optional list to which the IS divergence after each pass is appended.

    Returns:
        ``(speech_variance, noise_variance)``, each ``(freq, time)``: ``W_s H_s`` and
        ``W_n H_n``.

    Raises:
        TypeError: shapes that do not fit.

    References:
        Mysore & Smaragdis, "A non-negative approach to semi-supervised separation of speech
        from noise with the use of temporal dynamics", ICASSP 2011; Leglaive, Girin, Horaud,
        MLSP 2018 (the NMF baseline).
    """
    if power.ndim != 2 or speech_dictionary.ndim != 2 or \
            speech_dictionary.shape[0] != power.shape[0]:
        raise TypeError(f"expected power (freq, time) and dictionary (freq, rank) with the same "
                        f"freq, got {tuple(power.shape)} and {tuple(speech_dictionary.shape)}")
    power = power.clamp_min(TINY)
    f, t = power.shape
    ks = speech_dictionary.shape[1]
    gen = torch.Generator().manual_seed(seed)
    dt, dev = power.dtype, power.device
    Ws = speech_dictionary.to(device=dev, dtype=dt)
    Ws = Ws / Ws.sum(0).clamp_min(TINY)
    Wn = torch.rand((f, noise_rank), generator=gen, dtype=dt).to(dev) + 0.1
    H = torch.rand((ks + noise_rank, t), generator=gen, dtype=dt).to(dev) + 0.1
    Wn, H[ks:] = _normalise(Wn, H[ks:])
    W = torch.cat([Ws, Wn], dim=1)
    H = H * (power.mean() / (W @ H).mean())
    for _ in range(iterations):
        H = _update_h(power, W, H)
        # noise atoms only: W_s stays fixed
        Wn = _update_w(power, W, H)[:, ks:]
        Wn, Hn = _normalise(Wn, H[ks:])
        H = torch.cat([H[:ks], Hn])
        W = torch.cat([Ws, Wn], dim=1)
        if costs is not None:
            costs.append(float(is_divergence(power, (W @ H).clamp_min(TINY))))
    return Ws @ H[:ks], Wn @ H[ks:]


@dataclass
class SpeechDictionary:
    """A speech NMF dictionary and how it was made.

    Attributes:
        W: ``(freq, rank)`` float32, columns summing to one.
        stft_config: the analysis it was learned with (checked when used).
        metadata: facts about its training (data, frames, iterations, command).
    """

    W: torch.Tensor
    stft_config: STFTConfig = DEFAULT_STFT
    metadata: dict = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return int(self.W.shape[1])


def save_dictionary(dictionary: SpeechDictionary, path: str | os.PathLike) -> Path:
    """Write a dictionary as a self-describing ``.pt`` (format name, STFT config, metadata),
    to a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": DICTIONARY_FORMAT, "W": dictionary.W.detach().float().cpu(),
               "stft": dictionary.stft_config.to_dict(), "metadata": dictionary.metadata}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_dictionary(path: str | os.PathLike | None = None,
                    stft_config: STFTConfig | None = DEFAULT_STFT) -> SpeechDictionary:
    """Load a speech dictionary (default: the shipped one) with ``weights_only=True``.

    Args:
        path: a file written by :func:`save_dictionary`; ``None`` for the shipped one.
        stft_config: the analysis it will be used with; ``None`` skips the check.

    Raises:
        ValueError: missing file, not a dictionary file, or learned with another STFT.
    """
    path = Path(path) if path is not None else SHIPPED_DICTIONARY
    if not path.is_file():
        hint = (" (make it with recipes/nmf/train_dictionary.py)"
                if path == SHIPPED_DICTIONARY else "")
        raise ValueError(f"{path}: NMF speech dictionary not found{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- unpickling errors of several kinds
        raise ValueError(f"{path}: not a speech dictionary file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != DICTIONARY_FORMAT:
        raise ValueError(f"{path}: not a speech dictionary file (no {DICTIONARY_FORMAT!r} "
                         "format tag)")
    cfg = STFTConfig.from_dict(payload["stft"])
    if stft_config is not None and cfg != stft_config:
        raise ValueError(f"{path}: learned with {cfg}, but used with {stft_config}")
    W = payload["W"]
    if W.ndim != 2 or W.shape[0] != cfg.n_freq:
        raise ValueError(f"{path}: dictionary of shape {tuple(W.shape)}, expected "
                         f"({cfg.n_freq}, rank)")
    return SpeechDictionary(W, cfg, dict(payload.get("metadata") or {}))


@dataclass(frozen=True)
class NMFBaselineConfig:
    """Settings of :class:`NMFBaseline`.

    Attributes:
        noise_rank: atoms of the noise NMF learned on each noisy file.
        iterations: multiplicative-update passes.
        seed: seed of the random initialisation of the noise NMF.
    """

    noise_rank: int = 8
    iterations: int = 100
    seed: int = 0


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@register_baseline("nmf")
class NMFBaseline:
    """Semi-supervised NMF enhancement: fixed speech dictionary, noise NMF, Wiener filter.

    The input is peak-normalised, analysed with the toolkit's STFT (the dictionary's), its
    power ``P`` (freq, time) is fitted by :func:`semi_supervised_nmf`, and the speech STFT is
    estimated as ``W_s H_s / (W_s H_s + W_n H_n) * X``.

    Args:
        dictionary: a :class:`SpeechDictionary`, a path to one, or ``None`` (the shipped one).
        config: :class:`NMFBaselineConfig`.
        device: torch device of the computation.

    References:
        Mysore & Smaragdis, ICASSP 2011; Leglaive, Girin, Horaud, MLSP 2018.
    """

    def __init__(self, dictionary: SpeechDictionary | str | os.PathLike | None = None,
                 config: NMFBaselineConfig | None = None, device="cpu", **_ignored):
        self.dictionary_path = None
        if not isinstance(dictionary, SpeechDictionary):
            self.dictionary_path = Path(dictionary) if dictionary else SHIPPED_DICTIONARY
            dictionary = load_dictionary(self.dictionary_path, stft_config=None)
        self.dictionary = dictionary
        self.config = config or NMFBaselineConfig()
        self.device = device

    def settings(self) -> dict:
        path = self.dictionary_path
        return {"baseline": self.name, **asdict(self.config),
                "speech_rank": self.dictionary.rank,
                "dictionary": str(path) if path else "(in memory)",
                "dictionary_sha256": _file_digest(path) if path else None}

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance ``waveform`` ``(time,)``; returns float32 of the same shape.

        Raises:
            ValueError: ``sample_rate`` differs from the dictionary's, or the signal is
                shorter than one STFT frame.
        """
        cfg = self.dictionary.stft_config
        if sample_rate != cfg.sample_rate:
            raise ValueError(f"the NMF dictionary is for {cfg.sample_rate} Hz audio, got "
                             f"{sample_rate} Hz")
        x = check_waveform(waveform)
        peak = float(np.max(np.abs(x)))
        xt = torch.from_numpy(x.astype(np.float64) / peak).to(self.device)
        spec = stft(xt, cfg)
        power = spec.abs().square()
        c = self.config
        speech, noise = semi_supervised_nmf(power, self.dictionary.W.to(self.device),
                                            c.noise_rank, c.iterations, c.seed)
        gain = speech / (speech + noise).clamp_min(TINY)
        y = istft(gain * spec, x.size, cfg).cpu().numpy() * peak
        return y.astype(np.float32)
