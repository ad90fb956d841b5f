"""``speechvae enhance``: denoise audio files with a pretrained prior."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import click

from speechvae.enhancement import available_algorithms, get_algorithm

from ._common import (
    CLIError,
    emit,
    exception_message,
    expected_errors,
    format_seconds,
    print_json,
    resolve_device,
    set_threads,
    warn,
)
from ._launch import gather_results, my_share, rank_setup

OUTPUT_SUFFIX = "_enhanced"
NOISE_SUFFIX = "_noise"
OUTPUT_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass
class Job:
    """One input file and where its outputs go.

    Attributes:
        input: the noisy file.
        output: the enhanced speech file.
        noise: the noise estimate file, or None.
        from_folder: whether the input was found by searching a folder argument.
        duration_s: input duration in seconds (from the file header).
    """

    input: Path
    output: Path
    noise: Path | None
    from_folder: bool
    duration_s: float = 0.0


def _output_paths(path: Path, root: Path | None, output: Path | None,
                  output_dir: Path | None, noise: bool) -> tuple[Path, Path | None]:
    """Enhanced (and noise) output paths of one input (see ``speechvae enhance --help``)."""
    if output is not None:
        out = output
        noise_path = out.with_name(out.stem + NOISE_SUFFIX + out.suffix) if noise else None
        return out, noise_path
    if output_dir is not None:
        rel_dir = path.parent.relative_to(root) if root is not None else Path()
        folder = output_dir / rel_dir
    else:
        folder = path.parent
    out = folder / f"{path.stem}{OUTPUT_SUFFIX}.wav"
    noise_path = folder / f"{path.stem}{NOISE_SUFFIX}.wav" if noise else None
    return out, noise_path


def plan_jobs(inputs: tuple[str, ...], output: Path | None, output_dir: Path | None,
              noise: bool) -> list[Job]:
    """Expand the input arguments into jobs and check that the output names are sane.

    Folders are searched recursively for audio files. Files found in a folder that are the
    planned output of another input (``x_enhanced.wav`` next to ``x.wav`` from an earlier
    run) are left out, with a warning.

    Raises:
        AudioError: a missing input, or a folder without audio files.
        click.UsageError: ``-o`` with other than exactly one input file.
        CLIError: an output that would replace an input, or two inputs sharing an output.
    """
    from speechvae.audio import list_audio_files

    entries: list[tuple[Path, Path | None]] = []  # (file, folder it was found in)
    seen: set[Path] = set()
    for arg in inputs:
        p = Path(arg)
        root = p if p.is_dir() else None
        for f in list_audio_files([p]):
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                entries.append((f, root))
    if output is not None:
        if len(entries) != 1 or entries[0][1] is not None:
            what = "a folder" if any(r is not None for _, r in entries) else \
                f"{len(entries)} files"
            raise click.UsageError(f"-o/--output needs exactly one input file, got {what}; "
                                   "use --output-dir for several")
        if output.suffix.lower() not in OUTPUT_EXTENSIONS:
            raise CLIError(f"{output}: unsupported output extension; use "
                           f"{', '.join(OUTPUT_EXTENSIONS)}")
        if output.is_dir():
            raise CLIError(f"{output}: is a folder; use --output-dir DIR to write into it")

    def make(entries):
        return [Job(f, *_output_paths(f, root, output, output_dir, noise), root is not None)
                for f, root in entries]

    jobs = make(entries)
    planned = {p.resolve() for j in jobs for p in (j.output, j.noise) if p is not None}
    skipped = [j.input for j in jobs if j.from_folder and j.input.resolve() in planned]
    if skipped:
        warn(f"left out {len(skipped)} file(s) found in folders that are outputs of other "
             f"inputs ({', '.join(p.name for p in skipped[:3])}"
             f"{', ...' if len(skipped) > 3 else ''})")
        jobs = make([e for e in entries if e[0] not in skipped])

    inputs_resolved = {j.input.resolve(): j.input for j in jobs}
    owners: dict[Path, Path] = {}
    for j in jobs:
        for out in (j.output, j.noise):
            if out is None:
                continue
            key = out.resolve()
            if key in inputs_resolved:
                raise CLIError(f"{out}: output would overwrite the input "
                               f"{inputs_resolved[key]}")
            if key in owners:
                raise CLIError(f"{owners[key]} and {j.input} would both be written to {out}; "
                               "rename one or use separate runs")
            owners[key] = j.input
    return jobs


def check_outputs(jobs: list[Job], overwrite: bool, skip_existing: bool) -> list[Job]:
    """Refuse (or skip) jobs whose outputs exist, before anything is processed.

    Returns:
        the jobs left to run (``len(jobs) - len(returned)`` were skipped).

    Raises:
        CLIError: an output exists and neither ``overwrite`` nor ``skip_existing`` is set,
            or an output path is a folder.
    """
    todo, existing = [], []
    for j in jobs:
        outs = [o for o in (j.output, j.noise) if o is not None]
        for o in outs:
            if o.is_dir():
                raise CLIError(f"{o}: output path is a folder")
        present = [o for o in outs if o.exists()]
        if skip_existing and len(present) == len(outs):
            continue
        existing += present
        todo.append(j)
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        hint = "--overwrite to replace" + (" them" if more else " it")
        if not skip_existing:
            hint += " or --skip-existing to keep"
        raise CLIError(f"{existing[0]}: output exists{more}; use {hint}")
    return todo


def check_input(job: Job) -> None:
    """Cheap header checks of one input (readable audio, not empty); sets ``duration_s``.

    Raises:
        AudioError: missing, unreadable or empty file.
    """
    from speechvae.audio import AudioError, audio_info

    if job.input.is_file() and job.input.stat().st_size == 0:
        raise AudioError(f"{job.input}: empty file (0 bytes)")
    info = audio_info(job.input)
    if info.frames == 0:
        raise AudioError(f"{job.input}: empty audio file (0 samples)")
    job.duration_s = info.frames / info.samplerate


def _parse_rate(ctx, param, value):
    """``--output-rate``: ``input`` (None) or a rate in Hz."""
    if value is None or str(value).strip().lower() == "input":
        return None
    try:
        rate = int(value)
    except ValueError:
        rate = 0
    if rate <= 0:
        raise click.BadParameter(f"{value!r}: expected 'input' or a rate in Hz such as 16000")
    return rate


@click.command(no_args_is_help=True,
               short_help="Denoise audio files with a pretrained prior (VEM/MCEM/MCMC + NMF "
                          "noise).")
@click.argument("inputs", metavar="IN...", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=True, path_type=Path),
              help="Output file (.wav, .flac or .ogg); only with exactly one input file.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write DIR/<stem>_enhanced.wav; files found in a folder keep their "
                   "sub-folder under DIR.")
@click.option("--prior", "prior_name", default="vae", show_default=True, metavar="NAME|PATH",
              help="Shipped prior name, prior checkpoint file, or the model folder of a "
                   "published DVAE_SE prior (config.ini + .pt; docs/peer_priors.md); see "
                   "'speechvae priors'.")
@click.option("--algorithm", type=click.Choice(available_algorithms()), default="vem",
              show_default=True,
              help="Inference algorithm: " + "; ".join(
                  f"{name}: {get_algorithm(name).summary}" for name in available_algorithms())
              + ".")
@click.option("--iterations", type=click.IntRange(min=1), metavar="N",
              help="Maximum iterations (EM iterations; Gibbs sweeps for bando) [default: "
                   + ", ".join(f"{name} {get_algorithm(name).config_class.iterations}"
                               for name in available_algorithms()) + "].")
@click.option("--share-tol", "share_tol", type=click.FloatRange(min=0, max=1), metavar="TOL",
              help="Stop a file once its speech share (the part of the mixture power the "
                   "Wiener filter keeps) falls by less than TOL from one window of 25 "
                   "iterations to the next (e.g. 0.02); 0 runs all --iterations "
                   "[default: 0].")
@click.option("--nmf-rank", type=click.IntRange(min=1), metavar="K",
              help="Rank of the NMF noise model [default: "
                   + ", ".join(sorted({str(get_algorithm(n).config_class.nmf_rank)
                                       for n in available_algorithms()})) + "].")
@click.option("--atten-lim-db", "atten_lim_db", type=click.FloatRange(min=0), metavar="DB",
              help="Suppression limit: the largest attenuation in dB the Wiener gain may "
                   "apply (e.g. 12 keeps some of the noise and more of the speech) "
                   "[default: no limit].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of all random draws; every file uses it, so a file's result does "
                   "not depend on the other files, their order or --jobs.")
@click.option("--output-rate", "output_rate", default="input", show_default=True,
              metavar="input|HZ", callback=_parse_rate,
              help="Sample rate of the outputs: the input's (enhanced at 16 kHz, resampled "
                   "back; above 8 kHz the input's band scaled by the gain of the top "
                   "enhanced band), or e.g. 16000 for the prior's 16-kHz estimate.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda[:N]",
              help="Torch device.")
@click.option("-j", "--jobs", "n_jobs", type=click.IntRange(min=1), metavar="N",
              help="Files enhanced at once, in N processes (this one included) [default: the "
                   "CPU cores this process may use, at most one per file; 1 with --device "
                   "cuda or under torchrun]. Outputs do not depend on it.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Torch threads per process [default: 1; under torchrun the cores split "
                   "between ranks]. More threads help little on these small tensors and "
                   "slow down badly when another program uses a core.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="B",
              help="Enhance B files at a time in one padded, masked batch (files sorted by "
                   "duration; long files segment by segment); outputs equal those of "
                   "--batch-size 1 up to float rounding. Worth it on a GPU. Every prior "
                   "batches; algorithms without a batched path refuse B > 1. See "
                   "docs/batched.md.")
@click.option("--noise-output/--no-noise-output", default=False, show_default=True,
              help="Also write the noise estimate, <stem>_noise.wav (with -o: OUT_noise.ext).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True,
              help="Leave out inputs whose outputs exist (resume an interrupted batch); the "
                   "summary says how many.")
@click.option("--keep-going", is_flag=True,
              help="Go on with the other files after a file fails (exit code 1 at the end).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def enhance(inputs, output, output_dir, prior_name, algorithm, iterations, share_tol,
            nmf_rank, atten_lim_db, seed,
            output_rate, device, n_jobs, threads, batch_size, noise_output, overwrite,
            skip_existing, keep_going, progress, as_json):
    """Enhance noisy speech files IN... (files and/or folders, searched recursively).

    Each output is mono, at the input's sample rate (--output-rate) and duration, in the
    input's sample format where the output container has it (16/24/32-bit PCM or float;
    otherwise 16-bit PCM); by default IN_enhanced.wav beside the input. A float input
    beyond full scale gives a float output, not clipped. All outputs are checked before
    anything is processed: an existing output is refused unless --overwrite (or
    --skip-existing), and an input is never overwritten. Each output is written to a
    temporary file and renamed once complete, so a failure leaves no partial file.
    Multichannel inputs are averaged to mono, with a warning. Folders are processed by
    --jobs processes, one torch thread each.

    \b
    Examples:
      speechvae enhance noisy.wav                      # -> noisy_enhanced.wav
      speechvae enhance noisy.wav -o clean.wav --iterations 50
      speechvae enhance noisy.wav --algorithm mcem     # Monte Carlo EM (slower)
      speechvae enhance recordings/ --output-dir enhanced/          # all cores
      speechvae enhance recordings/ --output-dir enhanced/ --device cuda --batch-size 16
    """
    from speechvae.parallel import available_cores
    from speechvae.priors import load_prior

    if output is not None and output_dir is not None:
        raise click.UsageError("-o/--output and --output-dir cannot be used together")
    if overwrite and skip_existing:
        raise click.UsageError("--overwrite and --skip-existing cannot be used together")
    if batch_size > 1 and get_algorithm(algorithm).run_batch is None:
        batched = [n for n in available_algorithms() if get_algorithm(n).run_batch is not None]
        raise CLIError(f"--batch-size {batch_size}: algorithm {algorithm!r} has no batched "
                       f"path (only {', '.join(batched)}); use --batch-size 1")
    device = resolve_device(device)
    launch, device, threads = rank_setup(device, threads)  # torchrun: see cli/_launch.py
    threads = threads or 1
    set_threads(threads)

    planned = plan_jobs(inputs, output, output_dir, noise_output)
    jobs = check_outputs(planned, overwrite, skip_existing)
    skipped = len(planned) - len(jobs)
    jobs = my_share(launch, jobs)  # torchrun: every N-th file, once all ranks checked
    failures: list[dict] = []

    def fail(job: Job, exc: BaseException) -> None:
        msg = exception_message(exc)
        if not keep_going:
            raise CLIError(msg) from exc
        emit(f"error: {msg}", err=True)
        failures.append({"input": str(job.input), "error": msg})

    checked = []
    for job in jobs:
        try:
            check_input(job)
            checked.append(job)
        except expected_errors() as exc:
            fail(job, exc)
    jobs = checked

    if n_jobs is None:
        n_jobs = 1 if launch.distributed or device != "cpu" else available_cores()
    n_jobs = max(1, min(n_jobs, len(jobs)))
    prior = load_prior(prior_name, device=device)
    config = get_algorithm(algorithm).default_config()
    overrides = {k: v for k, v in (("iterations", iterations), ("nmf_rank", nmf_rank),
                                   ("atten_lim_db", atten_lim_db), ("share_tol", share_tol))
                 if v is not None}
    config = dataclasses.replace(config, **overrides)

    t0 = time.perf_counter()
    results = _run(jobs, prior, config, seed, device, overwrite, progress, as_json, fail,
                   batch_size, output_rate, n_jobs, threads)
    wall = time.perf_counter() - t0

    results, failures, total_wall = gather_results(launch, results, failures)
    if not launch.distributed:
        total_wall = wall  # with --jobs, files overlap: the wall time, not their sum
    if not launch.is_main:  # rank 0 reports for every rank
        raise SystemExit(1 if failures else 0)
    total_audio = sum(r["duration_s"] for r in results)
    if as_json:
        print_json({"prior": prior_name, "algorithm": algorithm, "device": device,
                    "seed": seed, "batch_size": batch_size, "jobs": n_jobs,
                    "threads": threads, "output_rate": output_rate or "input",
                    "config": dataclasses.asdict(config), "files": results,
                    "failed": failures, "skipped": skipped, "duration_s": total_audio,
                    "seconds": total_wall})
    else:
        emit(f"enhanced {len(results)} file(s), {format_seconds(total_audio)} of audio in "
             f"{format_seconds(total_wall)}"
             + (f" ({n_jobs} processes x {threads} thread{'s' if threads > 1 else ''})"
                if n_jobs > 1 else "")
             + (f"; skipped {skipped} whose outputs exist" if skipped else "")
             + (f"; {len(failures)} failed" if failures else ""))
    if failures:
        raise SystemExit(1)


class _Heartbeat:
    """Redraws a tqdm bar every ``interval`` seconds from a thread, so its elapsed time (and
    rate) keep moving during a long segment or a long MCEM run, between updates."""

    def __init__(self, bar, interval: float = 1.0):
        import threading

        self.bar, self.interval = bar, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.bar.refresh()

    def __enter__(self):
        if not self.bar.disable:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def _run(jobs, prior, config, seed, device, overwrite, progress, as_json, fail,
         batch_size: int, output_rate, n_jobs: int, threads: int) -> list[dict]:
    """Enhance the jobs with :func:`speechvae.enhancement.enhance_files` (in ``n_jobs``
    processes, ``batch_size`` files per batch) under one progress bar over seconds of
    audio; results in the order of ``jobs``.

    A file's ``seconds`` is its processing time (batched: its share of its batch's time).
    """
    from tqdm import tqdm

    from speechvae.enhancement import enhance_files

    results: dict[int, dict] = {}
    total = sum(j.duration_s for j in jobs)
    disable = None if progress is None else not progress  # None: only on a terminal
    done = [0.0] * len(jobs)
    with tqdm(total=round(total, 2), unit="s", desc="enhance", disable=disable, leave=False,
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio "
                         "[{elapsed}<{remaining}{postfix}]") as bar, _Heartbeat(bar):

        def on_segment(i: int, seconds: float, iterations: int) -> None:
            step = max(0.0, min(seconds, jobs[i].duration_s - done[i]))  # segments overlap
            done[i] += step
            bar.update(step)

        stream = enhance_files([(j.input, j.output, j.noise) for j in jobs], prior=prior,
                               config=config, seed=seed, device=device, overwrite=overwrite,
                               batch_size=batch_size, progress=on_segment,
                               durations=[j.duration_s for j in jobs],
                               output_rate=output_rate, workers=n_jobs, threads=threads)
        finished = 0
        try:
            for i, info in stream:
                job = jobs[i]
                bar.update(max(0.0, job.duration_s - done[i]))
                done[i] = job.duration_s
                finished += 1
                bar.set_postfix_str(f"{finished}/{len(jobs)} files", refresh=False)
                if isinstance(info, BaseException):
                    if not isinstance(info, expected_errors()):
                        raise info
                    fail(job, info)
                    continue
                results[i] = {"input": str(job.input), "output": str(job.output),
                              "noise": str(job.noise) if job.noise else None,
                              "duration_s": round(info["duration_s"], 4),
                              "sample_rate": info["sample_rate"],
                              "iterations": info["iterations"],
                              "seconds": round(info["seconds"], 3)}
                if not as_json:
                    iters = sum(info["iterations"])
                    emit(f"{job.input} -> {job.output}  ({format_seconds(info['duration_s'])}"
                         f", {info['sample_rate']} Hz, {iters} "
                         f"iteration{'s' if iters != 1 else ''}, "
                         f"{format_seconds(info['seconds'])})")
        finally:
            stream.close()  # on a failure: unstarted files are left, no partial output
    return [results[i] for i in sorted(results)]
