"""``speechvae evaluate``: methods and baselines side by side on a noisy/clean set."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import CLIError, emit, print_json, resolve_device, set_threads


def _parse_priors(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{v!r}: expected NAME=CHECKPOINT", param_hint="--prior")
        out[name] = path
    return out


@click.command(no_args_is_help=True,
               short_help="Score methods and baselines side by side on a noisy/clean set.")
@click.argument("set_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", "methods", multiple=True, metavar="PRIOR-ALGORITHM",
              help="A prior with an inference algorithm, e.g. vae-vem or vae-mcem "
                   "(repeatable). PRIOR is a shipped prior or one named with --prior; "
                   "ALGORITHM one of 'speechvae enhance --algorithm'.")
@click.option("--baseline", "baselines", multiple=True, metavar="NAME",
              help="noisy (the input), spectral-gating (noisereduce) or nmf (semi-supervised "
                   "NMF) (repeatable).")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where outputs, results.csv, tables, figures and index.html go.")
@click.option("--prior", "priors", multiple=True, metavar="NAME=CHECKPOINT",
              help="Use CHECKPOINT for the prior NAME of --method NAME-ALGORITHM "
                   "(repeatable).")
@click.option("--iterations", type=click.IntRange(min=1),
              help="Iterations of the inference algorithms [default: their own].")
@click.option("--nmf-rank", type=click.IntRange(min=1),
              help="NMF noise rank of the inference algorithms [default: their own].")
@click.option("--nmf-dictionary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Speech dictionary of the nmf baseline [default: the shipped one].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every method.")
@click.option("--noise-info", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with name and noise_type (or noise, a path whose folder names the "
                   "type) columns, e.g. ../shared/data/devset.csv [default: list.csv's].")
@click.option("--limit", type=click.IntRange(min=1), help="First N pairs only.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads of torch. One thread per run is the fast choice for these "
                   "small tensors, and does not collapse when another program holds a core "
                   "(each row of results.csv records its count).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--figure-files", type=click.IntRange(min=0), default=2, show_default=True,
              help="Files shown as spectrograms in the report.")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="Draw the report's figures (needs matplotlib: pip install "
                   "speechvae[eval]); --no-figures writes the tables and index.html only.")
@click.option("--restart", is_flag=True,
              help="Discard the results already in --output-dir instead of resuming.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def evaluate(set_dir, methods, baselines, output_dir, priors, iterations, nmf_rank,
             nmf_dictionary, seed, noise_info, limit, threads, device, figure_files, figures,
             restart, progress, as_json):
    """Run methods and baselines on every noisy file of SET_DIR and score them side by side.

    SET_DIR holds list.csv (name, clean, noisy, snr_db, ...) as made by 'speechvae mix' or
    the corpus' make_mixtures.py. Each output goes to OUTPUT_DIR/METHOD/NAME.wav and is
    scored against the clean file (SI-SDR, PESQ-WB, PESQ-NB, STOI, ESTOI); each result is
    appended to OUTPUT_DIR/results.csv (with the torch thread count it ran with) as soon as
    it is done, and a rerun skips what is there (resume; the settings must match; RTFs of
    rows run with other --threads are flagged, not silently averaged). At the end: table.md
    and table.csv (means per input SNR, per noise type and overall, with the real-time
    factor, threads, device, machine and commit), figures/*.png (unless --no-figures) and
    index.html (players for every file).

    \b
    Examples:
      speechvae evaluate devset/ --method vae-vem --baseline noisy --baseline nmf \\
          --output-dir runs/eval/devset
      speechvae evaluate testset/ --method mine-vem --prior mine=runs/vae/best.pt \\
          --baseline noisy --output-dir out/ --limit 10 --threads 2
    """
    from speechvae.evaluation import build_methods
    from speechvae.evaluation import evaluate as run_evaluation

    if not methods and not baselines:
        raise click.UsageError("give at least one --method or --baseline")
    prior_paths = _parse_priors(priors)
    device = resolve_device(device)
    set_threads(threads)
    overrides = {"iterations": iterations, "nmf_rank": nmf_rank}
    try:
        built = build_methods(methods, baselines, prior_paths, overrides, seed, device,
                              nmf_dictionary)
        result = run_evaluation(set_dir, built, output_dir, limit=limit, noise_info=noise_info,
                                figure_files=figure_files, restart=restart, progress=progress,
                                device=device, figures=figures)
    except ImportError as exc:  # an optional dependency: the message says what to install
        hint = "; or --no-figures" if "matplotlib" in str(exc) else ""
        raise CLIError(str(exc) + hint) from exc
    files = {k: [str(p) for p in v] if isinstance(v, list) else str(v)
             for k, v in result.files.items()}
    overall = [r for r in result.summary if r["group_by"] == "overall"]
    if as_json:
        print_json({"set": str(set_dir), "methods": result.methods, "pairs": len(result.pairs),
                    "computed": result.computed, "reused": result.reused, "overall": overall,
                    "summary": result.summary, "info": result.info, "files": files})
        return
    from speechvae.evaluation.report import table_cells

    table = table_cells(result.summary, "overall", "")
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        emit("  ".join(c.replace("**", "").ljust(w) if i == 0 else
                       c.replace("**", "").rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    emit(f"{len(result.pairs)} files x {len(result.methods)} methods: {result.computed} run, "
         f"{result.reused} reused from {files['results']}; report: {files['html']}, "
         f"{files['table_md']}")
