"""Labelled synthetic vowels: exact labels, measured f0 and formants, the factor data sets."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("parselmouth", reason="praat-parselmouth not installed (speechvae[editing])")

from speechvae import metrics
from speechvae.editing import vowels as V

SR = 16000
HILLENBRAND = (Path(__file__).resolve().parents[2] / "shared" / "data" / "pitch"
               / "hillenbrand_tables" / "vowdata.dat")
needs_hillenbrand = pytest.mark.skipif(
    not HILLENBRAND.is_file(), reason=f"Hillenbrand tables not found at {HILLENBRAND} "
    "(../shared/data)")


# -- synthesize_vowel ------------------------------------------------------------------------

def test_vowel_shape_dtype_peak_and_determinism():
    x = V.synthesize_vowel(150.0, [500, 1500, 2500, 3500], duration=0.3)
    assert x.shape == (round(0.3 * SR),) and x.dtype == np.float32
    assert np.max(np.abs(x)) == pytest.approx(0.5, rel=1e-5)
    assert abs(x.mean()) < 1e-2
    assert np.array_equal(x, V.synthesize_vowel(150.0, [500, 1500, 2500, 3500], duration=0.3))
    y = V.synthesize_vowel(150.0, [500, 1500], None, 0.25, 8000, peak=0.8,
                           higher_formant_spacing=None)
    assert y.shape == (2000,) and np.max(np.abs(y)) == pytest.approx(0.8, rel=1e-5)


@pytest.mark.parametrize("f0", [90.0, 150.0, 220.0, 300.0])
def test_vowel_f0_is_the_label(f0):
    x = V.synthesize_vowel(f0, [600, 1700, 2600, 3600])
    mid = slice(5, -5)  # away from the fades
    for method in ("praat", "pyin"):
        _, track = metrics.f0_track(x, SR, method)
        err = metrics.f0_error(track[mid], f0)
        assert err["voiced_share"] == 1.0, method
        assert err["median_pct"] < 1.0, (method, err)


@pytest.mark.parametrize("f0, formants", [
    (120.0, [730, 1090, 2440, 3400]),   # /a/, man (Peterson & Barney averages)
    (130.0, [270, 2290, 3010, 3600]),   # /i/, man
    (210.0, [850, 1220, 2810, 3900]),   # /a/, woman
])
def test_vowel_formants_measured_within_10_percent(f0, formants):
    x = V.synthesize_vowel(f0, formants)
    _, tracks = metrics.formant_tracks(x, SR, max_formant=5000.0 if f0 < 180 else 5500.0)
    measured = np.nanmedian(tracks[:, 5:-5], axis=1)
    np.testing.assert_allclose(measured, formants[:3], rtol=0.10)


def test_flutter_moves_f0_and_is_off_by_default():
    steady = V.synthesize_vowel(150.0, [500, 1500, 2500], duration=1.0)
    wobbly = V.synthesize_vowel(150.0, [500, 1500, 2500], duration=1.0, flutter=1.0)
    _, a = metrics.f0_track(steady, SR, "praat")
    _, b = metrics.f0_track(wobbly, SR, "praat")
    assert np.nanmax(a) - np.nanmin(a) < 0.5
    assert np.nanmax(b) - np.nanmin(b) > 3.0


@pytest.mark.parametrize("kwargs, match", [
    ({"f0": 0.0, "formants": [500, 1500]}, "f0"),
    ({"f0": 150.0, "formants": [1500, 500]}, "increasing"),
    ({"f0": 150.0, "formants": [500, 9000]}, "formants must lie"),
    ({"f0": 150.0, "formants": []}, "at least one"),
    ({"f0": 150.0, "formants": [500, 1500], "bandwidths": [80]}, "bandwidths"),
    ({"f0": 150.0, "formants": [500, 1500], "bandwidths": [80, -1]}, "positive"),
    ({"f0": 150.0, "formants": [500, 1500], "duration": 0.0}, "duration"),
    ({"f0": 150.0, "formants": [500, 1500], "flutter": 2.0}, "flutter"),
])
def test_vowel_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        V.synthesize_vowel(**kwargs)


def test_bandwidth_rule():
    assert V.bandwidth_rule(1000.0) == pytest.approx(100.0)
    np.testing.assert_allclose(V.bandwidth_rule(np.array([200.0, 3400.0])), [60.0, 220.0])


# -- vowel tables ----------------------------------------------------------------------------

def test_builtin_table_is_peterson_barney():
    table = V.vowel_table("builtin")
    s = table[("m", "iy")]
    assert (s.f0, s.F1, s.F2, s.F3) == (136.0, 270.0, 2290.0, 3010.0)
    assert s.F4 == 4010.0 and s.source == "peterson-barney1952"
    assert {t for t, _ in table} == {"m", "w", "c"}
    for s in table.values():
        assert s.F1 < s.F2 < s.F3 < s.F4


def test_read_hillenbrand_format(tmp_path):
    """Header lines are skipped, boys and girls pool into children, zeros are not measured."""
    path = tmp_path / "vowdata.dat"
    path.write_text(
        "(c) 1995 James Hillenbrand\ncol1:  filename\n"
        "  1    2   3    4    5    6    7    8    9   10    11  12   13    14  15   16\n"
        "m01iy 243 130  340 2300 3000 3600  340 2300 3000  340 2300 3000  340 2300 3000\n"
        "m02iy 250 140  350 2350 3050    0  350 2350 3050  350 2350 3050  350 2350 3050\n"
        "b01uw 260 250  500 1400 3000 4200  500 1400 3000  500 1400 3000  500 1400 3000\n"
        "g02uw 260 260  480 1400 3000 4400  480 1400 3000  480 1400 3000  480 1400 3000\n")
    table = V.read_hillenbrand(path)
    assert set(table) == {("m", "iy"), ("c", "uw")}
    m = table[("m", "iy")]
    assert (m.f0, m.F1, m.F2, m.F3, m.F4) == (135.0, 345.0, 2325.0, 3025.0, 3600.0)
    assert table[("c", "uw")].f0 == 255.0 and table[("c", "uw")].F4 == 4300.0
    assert V.vowel_table(path) == table
    bad = tmp_path / "other.txt"
    bad.write_text("not a table\n")
    with pytest.raises(ValueError, match="no Hillenbrand data line"):
        V.read_hillenbrand(bad)


@needs_hillenbrand
@pytest.mark.corpus
def test_hillenbrand_means_match_its_own_statistics():
    """Group means equal those of vowdata.ds (e.g. iy, men: f0 138.622, F1 342.689)."""
    table = V.read_hillenbrand(HILLENBRAND)
    assert len(table) == 36
    s = table[("m", "iy")]
    assert s.f0 == pytest.approx(138.622, abs=1e-3)
    assert s.F1 == pytest.approx(342.689, abs=1e-3)
    assert s.F2 == pytest.approx(2322.778, abs=1e-3)
    assert s.F3 == pytest.approx(3000.651, abs=1e-3)   # 43 of 45 measured (zeros left out)


# -- factor data sets ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_sets():
    return V.make_factor_datasets(48, duration=0.2, table="builtin", seed=3)


def test_factor_datasets_structure_and_exact_labels(small_sets):
    assert list(small_sets) == list(V.FACTORS)
    for factor, d in small_sets.items():
        assert d.factor == factor and len(d) == 48 and d.labels.shape == (48,)
        assert d.sample_rate == SR and d.stacked().shape == (48, round(0.2 * SR))
        lo, hi = V.DEFAULT_RANGES[factor]
        assert lo <= d.labels.min() and d.labels.max() <= hi
        # the sub-series together cover the range
        assert d.labels.min() < lo + 0.1 * (hi - lo) and d.labels.max() > hi - 0.1 * (hi - lo)
        for y, s in zip(d.labels, d.settings):
            assert factor not in s  # settings hold the fixed factors only
            p = {**s, factor: y}
            assert p["F1"] + 199 < p["F2"] and p["F2"] + 199 < p["F3"] and p["F3"] + 199 < p["F4"]
            assert s["source"] == "peterson-barney1952"


def test_settings_identify_the_sub_series(small_sets):
    """Files of a sub-series share one settings dict (a dict is the series key), and
    different sub-series have different fixed values."""
    for factor, d in small_sets.items():
        series = {}
        for s in d.settings:
            series.setdefault(s["setting"], []).append(s)
        assert len(series) > 1
        assert all(all(s == v[0] for s in v) for v in series.values()), factor
        fixed = {tuple(v[0][k] for k in ("f0", "F1", "F2", "F3", "F4") if k != factor)
                 for v in series.values()}
        assert len(fixed) == len(series)


def test_factor_dataset_f0_labels_are_measured(small_sets):
    d = small_sets["f0"]
    for i in (0, len(d) // 2, len(d) - 1):
        _, track = metrics.f0_track(d.waveforms[i], SR, "praat")
        assert metrics.f0_error(track, d.labels[i])["median_pct"] < 1.0


def test_factor_datasets_seeded():
    a = V.make_factor_datasets(24, duration=0.1, table="builtin", factors=("F2",), seed=1)
    b = V.make_factor_datasets(24, duration=0.1, table="builtin", factors=("F2",), seed=1)
    c = V.make_factor_datasets(24, duration=0.1, table="builtin", factors=("F2",), seed=2)
    assert list(a) == ["F2"]
    assert np.array_equal(a["F2"].labels, b["F2"].labels)
    assert all(np.array_equal(x, y) for x, y in zip(a["F2"].waveforms, b["F2"].waveforms))
    assert not np.array_equal(a["F2"].labels, c["F2"].labels)


@pytest.mark.parametrize("kwargs, match", [
    ({"factors": ("F4",)}, "unknown factor"),
    ({"vowels": ("zz",)}, "no vowel table entry"),
    ({"ranges": {"F1": (900.0, 300.0)}}, "low < high"),
    ({"n_per_factor": 5}, "too small"),
])
def test_factor_datasets_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        V.make_factor_datasets(**{"table": "builtin", "duration": 0.1, **kwargs})


def test_factor_dataset_formant_labels_are_measured(small_sets):
    d = small_sets["F2"]
    men = [i for i, s in enumerate(d.settings) if s["talker"] == "m"]
    for i in men[::3]:
        _, tracks = metrics.formant_tracks(d.waveforms[i], SR, max_formant=5000.0)
        assert np.nanmedian(tracks[1, 3:-3]) == pytest.approx(d.labels[i], rel=0.10)
