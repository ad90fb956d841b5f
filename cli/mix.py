"""``speechvae mix``: render a reproducible noisy/clean test set."""
from __future__ import annotations

import re
from pathlib import Path

import click

from ._common import CLIError, emit, format_seconds, print_json

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def expand_multi_value(args: list[str], options: tuple[str, ...]) -> list[str]:
    """Rewrite ``--snr -5 0 5`` as ``--snr -5 --snr 0 --snr 5``, so that an option declared
    ``multiple=True`` also takes several numbers after one flag (negative ones included).

    After one of ``options`` and its value, every following argument that is a number is
    given to the same option; anything else (another option, ``--``) ends the run.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        i += 1
        if arg == "--":
            out.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in options:
            if "=" not in arg and i < len(args):  # the option's own value
                out.append(args[i])
                i += 1
            while i < len(args) and _NUMBER.match(args[i]):
                out += [name, args[i]]
                i += 1
    return out


class MultiValueCommand(click.Command):
    """A click command whose ``multi_value_options`` take several values after one flag."""

    multi_value_options: tuple[str, ...] = ("--snr",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value(list(args), self.multi_value_options))


@click.command(cls=MultiValueCommand, no_args_is_help=True,
               short_help="Make a reproducible noisy/clean test set.")
@click.option("--clean", "clean_dir", type=click.Path(exists=True, path_type=Path),
              help="Folder of clean speech (searched recursively).")
@click.option("--noise", "noise_dir", type=click.Path(exists=True, path_type=Path),
              help="Folder of noise recordings (searched recursively); a file's folder name "
                   "is its noise type.")
@click.option("--snr", "snrs", type=float, multiple=True, metavar="DB...",
              help="Input SNRs in dB, several after one flag: --snr -5 0 5 10.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: clean/, noisy/ and list.csv.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the noise and offset draws; the same seed gives the same files.")
@click.option("--per-file", type=click.IntRange(min=1), default=None,
              help="Mixtures per clean file [default: one per SNR]; fewer than the SNRs "
                   "cycles through them over the files, keeping the SNRs balanced.")
@click.option("--list", "list_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Render a fixed list instead (columns name, clean, noise, noise_offset, "
                   "snr_db; e.g. ../shared/data/devset.csv).")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the --list paths are relative to [default: the list's folder].")
@click.option("--overwrite", is_flag=True, help="Replace a set already in --out.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: when stderr is a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def mix(clean_dir, noise_dir, snrs, out_dir, seed, per_file, list_csv, root, overwrite,
        progress, as_json):
    """Mix clean speech with noise at given SNRs into a noisy/clean set.

    Writes OUT/clean/NAME.wav and OUT/noisy/NAME.wav (16 kHz, 16-bit PCM) and OUT/list.csv
    (name, clean, noisy, snr_db, speaker, gender as the corpus' make_mixtures.py writes, then
    noise, noise_offset, noise_type). The mixing rule is the corpus': the noise starts at a
    random offset and is looped if too short, the SNR holds over the whole utterance, and
    clean and noisy are scaled together when the mixture would clip. Each clean file is mixed
    at each SNR (see --per-file) with a noise file drawn at random; names are
    STEM_snr-5, STEM_snr+0, ... The same inputs and seed give byte-identical files. Other
    sample rates are resampled and several channels averaged, with a warning.

    \b
    Examples:
      speechvae mix --clean speech/ --noise noise/ --snr -5 0 5 10 --out testset/
      speechvae mix --list ../shared/data/devset.csv --out devset/
    """
    from speechvae.evaluation.mixing import plan_mixtures, read_mixture_list, render_mixtures

    if list_csv is not None:
        if clean_dir or noise_dir or snrs or per_file:
            raise click.UsageError("--list cannot be combined with --clean, --noise, --snr "
                                   "or --per-file")
    else:
        if root is not None:
            raise click.UsageError("--root goes with --list")
        missing = [n for n, v in (("--clean", clean_dir), ("--noise", noise_dir),
                                  ("--snr", snrs)) if not v]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or give --list)")
    if (out_dir / "list.csv").exists() and not overwrite:
        raise CLIError(f"{out_dir / 'list.csv'}: a set exists there (use --overwrite to "
                       "replace it)")
    if list_csv is not None:
        plan = read_mixture_list(list_csv, root)
    else:
        plan = plan_mixtures(clean_dir, noise_dir, snrs, seed=seed, per_file=per_file)
    path = render_mixtures(plan, out_dir, progress=progress)
    import soundfile as sf

    seconds = sum(sf.info(str(out_dir / "noisy" / f"{m.name}.wav")).duration for m in plan)
    snr_values = sorted({m.snr_db for m in plan})
    types = sorted({m.noise_type for m in plan})
    if as_json:
        print_json({"out": str(out_dir), "list": str(path), "pairs": len(plan),
                    "duration_s": round(seconds, 3), "snr_db": snr_values,
                    "noise_types": types, "seed": None if list_csv else seed})
        return
    emit(f"wrote {len(plan)} pairs ({format_seconds(seconds)} of audio) to {out_dir}: SNR "
         f"{', '.join(f'{s:g}' for s in snr_values)} dB; noise types {', '.join(types)}")
