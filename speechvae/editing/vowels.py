"""Labelled synthetic vowels for learning the source–filter subspaces (DESIGN §5, step 1).

Sadok et al. (2023) learn one latent subspace per factor (f0, F1, F2, F3) from short
synthetic vowels in which only that factor varies. They used the Soundgen synthesiser; here
the vowels come from Praat's KlattGrid (Weenink's implementation of the Klatt cascade
formant synthesiser, Klatt & Klatt 1990) through praat-parselmouth, so every label is exact:
it is the value the synthesiser was given.

* :func:`synthesize_vowel`: one steady vowel, given f0 and formant frequencies.
* :func:`make_factor_datasets`: the data sets ``D_f0, D_F1, D_F2, D_F3``; in each, one factor
  sweeps a range while the other factors stay at a fixed *setting* taken from measured vowels
  of men, women and children (several vowels each).
* :func:`vowel_table`: those measured vowels, from the Hillenbrand et al. (1995) tables when
  they are available, else from a built-in table of Peterson & Barney (1952) averages.

Needs ``pip install speechvae[editing]`` (praat-parselmouth).

References:
    Sadok, Leglaive, Girin, Alameda-Pineda, Séguier, "Learning and controlling the
    source-filter representation of speech with a variational autoencoder", Speech
    Communication 148, 2023.
    Klatt & Klatt, "Analysis, synthesis, and perception of voice quality variations among
    female and male talkers", JASA 87(2), 1990 (the KlattGrid source and filter model).
    Hillenbrand, Getty, Clark & Wheeler, "Acoustic characteristics of American English
    vowels", JASA 97(5), 1995.
    Peterson & Barney, "Control methods used in a study of the vowels", JASA 24(2), 1952.
"""
from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_RANGES",
    "FACTORS",
    "FactorDataset",
    "VowelSetting",
    "bandwidth_rule",
    "make_factor_datasets",
    "read_hillenbrand",
    "synthesize_vowel",
    "vowel_table",
]

#: the labelled factors, in data-set order
FACTORS = ("f0", "F1", "F2", "F3")

#: default sweep of each factor in Hz. f0 reaches beyond 100–300 Hz (DESIGN §5) so that the
#: regression is not extrapolated at the ends of the edit range; F2 starts at 700 Hz so that
#: back vowels are covered.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "f0": (85.0, 320.0),
    "F1": (200.0, 1000.0),
    "F2": (700.0, 2800.0),
    "F3": (1800.0, 3400.0),
}

#: talker groups of the vowel tables: men, women, children
TALKERS = ("m", "w", "c")
#: default vowels: the corners of the vowel space (heed, had, hod, who'd), in both tables
DEFAULT_VOWELS = ("iy", "ae", "ah", "uw")

_VOICING_DB = 90.0  # KlattGrid voicing amplitude; the output is peak-normalised anyway


def _parselmouth():
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError:
        raise ImportError("vowel synthesis needs the 'praat-parselmouth' package: "
                          "pip install speechvae[editing] (or pip install "
                          "praat-parselmouth)") from None
    return parselmouth, call


def bandwidth_rule(frequency_hz):
    """Default formant bandwidth in Hz: ``50 + F / 20``.

    A linear rule of thumb chosen here (60 Hz at 200 Hz, 125 Hz at 1500 Hz, 220 Hz at
    3400 Hz): measured bandwidths grow with formant frequency (Hawks & Miller, JASA 97(2),
    1995, fit a polynomial that also depends on f0; that fit is not used here).

    Args:
        frequency_hz: a formant frequency or an array of them, in Hz.

    Returns:
        bandwidth(s) in Hz, same shape as the input (a float for a scalar).
    """
    b = 50.0 + np.asarray(frequency_hz, dtype=np.float64) / 20.0
    return float(b) if b.ndim == 0 else b


def synthesize_vowel(f0: float, formants: Sequence[float],
                     bandwidths: Sequence[float] | None = None, duration: float = 0.5,
                     sample_rate: int = 16000, *, peak: float = 0.5,
                     spectral_tilt_db: float = 6.0, flutter: float = 0.0,
                     higher_formant_spacing: float | None = 1000.0,
                     fade_s: float = 0.01) -> np.ndarray:
    """Synthesise one steady vowel with Praat's KlattGrid (cascade formant filter).

    The source is KlattGrid's glottal flow derivative (the "powers in tiers" flow with its
    default exponents 3 and 4 and open phase 0.7, a Rosenberg-like pulse), with a spectral
    tilt of ``spectral_tilt_db`` at 3 kHz. f0 and the formants are constant over the whole
    vowel, so the f0 and formant labels are exact (unless ``flutter`` is set). Formants
    above the given ones are added every ``higher_formant_spacing`` Hz up to 0.45 times the
    sample rate (as Praat's "Create KlattGrid from vowel" does), which gives a natural
    high-frequency spectrum without changing F1–F3.

    Args:
        f0: fundamental frequency in Hz, in (0, sample_rate / 4].
        formants: formant frequencies F1, F2, ... in Hz, strictly increasing, below
            ``sample_rate / 2``.
        bandwidths: formant bandwidths in Hz, one per formant; ``None`` uses
            :func:`bandwidth_rule`.
        duration: length in seconds.
        sample_rate: output rate in Hz (the synthesiser runs at this rate; no resampling).
        peak: peak absolute value of the output.
        spectral_tilt_db: extra attenuation of the source at 3 kHz in dB (Klatt's TL);
            0 disables it.
        flutter: KlattGrid flutter in [0, 1], a slow quasi-random f0 wobble (Klatt's FL;
            0.5 moves a 150 Hz f0 by about +-3 %). Off by default so that labels are exact.
        higher_formant_spacing: spacing in Hz of the formants added above the given ones;
            ``None`` adds none.
        fade_s: raised-cosine fade-in and fade-out in seconds (no clicks at the ends).

    Returns:
        float32 waveform of shape ``(round(duration * sample_rate),)``, peak ``peak``.

    Raises:
        ValueError: non-positive or out-of-range f0, formants not increasing or above the
            Nyquist frequency, a bandwidth count that differs from the formant count, or a
            non-positive duration.
        ImportError: praat-parselmouth is missing.

    References:
        Klatt & Klatt, JASA 87(2), 1990; Praat manual, "KlattGrid" (Weenink 2009).
    """
    formants = [float(f) for f in formants]
    nyquist = sample_rate / 2
    if not (f0 > 0 and f0 <= sample_rate / 4 and math.isfinite(f0)):
        raise ValueError(f"f0 must be in (0, {sample_rate / 4:g}] Hz, got {f0}")
    if not formants:
        raise ValueError("give at least one formant frequency")
    if any(not (0 < f < nyquist) for f in formants):
        raise ValueError(f"formants must lie in (0, {nyquist:g}) Hz, got {formants}")
    if any(b <= a for a, b in itertools.pairwise(formants)):
        raise ValueError(f"formants must be strictly increasing, got {formants}")
    if bandwidths is None:
        bws = [bandwidth_rule(f) for f in formants]
    else:
        bws = [float(b) for b in bandwidths]
        if len(bws) != len(formants):
            raise ValueError(f"{len(formants)} formants but {len(bws)} bandwidths")
        if any(not b > 0 for b in bws):
            raise ValueError(f"bandwidths must be positive, got {bws}")
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if not 0 <= flutter <= 1:
        raise ValueError(f"flutter must be in [0, 1], got {flutter}")
    if higher_formant_spacing is not None and higher_formant_spacing > 0:
        f = formants[-1] + higher_formant_spacing
        while f < 0.45 * sample_rate:
            formants.append(f)
            bws.append(bandwidth_rule(f))
            f += higher_formant_spacing

    _, call = _parselmouth()
    n = round(duration * sample_rate)
    kg = call("Create KlattGrid", "vowel", 0.0, n / sample_rate, len(formants),
              0, 0, 0, 0, 0, 0)
    call(kg, "Add pitch point", 0.0, float(f0))
    call(kg, "Add voicing amplitude point", 0.0, _VOICING_DB)
    if spectral_tilt_db:
        call(kg, "Add spectral tilt point", 0.0, float(spectral_tilt_db))
    if flutter:
        call(kg, "Add flutter point", 0.0, float(flutter))
    for i, (f, b) in enumerate(zip(formants, bws), start=1):
        call(kg, "Add oral formant frequency point", i, 0.0, f)
        call(kg, "Add oral formant bandwidth point", i, 0.0, b)
    # Arguments of "To Sound (special)": time range (0, 0 = all), sampling frequency, scale
    # peak; phonation: voicing, flutter, double pulsing, collision phase, spectral tilt, flow
    # function, flow derivative, aspiration, breathiness; filter structure; the ranges of
    # oral, nasal, nasal-anti, tracheal, tracheal-anti, delta formants and delta bandwidths
    # (to < from switches a family off); frication formant range and bypass.
    snd = call(kg, "To Sound (special)", 0.0, 0.0, float(sample_rate), "yes",
               "yes", "yes" if flutter else "no", "no", "no",
               "yes" if spectral_tilt_db else "no", "Powers in tiers", "yes", "no", "no",
               "Cascade", 1, len(formants), 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, "no")
    x = np.asarray(snd.values[0], dtype=np.float64)
    x = x[:n] if x.size >= n else np.pad(x, (0, n - x.size))
    x -= x.mean()
    n_fade = min(round(fade_s * sample_rate), n // 2)
    if n_fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_fade) + 0.5) / n_fade)
        x[:n_fade] *= ramp
        x[n - n_fade:] *= ramp[::-1]
    top = np.max(np.abs(x))
    if top == 0:  # pragma: no cover -- KlattGrid always voices a positive f0
        raise RuntimeError("KlattGrid returned silence")
    return (peak * x / top).astype(np.float32)


# -- vowel tables ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VowelSetting:
    """Mean f0 and formants of one vowel of one talker group, in Hz.

    ``talker`` is ``"m"`` (men), ``"w"`` (women) or ``"c"`` (children); ``vowel`` uses the
    Hillenbrand codes (``iy`` heed, ``ih`` hid, ``ei`` hayed, ``eh`` head, ``ae`` had, ``ah``
    hod, ``aw`` hawed, ``oa`` hoed, ``oo`` hood, ``uw`` who'd, ``uh`` hud, ``er`` heard);
    ``source`` names the table.
    """

    talker: str
    vowel: str
    f0: float
    F1: float
    F2: float
    F3: float
    F4: float
    source: str

    def as_dict(self) -> dict:
        return {"talker": self.talker, "vowel": self.vowel, "f0": self.f0, "F1": self.F1,
                "F2": self.F2, "F3": self.F3, "F4": self.F4, "source": self.source}


# Peterson & Barney (1952), Table II: averages of f0, F1, F2, F3 (Hz) over 33 men, 28 women
# and 15 children (values as commonly reproduced from the paper). The paper has no F4; it is
# filled in as F3 + 1000 Hz (men), + 1100 Hz (women), + 1200 Hz (children), the spacings of
# Praat's "Create KlattGrid from vowel" advice (1000 to 1100 Hz for adults) widened for
# children's shorter vocal tracts.
_PETERSON_BARNEY = {
    "m": {"iy": (136, 270, 2290, 3010), "ih": (135, 390, 1990, 2550),
          "eh": (130, 530, 1840, 2480), "ae": (127, 660, 1720, 2410),
          "ah": (124, 730, 1090, 2440), "aw": (129, 570, 840, 2410),
          "oo": (137, 440, 1020, 2240), "uw": (141, 300, 870, 2240),
          "uh": (130, 640, 1190, 2390), "er": (133, 490, 1350, 1690)},
    "w": {"iy": (235, 310, 2790, 3310), "ih": (232, 430, 2480, 3070),
          "eh": (223, 610, 2330, 2990), "ae": (210, 860, 2050, 2850),
          "ah": (212, 850, 1220, 2810), "aw": (216, 590, 920, 2710),
          "oo": (232, 470, 1160, 2680), "uw": (231, 370, 950, 2670),
          "uh": (221, 760, 1400, 2780), "er": (218, 500, 1640, 1960)},
    "c": {"iy": (272, 370, 3200, 3730), "ih": (269, 530, 2730, 3600),
          "eh": (260, 690, 2610, 3570), "ae": (251, 1010, 2320, 3320),
          "ah": (256, 1030, 1370, 3170), "aw": (263, 680, 1060, 3180),
          "oo": (276, 560, 1410, 3310), "uw": (274, 430, 1170, 3260),
          "uh": (261, 850, 1590, 3360), "er": (261, 560, 1820, 2160)},
}
_F4_SPACING = {"m": 1000.0, "w": 1100.0, "c": 1200.0}

# one data line of vowdata.dat: file name (group letter, 2-digit talker, 2-letter vowel), then
# 15 integers (duration ms, f0, F1-F4 at steady state, F1-F3 at 20 %, 50 %, 80 %)
_HILLENBRAND_LINE = re.compile(r"^([mwbg])(\d\d)([a-z]{2})\s+((?:\d+\s+){14}\d+)\s*$")
_HILLENBRAND_ENV = "SPEECHVAE_HILLENBRAND"
_HILLENBRAND_REL = Path("shared") / "data" / "pitch" / "hillenbrand_tables" / "vowdata.dat"


def read_hillenbrand(path: str | os.PathLike) -> dict[tuple[str, str], VowelSetting]:
    """Mean steady-state f0 and F1–F4 per talker group and vowel from Hillenbrand's
    ``vowdata.dat``.

    File format (documented at the head of the file): a free-text header, then one line per
    token, ``<g><nn><vv>`` followed by 15 integers. ``g`` is the talker group (m man, w woman,
    b boy, g girl), ``nn`` the talker number, ``vv`` the vowel code. Columns: 2 duration (ms),
    3 f0, 4–7 F1–F4 at the steady-state point, 8–16 F1–F3 at 20 %, 50 % and 80 % of the
    vowel, all in Hz; 0 means "not measurable". Boys and girls are pooled as children ``c``
    (as the file's own ``vowdata.ds`` statistics do); zeros are left out of the means.

    Args:
        path: ``vowdata.dat``.

    Returns:
        ``{(talker, vowel): VowelSetting}`` with talker in ``m``, ``w``, ``c``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no data line found (not a Hillenbrand table).

    References:
        Hillenbrand, Getty, Clark & Wheeler, JASA 97(5), 1995.
    """
    path = Path(path)
    tokens: dict[tuple[str, str], list[list[float]]] = {}
    with open(path) as fh:
        for line in fh:
            m = _HILLENBRAND_LINE.match(line)
            if m is None:
                continue
            talker = "c" if m.group(1) in "bg" else m.group(1)
            values = [float(v) for v in m.group(4).split()]
            tokens.setdefault((talker, m.group(3)), []).append(values[1:6])
    if not tokens:
        raise ValueError(f"{path}: no Hillenbrand data line found")
    out = {}
    for (talker, vowel), rows in sorted(tokens.items()):
        a = np.array(rows)
        a[a == 0] = np.nan
        f0, f1, f2, f3, f4 = (float(v) for v in np.nanmean(a, axis=0))
        out[(talker, vowel)] = VowelSetting(talker, vowel, f0, f1, f2, f3, f4,
                                            "hillenbrand1995")
    return out


def _builtin_table() -> dict[tuple[str, str], VowelSetting]:
    return {(t, v): VowelSetting(t, v, *map(float, vals), float(vals[3]) + _F4_SPACING[t],
                                 "peterson-barney1952")
            for t, table in _PETERSON_BARNEY.items() for v, vals in table.items()}


def _find_hillenbrand() -> Path | None:
    env = os.environ.get(_HILLENBRAND_ENV)
    if env:
        return Path(env)
    # a source checkout next to the project's shared corpus (../shared/data/...)
    for parent in Path(__file__).resolve().parents[2:4]:
        candidate = parent / _HILLENBRAND_REL
        if candidate.is_file():
            return candidate
    return None


def vowel_table(source: str | os.PathLike = "auto") -> dict[tuple[str, str], VowelSetting]:
    """Measured vowels that fix the non-varied factors of :func:`make_factor_datasets`.

    Args:
        source: ``"auto"`` (Hillenbrand's ``vowdata.dat`` if it can be found, else the
            built-in table), ``"builtin"`` (Peterson & Barney 1952 averages, always
            available) or a path to ``vowdata.dat``. ``"auto"`` looks at the path in the
            ``SPEECHVAE_HILLENBRAND`` environment variable, then at
            ``shared/data/pitch/hillenbrand_tables/vowdata.dat`` beside the source checkout.

    Returns:
        ``{(talker, vowel): VowelSetting}``; ``setting.source`` says which table it is.

    Raises:
        FileNotFoundError: an explicit path (or the environment variable) names no file.
    """
    if source == "builtin":
        return _builtin_table()
    if source == "auto":
        found = _find_hillenbrand()
        return read_hillenbrand(found) if found is not None else _builtin_table()
    return read_hillenbrand(source)


# -- factor data sets ------------------------------------------------------------------------

@dataclass
class FactorDataset:
    """Synthetic vowels in which only ``factor`` varies.

    Attributes:
        factor: ``"f0"``, ``"F1"``, ``"F2"`` or ``"F3"``.
        waveforms: float32 arrays of shape ``(time,)``, all of the same length.
        labels: the varied factor of each file in Hz, shape ``(n,)``, exact (the value the
            synthesiser was given).
        settings: per file, the fixed other factors of its sub-series: the values in Hz of
            ``f0``, ``F1``, ``F2``, ``F3``, ``F4`` *except* ``factor``, and ``talker``,
            ``vowel``, ``setting`` (index of the sub-series) and ``source`` (the vowel
            table). Files of one sub-series have equal dicts, so a dict identifies its
            series; the synthesis parameters of file ``i`` are
            ``{**settings[i], factor: labels[i]}``.
        sample_rate: in Hz.
    """

    factor: str
    waveforms: list[np.ndarray]
    labels: np.ndarray
    settings: list[dict]
    sample_rate: int = 16000
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.waveforms)

    def stacked(self) -> np.ndarray:
        """All waveforms as one float32 array of shape ``(n, time)``."""
        return np.stack(self.waveforms).astype(np.float32, copy=False)


def _valid_range(factor: str, s: Mapping[str, float], lo: float, hi: float,
                 gap: float) -> tuple[float, float]:
    """The part of ``[lo, hi]`` that keeps F1 < F2 < F3 < F4 with ``gap`` Hz between
    neighbours when ``factor`` replaces its value in setting ``s``."""
    if factor == "F1":
        hi = min(hi, s["F2"] - gap)
    elif factor == "F2":
        lo, hi = max(lo, s["F1"] + gap), min(hi, s["F3"] - gap)
    elif factor == "F3":
        lo, hi = max(lo, s["F2"] + gap), min(hi, s["F4"] - gap)
    return lo, hi


def _split_counts(widths: np.ndarray, total: int) -> np.ndarray:
    """``total`` split in proportion to ``widths`` (largest remainder), at least 2 each."""
    share = widths / widths.sum() * total
    counts = np.maximum(np.floor(share).astype(int), 2)
    order = np.argsort(-(share - np.floor(share)))
    i = 0
    while counts.sum() < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while counts.sum() > total and counts.max() > 2:
        counts[np.argmax(counts)] -= 1
    return counts


def make_factor_datasets(n_per_factor: int = 200, sample_rate: int = 16000, seed: int = 0,
                         duration: float = 0.5, *,
                         factors: Sequence[str] = FACTORS,
                         talkers: Sequence[str] = TALKERS,
                         vowels: Sequence[str] = DEFAULT_VOWELS,
                         ranges: Mapping[str, tuple[float, float]] | None = None,
                         table: str | os.PathLike = "auto", min_gap_hz: float = 200.0,
                         min_coverage: float = 0.2,
                         **synth_kwargs) -> dict[str, FactorDataset]:
    """Build the labelled data sets ``D_f0, D_F1, D_F2, D_F3`` (Sadok et al. 2023, §4).

    For each factor, every fixed setting (one talker group and vowel from
    :func:`vowel_table`) gives a sub-series in which only that factor sweeps its range; all
    other parameters keep the setting's values. A setting covers only the part of the range
    that keeps ``F1 < F2 < F3 < F4`` at least ``min_gap_hz`` apart (an F1 sweep stops below
    the setting's F2, and so on); a setting whose valid part is shorter than
    ``min_coverage`` of the range is left out for that factor. Files are shared out among
    the sub-series in proportion to their valid widths, and the labels are stratified: each
    sub-series splits its valid range into equal cells and draws one label (``seed``) in
    each, in a part of the cell that differs between sub-series, so that the sub-series
    together cover the range evenly, up to its ends, without repeating values.

    Args:
        n_per_factor: files per factor.
        sample_rate: in Hz.
        seed: seed of the label draws; the same seed gives the same data sets.
        duration: length of each vowel in seconds.
        factors: which data sets to build.
        talkers: talker groups of the settings (``m``, ``w``, ``c``).
        vowels: vowel codes of the settings (a code absent from the table is an error).
        ranges: per factor ``(low, high)`` in Hz; defaults to :data:`DEFAULT_RANGES`.
        table: the vowel table, as ``source`` of :func:`vowel_table`.
        min_gap_hz: smallest distance between neighbouring formants.
        min_coverage: smallest valid share of a factor's range for a setting to be used.
        **synth_kwargs: passed on to :func:`synthesize_vowel` (e.g. ``spectral_tilt_db``).

    Returns:
        ``{factor: FactorDataset}`` in the order of ``factors``; each data set holds
        ``n_per_factor`` files, sorted by setting and then by label. ``meta`` records the
        table source, the ranges and the per-setting valid ranges.

    Raises:
        ValueError: an unknown factor, talker or vowel, a range with ``low >= high``, or
            ``n_per_factor`` too small to give every usable setting two files.
        ImportError: praat-parselmouth is missing.
    """
    ranges = {**DEFAULT_RANGES, **(ranges or {})}
    bad = [f for f in factors if f not in FACTORS]
    if bad:
        raise ValueError(f"unknown factor(s) {bad}; choose from {FACTORS}")
    for f in factors:
        if not ranges[f][0] < ranges[f][1]:
            raise ValueError(f"range of {f} must have low < high, got {ranges[f]}")
    entries = vowel_table(table)
    missing = [(t, v) for t in talkers for v in vowels if (t, v) not in entries]
    if missing:
        raise ValueError(f"no vowel table entry for {missing}; the table has talkers "
                         f"{sorted({t for t, _ in entries})} and vowels "
                         f"{sorted({v for _, v in entries})}")
    base = [entries[(t, v)].as_dict() for t in talkers for v in vowels]
    rng = np.random.default_rng(seed)
    out = {}
    for factor in factors:
        lo, hi = ranges[factor]
        spans = [_valid_range(factor, s, lo, hi, min_gap_hz) for s in base]
        usable = [i for i, (a, b) in enumerate(spans) if b - a >= min_coverage * (hi - lo)]
        if not usable:
            raise ValueError(f"no setting leaves {min_coverage:.0%} of the {factor} range "
                             f"{ranges[factor]} valid")
        if n_per_factor < 2 * len(usable):
            raise ValueError(f"n_per_factor={n_per_factor} is too small for {len(usable)} "
                             f"settings (at least 2 files each)")
        counts = _split_counts(np.array([spans[i][1] - spans[i][0] for i in usable]),
                               n_per_factor)
        waveforms, labels, settings = [], [], []
        # sub-series j draws in the (perm[j] + u)/S-th part of each of its n cells: settings
        # with the same valid range then interleave, so that together they are stratified
        # over n * S cells and reach the ends of the range
        perm = rng.permutation(len(usable))
        for j, (i, n) in enumerate(zip(usable, counts)):
            a, b = spans[i]
            u = (perm[j] + rng.uniform(size=n)) / len(usable)
            values = a + (np.arange(n) + u) * (b - a) / n
            fixed = {k: v for k, v in base[i].items() if k != factor}
            fixed["setting"] = i
            for y in values:
                p = {**base[i], factor: float(y)}
                waveforms.append(synthesize_vowel(
                    p["f0"], [p["F1"], p["F2"], p["F3"], p["F4"]],
                    duration=duration, sample_rate=sample_rate, **synth_kwargs))
                labels.append(float(y))
                settings.append(dict(fixed))
        out[factor] = FactorDataset(
            factor, waveforms, np.array(labels), settings, sample_rate,
            meta={"table": base[0]["source"], "range_hz": (lo, hi), "seed": seed,
                  "valid_ranges_hz": {f"{base[i]['talker']}-{base[i]['vowel']}": spans[i]
                                      for i in usable},
                  "synth_kwargs": dict(synth_kwargs)})
    return out
