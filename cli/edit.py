"""``speechvae shift-f0``, ``edit-formant``, ``whisper`` and ``learn-subspaces``."""
from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import CLIError, emit, print_json, set_threads

EDIT_METHODS = ("relative", "latent")  # speechvae.editing.EDIT_METHODS, without importing it
from .synthesis import VOCODERS, _check_output, _ckpt_option, _common, _vocoder_options


def _editing_options(f):
    options = [
        click.option("-o", "--output", type=click.Path(path_type=Path),
                     help="Output file (.wav, .flac or .ogg) [default: IN_<edit>.wav beside "
                          "IN]."),
        click.option("--prior", "prior_name", metavar="NAME|PATH",
                     help="Shipped prior name or prior checkpoint [default: the shipped "
                          "editing prior]."),
        click.option("--subspaces", "subspaces_path", type=click.Path(path_type=Path),
                     help="Subspace file from 'speechvae learn-subspaces' [default: the "
                          "ones shipped with --prior]."),
        click.option("--vocoder", type=click.Choice(VOCODERS), default="griffin-lim",
                     show_default=True,
                     help="griffin-lim keeps unvoiced frames exactly; waveglow vocodes the "
                          "whole spectrogram."),
        _ckpt_option,
        click.option("--method", "edit_method", type=click.Choice(EDIT_METHODS),
                     default=EDIT_METHODS[0], show_default=True,
                     help="relative: apply the latent edit as a change of the input's "
                          "spectral envelope (f0 edits: harmonic resynthesis at the target "
                          "f0); latent: resynthesise voiced frames from the decoder alone "
                          "(the earlier method)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the random phase (whisper)."),
        *_common[1:],  # --threads, --overwrite, --json as in resynthesize/generate
    ]
    for opt in reversed(options):
        f = opt(f)
    return click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))(f)


def _run_edit(kind: str, input_path: Path, output: Path | None, prior_name, subspaces_path,
              vocoder, vocoder_checkpoint, edit_method, seed, threads, overwrite, as_json,
              edit, details: dict) -> None:
    """Shared body: check paths, load, edit, write atomically, report."""
    from speechvae.audio import load_audio, write_audio
    from speechvae.editing import EditConfig, load_editor

    if not input_path.exists():
        raise CLIError(f"{input_path}: no such file")
    if input_path.is_dir():
        raise CLIError(f"{input_path}: is a folder; give one audio file")
    if output is None:
        output = input_path.with_name(f"{input_path.stem}_{kind}.wav")
    _check_output(output, overwrite, (input_path,))
    options = _vocoder_options(vocoder, vocoder_checkpoint, seed)
    set_threads(threads)
    editor = load_editor(prior_name, subspaces_path, vocoder=vocoder,
                         vocoder_options=options if vocoder != "griffin-lim" else None,
                         config=EditConfig(method=edit_method, seed=seed))
    x, sr = load_audio(input_path, editor.sample_rate)
    t0 = time.perf_counter()
    y = edit(editor, x, sr)
    seconds = time.perf_counter() - t0
    if editor.last_formant is not None:  # relative formant edits measure what they reach
        details = {**details, "achieved_hz": round(editor.last_formant["achieved_hz"], 1),
                   "input_hz": round(editor.last_formant["input_hz"], 1)}
    write_audio(output, y, editor.sample_rate, overwrite=overwrite)
    summary = {"input": str(input_path), "output": str(output), "edit": kind, **details,
               "prior": prior_name or "default", "method": edit_method, "vocoder": vocoder,
               "duration_s": round(y.size / editor.sample_rate, 4),
               "seconds": round(seconds, 3)}
    if as_json:
        print_json(summary)
    else:
        what = ", ".join(f"{k} {v}" for k, v in details.items())
        emit(f"{input_path} -> {output}  ({kind}{': ' + what if what else ''}, "
             f"{y.size / editor.sample_rate:.2f} s, {seconds:.1f} s)")


@click.command("shift-f0", no_args_is_help=True,
               short_help="Change the pitch (f0) of speech in the latent space.")
@_editing_options
@click.option("--target", "target_hz", type=click.FloatRange(min=0, min_open=True),
              metavar="HZ", help="Constant f0 (Hz) on every voiced frame.")
@click.option("--semitones", type=float, metavar="N",
              help="Shift the measured f0 contour by N semitones (intonation kept).")
def shift_f0(input_path, output, prior_name, subspaces_path, vocoder, vocoder_checkpoint,
             edit_method, seed, threads, overwrite, as_json, target_hz, semitones):
    """Set the f0 of the speech file IN to --target HZ, or shift it by --semitones N.

    Voiced frames (Praat's pitch tracker) move inside the prior's f0 latent subspace
    (Sadok et al. 2023); unvoiced frames are left as they are. With --method relative
    (default) voiced frames (Praat's, plus those WORLD's Harvest calls voiced next to them
    when pyworld is installed) are resynthesised as harmonics of the target f0 that sample
    the input's own spectral envelope, so the formants stay; --method latent decodes them from
    the edited latent alone. The output is mono at the
    prior's rate (16 kHz), written atomically; an existing output is refused unless
    --overwrite.

    \b
    Examples:
      speechvae shift-f0 --target 200 in.wav           # -> in_shift-f0.wav
      speechvae shift-f0 in.wav --semitones -3 -o lower.wav
    """
    if (target_hz is None) == (semitones is None):
        raise click.UsageError("give exactly one of --target HZ and --semitones N")
    details = {"target_hz": target_hz} if target_hz is not None else {"semitones": semitones}
    _run_edit("shift-f0", input_path, output, prior_name, subspaces_path, vocoder,
              vocoder_checkpoint, edit_method, seed, threads, overwrite, as_json,
              lambda ed, x, sr: ed.shift_f0(x, sr, target_hz=target_hz, semitones=semitones),
              details)


@click.command("edit-formant", no_args_is_help=True,
               short_help="Change one formant frequency (F1, F2 or F3).")
@_editing_options
@click.option("--formant", type=click.IntRange(1, 3), required=True,
              help="Which formant: 1, 2 or 3.")
@click.option("--target", "target_hz", type=click.FloatRange(min=0, min_open=True),
              required=True, metavar="HZ", help="Formant frequency (Hz) on voiced frames.")
def edit_formant(input_path, output, prior_name, subspaces_path, vocoder, vocoder_checkpoint,
                 edit_method, seed, threads, overwrite, as_json, formant, target_hz):
    """Set formant F1, F2 or F3 of the speech file IN to --target HZ on voiced frames.

    With --method relative (default) the input is kept and multiplied by the change the
    latent edit makes to the decoded envelope; the formant reached is measured (Praat Burg)
    and reported, with a warning when it is more than 5 % from the target.

    \b
    Examples:
      speechvae edit-formant in.wav --formant 1 --target 700 -o open.wav
    """
    _run_edit(f"F{formant}", input_path, output, prior_name, subspaces_path, vocoder,
              vocoder_checkpoint, edit_method, seed, threads, overwrite, as_json,
              lambda ed, x, sr: ed.edit_formant(x, sr, formant, target_hz),
              {"formant": formant, "target_hz": target_hz})


@click.command(no_args_is_help=True, short_help="Make speech whispered (remove f0).")
@_editing_options
def whisper(input_path, output, prior_name, subspaces_path, vocoder, vocoder_checkpoint,
            edit_method, seed, threads, overwrite, as_json):
    """Whisper the speech file IN: the f0 subspace is projected out on voiced frames.

    \b
    Examples:
      speechvae whisper in.wav -o whispered.wav
    """
    _run_edit("whisper", input_path, output, prior_name, subspaces_path, vocoder,
              vocoder_checkpoint, edit_method, seed, threads, overwrite, as_json,
              lambda ed, x, sr: ed.whisper(x, sr), {})


@click.command("learn-subspaces", short_help="Learn the f0/formant subspaces of a prior.")
@click.option("--prior", "prior_name", default="vae", show_default=True, metavar="NAME|PATH",
              help="Shipped prior name or a frame-wise prior checkpoint.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Subspace file to write (.pt).")
@click.option("--files-per-factor", type=click.IntRange(min=24), default=200,
              show_default=True, help="Synthetic vowels per factor.")
@click.option("--variance-share", type=click.FloatRange(0, 1, min_open=True), default=0.8,
              show_default=True, help="Share of each factor's latent variance kept.")
@click.option("--segments", type=click.IntRange(min=1), default=20, show_default=True,
              help="Pieces of each piecewise-linear regression.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the vowel settings.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads used by torch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def learn_subspaces(prior_name, output, files_per_factor, variance_share, segments, seed,
                    threads, overwrite, as_json):
    """Learn the source–filter latent subspaces (f0, F1, F2, F3) of a frame-wise prior
    from synthetic labelled vowels (Praat KlattGrid), as in Sadok et al. 2023.

    Prints the subspace dimensions, the variance they keep and the largest dot product
    between basis vectors of different factors (0 = orthogonal subspaces).

    \b
    Examples:
      speechvae learn-subspaces --prior runs/vae/best.pt -o runs/vae/subspaces.pt
      speechvae shift-f0 in.wav --target 180 --prior runs/vae/best.pt \\
          --subspaces runs/vae/subspaces.pt
    """
    from speechvae.editing import learn_subspaces as learn
    from speechvae.editing import make_factor_datasets
    from speechvae.priors import load_prior

    if output.suffix != ".pt":
        raise CLIError(f"{output}: the subspace file must end in .pt")
    if output.exists() and not overwrite:
        raise CLIError(f"{output}: output exists; use --overwrite to replace it")
    set_threads(threads)
    prior = load_prior(prior_name)
    t0 = time.perf_counter()
    datasets = make_factor_datasets(files_per_factor, prior.stft_config.sample_rate, seed)
    subspaces = learn(prior, datasets, variance_share=variance_share, segments=segments)
    subspaces.info["seed"] = seed
    subspaces.prior["source"] = str(prior_name)
    subspaces.save(output)
    seconds = time.perf_counter() - t0
    summary = {"output": str(output), "prior": prior_name,
               "dims": {k: v.dim for k, v in subspaces.factors.items()},
               "variance_kept": {k: round(v.variance_kept, 4)
                                 for k, v in subspaces.factors.items()},
               "max_cross_dot": round(subspaces.max_cross_dot(), 4),
               "seconds": round(seconds, 2)}
    if as_json:
        print_json(summary)
    else:
        emit(subspaces.summary())
        emit(f"largest |dot product| between factors: {summary['max_cross_dot']:.2f}")
        emit(f"wrote {output} ({seconds:.1f} s)")
