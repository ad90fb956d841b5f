"""Side-by-side evaluation of enhancement methods on a noisy/clean set, resumable.

A *set* is a folder with ``list.csv`` (columns ``name, clean, noisy, snr_db`` and optionally
``speaker, gender, noise, noise_type``; paths relative to the folder), as written by
``speechvae mix`` or the corpus' ``make_mixtures.py``. A *method* is any callable
``method(waveform, sample_rate) -> waveform`` with ``name`` and ``settings()``: the
baselines of :mod:`speechvae.evaluation.baselines`, or a :class:`PriorMethod` (a speech
prior with an inference algorithm, named ``<prior>-<algorithm>`` such as ``vae-vem``).

:func:`evaluate` runs every method on every noisy file, writes the outputs to
``OUTPUT_DIR/<method>/<name>.wav`` (16 kHz, 16-bit), scores each written file against the
clean reference with :func:`speechvae.metrics.score`, and appends one row per (file,
method) to ``OUTPUT_DIR/results.csv`` as soon as it is done. A second call skips the rows
already there, so an interrupted evaluation resumes where it stopped and ends with the same
tables. The report (tables, figures, HTML page) is made by :mod:`.report` from that file.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AudioWarning, load_audio, resample, write_audio
from ..metrics import METRICS, score
from .baselines import available_baselines, get_baseline
from .mixing import noise_type_of

__all__ = [
    "RESULT_COLUMNS",
    "SAMPLE_RATE",
    "EvaluationResult",
    "Pair",
    "PriorMethod",
    "available_algorithms",
    "build_methods",
    "evaluate",
    "read_results",
    "read_set",
]

SAMPLE_RATE = 16000
#: columns of results.csv, one row per (file, method)
RESULT_COLUMNS = ("name", "method", "snr_db", "noise_type", "duration_s", "seconds",
                  *METRICS, "threads", "output")
#: columns a row may lack (files of earlier versions had no ``threads``: unknown)
OPTIONAL_COLUMNS = ("output", "threads")
RESULTS_FILE = "results.csv"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Pair:
    """One noisy/clean pair of a set.

    Attributes:
        index: position in list.csv (the order of every table and listing).
        name: unique name (output files are ``<method>/<name>.wav``).
        clean, noisy: absolute paths.
        snr_db: input SNR in dB (NaN when list.csv has none).
        noise_type: noise category, ``"unknown"`` when not known.
        speaker, gender: as in list.csv (may be empty).
    """

    index: int
    name: str
    clean: Path
    noisy: Path
    snr_db: float
    noise_type: str = "unknown"
    speaker: str = ""
    gender: str = ""


def _noise_types(path: str | os.PathLike) -> dict[str, str]:
    """name -> noise type from a CSV with ``name`` and ``noise_type`` or ``noise`` columns."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "name" not in rows[0] or not ({"noise_type", "noise"} & set(rows[0])):
        raise ValueError(f"{path}: expected columns name and noise_type (or noise, a path "
                         "whose folder names the noise type)")
    return {r["name"]: r.get("noise_type") or noise_type_of(r.get("noise")) for r in rows}


def read_set(set_dir: str | os.PathLike, noise_info: str | os.PathLike | None = None
             ) -> list[Pair]:
    """The pairs of a set folder, in list.csv order.

    The noise type of a pair is, in order: its entry in ``noise_info`` (a CSV with ``name``
    and ``noise_type`` or ``noise`` columns, e.g. the corpus' ``devset.csv``), list.csv's
    ``noise_type`` column, the folder of list.csv's ``noise`` path (``noise/home/x.flac`` ->
    ``home``), else ``"unknown"``.

    Raises:
        ValueError: no list.csv, missing columns, repeated names, a bad SNR value.
        FileNotFoundError: a listed clean or noisy file is missing.
    """
    set_dir = Path(set_dir)
    list_csv = set_dir / "list.csv"
    if not list_csv.is_file():
        raise ValueError(f"{set_dir}: no list.csv (make a set with 'speechvae mix')")
    with open(list_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"name", "clean", "noisy"}
    if not rows:
        raise ValueError(f"{list_csv}: no pairs listed")
    if not need <= set(rows[0]):
        raise ValueError(f"{list_csv}: expected columns name, clean, noisy (and snr_db)")
    types = _noise_types(noise_info) if noise_info is not None else {}
    pairs, seen = [], set()
    for i, r in enumerate(rows):
        name = r["name"]
        if name in seen:
            raise ValueError(f"{list_csv}: name {name!r} is listed twice")
        seen.add(name)
        try:
            snr = float(r["snr_db"]) if r.get("snr_db") not in (None, "") else math.nan
        except ValueError:
            raise ValueError(f"{list_csv}, line {i + 2}: bad snr_db {r['snr_db']!r}") from None
        noise_type = (types.get(name) or r.get("noise_type")
                      or noise_type_of(r.get("noise")) or "unknown")
        clean, noisy = (set_dir / r["clean"]).resolve(), (set_dir / r["noisy"]).resolve()
        for p in (clean, noisy):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: listed in {list_csv} but missing")
        pairs.append(Pair(i, name, clean, noisy, snr, noise_type, r.get("speaker") or "",
                          r.get("gender") or ""))
    return pairs


# -- methods ---------------------------------------------------------------------------------

def available_algorithms() -> list[str]:
    """Inference algorithms that :func:`speechvae.enhance` can run.

    Taken from the enhancement package's algorithm registry when it has one
    (``available_algorithms()``); otherwise ``["vem"]``.
    """
    from .. import enhancement

    fn = getattr(enhancement, "available_algorithms", None)
    if callable(fn):
        return sorted(fn())
    return ["vem"]


def _enhance_takes_algorithm() -> bool:
    from .. import enhancement

    return "algorithm" in inspect.signature(enhancement.enhance).parameters


def _algorithm_config(algorithm: str, overrides: Mapping):
    """The settings of ``algorithm`` (its registered config class, or :class:`VEMConfig`
    without a registry) with the given fields replaced; fields the algorithm does not have
    are left out.

    Raises:
        KeyError: an algorithm the registry does not know.
    """
    from .. import enhancement

    getter = getattr(enhancement, "get_algorithm", None)
    if callable(getter):
        config = getter(algorithm).default_config()
    elif algorithm == "vem":
        config = enhancement.VEMConfig()
    else:
        raise KeyError(f"unknown algorithm {algorithm!r}; available: vem")
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in overrides.items()
                                          if v is not None and k in names})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class PriorMethod:
    """A speech prior with an inference algorithm, run through :func:`speechvae.enhance`.

    Args:
        name: label of the method (``<prior>-<algorithm>``, e.g. ``vae-vem``).
        prior: shipped prior name or checkpoint path.
        algorithm: inference algorithm (see :func:`available_algorithms`).
        overrides: algorithm settings to change (e.g. ``{"iterations": 20}``); fields the
            algorithm does not have are ignored.
        seed: seed of the inference; the same for every file.
        device: torch device.
    """

    def __init__(self, name: str, prior: str | os.PathLike, algorithm: str = "vem",
                 overrides: Mapping | None = None, seed: int = 0, device="cpu"):
        from ..pretrained import pretrained_path, shipped_priors
        from ..priors import load_prior

        self.name = name
        self.algorithm = algorithm
        self.seed = seed
        self.device = device
        prior = str(prior)
        shipped = prior in shipped_priors()
        self.prior_path = pretrained_path(prior) if shipped else Path(prior).resolve()
        # the label goes into run.json: a name, or an absolute path (same from any folder)
        self.prior_label = prior if shipped else str(self.prior_path)
        self.prior = load_prior(prior, device=device)
        self.config = _algorithm_config(algorithm, overrides or {})
        self._pass_algorithm = _enhance_takes_algorithm()
        if algorithm != "vem" and not self._pass_algorithm:
            raise ValueError(f"{name}: speechvae.enhance runs VEM only in this version")

    def settings(self) -> dict:
        cfg = dataclasses.asdict(self.config)
        return {"prior": self.prior_label, "prior_sha256": _sha256(self.prior_path),
                "algorithm": self.algorithm, "config": cfg, "seed": self.seed}

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance ``waveform`` ``(time,)``; returns float32 ``(time,)`` at ``sample_rate``."""
        from ..enhancement import enhance

        kwargs = {"algorithm": self.algorithm} if self._pass_algorithm else {}
        with warnings.catch_warnings():  # resampling both ways is expected here
            warnings.simplefilter("ignore", AudioWarning)
            out = enhance(waveform, sample_rate, prior=self.prior, config=self.config,
                          seed=self.seed, device=self.device, **kwargs)
            y = out.waveform
            if out.sample_rate != sample_rate:
                y = resample(y, out.sample_rate, sample_rate)
        return np.asarray(y, dtype=np.float32)


def _split_method(name: str, algorithms: Sequence[str]) -> tuple[str, str] | None:
    for alg in sorted(algorithms, key=len, reverse=True):
        if name.endswith("-" + alg) and len(name) > len(alg) + 1:
            return name[: -len(alg) - 1], alg
    return None


def build_methods(methods: Sequence[str] = (), baselines: Sequence[str] = (),
                  priors: Mapping[str, str] | None = None, overrides: Mapping | None = None,
                  seed: int = 0, device="cpu", nmf_dictionary: str | os.PathLike | None = None
                  ) -> list:
    """Build methods from their names, baselines first, each name once.

    Args:
        methods: ``<prior>-<algorithm>`` names (``vae-vem``); a baseline name is accepted
            here too. ``<prior>`` is a shipped prior or a key of ``priors``.
        baselines: names of :func:`~speechvae.evaluation.baselines.available_baselines`.
        priors: prior name -> checkpoint path (takes precedence over the shipped priors).
        overrides: algorithm settings for the prior methods (``iterations``, ``nmf_rank``).
        seed: seed of every method.
        device: torch device of the prior methods and the NMF baseline.
        nmf_dictionary: speech dictionary of the ``nmf`` baseline (default: shipped).

    Raises:
        KeyError: an unknown baseline, algorithm or prior (the message lists the known ones).
    """
    from ..pretrained import shipped_priors

    priors = dict(priors or {})
    algorithms = available_algorithms()
    names = list(dict.fromkeys([*baselines, *methods]))
    out = []
    for name in names:
        if name in available_baselines():
            kwargs = {"device": device}
            if name == "nmf" and nmf_dictionary is not None:
                kwargs["dictionary"] = nmf_dictionary
            out.append(get_baseline(name, **kwargs))
            continue
        if name in baselines:
            raise KeyError(f"unknown baseline {name!r}; available: "
                           f"{', '.join(available_baselines())}")
        split = _split_method(name, algorithms)
        if split is None:
            raise KeyError(f"unknown method {name!r}: expected PRIOR-ALGORITHM with ALGORITHM "
                           f"one of {', '.join(algorithms)} (e.g. vae-vem), or a baseline "
                           f"({', '.join(available_baselines())})")
        prior, algorithm = split
        if prior in priors:
            source = priors[prior]
        elif prior in shipped_priors():
            source = prior
        else:
            shipped = ", ".join(shipped_priors()) or "none installed"
            raise KeyError(f"{name}: prior {prior!r} is neither shipped ({shipped}) nor given "
                           f"as --prior {prior}=CHECKPOINT")
        out.append(PriorMethod(name, source, algorithm, overrides, seed, device))
    return out


# -- results file ----------------------------------------------------------------------------

def _parse_row(row: dict) -> dict | None:
    """A results.csv row with numbers parsed, or None if it is incomplete (a write that was
    interrupted)."""
    if any(row.get(c) in (None, "") for c in RESULT_COLUMNS if c not in OPTIONAL_COLUMNS):
        return None
    try:
        out = {k: row.get(k) or "" for k in ("name", "method", "noise_type", "output")}
        for k in ("snr_db", "duration_s", "seconds", *METRICS):
            out[k] = float(row[k])
        out["threads"] = int(row["threads"]) if row.get("threads") not in (None, "") else None
    except (ValueError, TypeError):
        return None
    return out


def read_results(output_dir: str | os.PathLike) -> list[dict]:
    """The rows of ``output_dir/results.csv`` (numbers as floats); incomplete rows (from an
    interrupted write) are left out; the last row for a (name, method) wins."""
    path = Path(output_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [_parse_row(r) for r in csv.DictReader(f)]
    by_key = {}
    for r in rows:
        if r is not None:
            by_key[(r["name"], r["method"])] = r
    return list(by_key.values())


def _csv_value(v):
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else v  # repr: floats read back exactly


class _ResultsWriter:
    """Appends rows to results.csv, each flushed to disk before the next file starts."""

    def __init__(self, path: Path, rows: list[dict]):
        clean = path.is_file() and self._needs_rewrite(path, len(rows))
        if clean or not path.is_file():  # start over with the valid rows only
            tmp = path.with_name(f".{path.name}.part")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(RESULT_COLUMNS))
                w.writeheader()
                for r in rows:
                    w.writerow({k: _csv_value(r.get(k)) for k in RESULT_COLUMNS})
            os.replace(tmp, path)
        self._f = open(path, "a", newline="")  # noqa: SIM115 -- held open, closed by close()
        self._w = csv.DictWriter(self._f, fieldnames=list(RESULT_COLUMNS))

    @staticmethod
    def _needs_rewrite(path: Path, n_valid: int) -> bool:
        with open(path, newline="") as f:
            text = f.read()
        lines = text.splitlines()
        return (not text.endswith("\n") or not lines
                or lines[0] != ",".join(RESULT_COLUMNS) or len(lines) - 1 != n_valid)

    def write(self, row: dict) -> None:
        self._w.writerow({k: _csv_value(row[k]) for k in RESULT_COLUMNS})
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _check_run(output_dir: Path, set_dir: Path, settings: dict, restart: bool) -> None:
    """Record what runs in output_dir/run.json; refuse to mix results of other settings."""
    path = output_dir / RUN_FILE
    old = json.loads(path.read_text()) if path.is_file() and not restart else None
    record = {"set": str(set_dir), "methods": settings}
    if old is not None:
        if old.get("set") != record["set"]:
            raise ValueError(f"{output_dir} holds results of another set ({old.get('set')}); "
                             "use another --output-dir, or --restart to discard them")
        for name, s in settings.items():
            prev = old.get("methods", {}).get(name)
            if prev is not None and not _same_settings(prev, s):
                raise ValueError(f"{output_dir} holds results of {name} with other settings "
                                 f"({_diff(prev, s)}); use another --output-dir, or --restart "
                                 "to discard them")
        record["methods"] = {**old.get("methods", {}), **settings}
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _same_settings(prev: dict, new: dict) -> bool:
    """Whether a method's recorded settings equal its settings now. A config field that the
    record lacks (added to the algorithm after the run) counts as equal when it has its
    default value now, so runs of earlier versions resume."""
    if prev == new:
        return True
    pc, nc = prev.get("config"), new.get("config")
    if not isinstance(pc, dict) or not isinstance(nc, dict):
        return False
    if {k: v for k, v in prev.items() if k != "config"} != \
            {k: v for k, v in new.items() if k != "config"}:
        return False
    added = set(nc) - set(pc)
    if set(pc) - set(nc) or any(pc[k] != nc[k] for k in pc):
        return False
    try:
        from ..enhancement import get_algorithm

        fields = {f.name: f for f in
                  dataclasses.fields(get_algorithm(new.get("algorithm", "vem")).config_class)}
    except (KeyError, TypeError):
        return False
    return all(k in fields and fields[k].default is not dataclasses.MISSING
               and fields[k].default == nc[k] for k in added)


def _diff(a: dict, b: dict) -> str:
    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a), flat(b)
    keys = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
    return ", ".join(f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys[:4])


# -- the evaluation --------------------------------------------------------------------------

@dataclass
class EvaluationResult:
    """What :func:`evaluate` did and wrote.

    Attributes:
        rows: one dict per (file, method) of the selection, in set order then method order
            (columns :data:`RESULT_COLUMNS`).
        pairs: the pairs evaluated.
        methods: method names in table order.
        computed: rows computed by this call; reused: rows taken from an earlier run.
        files: paths written (``results``, ``table_md``, ``table_csv``, ``html``,
            ``figures``).
        summary: the table rows (see :func:`speechvae.evaluation.report.summarise`).
        info: header facts (machine, threads, device, commit, ...).
    """

    rows: list[dict]
    pairs: list[Pair]
    methods: list[str]
    computed: int
    reused: int
    files: dict = field(default_factory=dict)
    summary: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _load_estimate(path: Path) -> np.ndarray:
    with warnings.catch_warnings():  # a clipped or silent output is scored as it is
        warnings.simplefilter("ignore", AudioWarning)
        return load_audio(path, SAMPLE_RATE, allow_silent=True)[0]


def evaluate(set_dir: str | os.PathLike, methods: Sequence, output_dir: str | os.PathLike,
             limit: int | None = None, noise_info: str | os.PathLike | None = None,
             figure_files: int = 2, restart: bool = False, progress: bool | None = None,
             device: str = "cpu", report: bool = True,
             figures: bool = True) -> EvaluationResult:
    """Run and score every method on every pair of a set, then write the report.

    For each pair (in list.csv order) and each method: the noisy file is read (mono, 16 kHz),
    the method is timed on it (after one warm-up call per method on the first second of the
    first file), its output is written to ``output_dir/<method>/<name>.wav``, read back,
    scored against the clean file with :func:`speechvae.metrics.score`, and the row is
    appended to ``output_dir/results.csv`` with the torch thread count it ran with. Rows
    already in that file (from an interrupted or a ``limit``-ed run with the same settings)
    are reused, not recomputed; when the rows of a table were run with different thread
    counts, the report says so (header and RTF cells), so RTFs of a resumed run with another
    ``--threads`` are not passed off as one setting.

    Args:
        set_dir: folder with list.csv (see :func:`read_set`).
        methods: method objects (:func:`build_methods`).
        output_dir: where outputs, results.csv, run.json and the report go.
        limit: the first ``limit`` pairs only.
        noise_info: CSV giving the noise type of each pair (see :func:`read_set`).
        figure_files: number of pairs shown as spectrograms in the report.
        restart: discard earlier results in ``output_dir``.
        progress: tqdm bar (None: only on a terminal).
        device: recorded in the header (the methods hold their own device).
        report: write the tables and HTML page.
        figures: also draw the figures (needs matplotlib); False: tables and HTML only.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        ValueError: a bad set, a method listed twice, or ``output_dir`` holding results made
            with other settings (unless ``restart``).
        ImportError: ``figures`` without matplotlib (``pip install speechvae[eval]``).
    """
    import torch
    from tqdm import tqdm

    if report and figures:  # fail before the work, not after it
        from .report import require_plotting

        require_plotting()
    set_dir, output_dir = Path(set_dir).resolve(), Path(output_dir)
    names = [m.name for m in methods]
    if not names:
        raise ValueError("no method to evaluate")
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice: {names}")
    pairs = read_set(set_dir, noise_info)[:limit]
    if not pairs:
        raise ValueError(f"{set_dir}: no pairs selected")
    output_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        (output_dir / RESULTS_FILE).unlink(missing_ok=True)
    settings = {m.name: m.settings() for m in methods}
    _check_run(output_dir, set_dir, settings, restart)

    existing = read_results(output_dir)
    done = {(r["name"], r["method"]): r for r in existing}
    todo = [(p, m) for p in pairs for m in methods if (p.name, m.name) not in done]
    writer = _ResultsWriter(output_dir / RESULTS_FILE, existing)
    warmed: set[str] = set()
    computed = 0
    try:
        with tqdm(total=len(todo), desc="evaluate", unit="run", leave=False,
                  disable=None if progress is None else not progress) as bar:
            current = None
            for pair, method in todo:
                if current is None or current[0] != pair.name:
                    clean = load_audio(pair.clean, SAMPLE_RATE)[0]
                    noisy = load_audio(pair.noisy, SAMPLE_RATE)[0]
                    current = (pair.name, clean, noisy)
                _, clean, noisy = current
                bar.set_postfix_str(f"{method.name} {pair.name}", refresh=False)
                if method.name not in warmed:  # the first call pays for lazy set-up
                    method(noisy[: max(SAMPLE_RATE, 2048)], SAMPLE_RATE)
                    warmed.add(method.name)
                t0 = time.perf_counter()
                estimate = method(noisy, SAMPLE_RATE)
                seconds = time.perf_counter() - t0
                rel = Path(method.name) / f"{pair.name}.wav"
                write_audio(output_dir / rel, estimate, SAMPLE_RATE, overwrite=True)
                scores = score(clean, _load_estimate(output_dir / rel), SAMPLE_RATE)
                row = {"name": pair.name, "method": method.name, "snr_db": pair.snr_db,
                       "noise_type": pair.noise_type, "duration_s": noisy.size / SAMPLE_RATE,
                       "seconds": seconds, **scores, "threads": torch.get_num_threads(),
                       "output": rel.as_posix()}
                writer.write(row)
                done[(pair.name, method.name)] = row
                computed += 1
                bar.update(1)
    finally:
        writer.close()

    # the set decides SNR and noise type (e.g. a rerun with --noise-info relabels old rows)
    rows = [{**done[(p.name, n)], "snr_db": p.snr_db, "noise_type": p.noise_type}
            for p in pairs for n in names]
    from .report import machine_info, threads_label

    info = {"set": str(set_dir), "pairs": len(pairs),
            "audio_s": sum(done[(p.name, names[0])]["duration_s"] for p in pairs),
            "methods": settings, "threads": threads_label(rows), "device": str(device),
            **machine_info()}
    result = EvaluationResult(rows, pairs, names, computed, len(rows) - computed, info=info)
    result.files["results"] = output_dir / RESULTS_FILE
    if report:
        from .report import write_report

        write_report(result, output_dir, figure_files=figure_files, figures=figures)
    return result
