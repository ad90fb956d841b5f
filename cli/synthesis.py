"""``speechvae resynthesize`` and ``speechvae generate``: speech back from a prior."""
from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import CLIError, emit, print_json, set_threads

OUTPUT_EXTENSIONS = (".wav", ".flac", ".ogg")
PHASES = ("oracle", "griffin-lim", "waveglow")
VOCODERS = ("griffin-lim", "waveglow")


def _check_output(output: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Same rules as ``speechvae enhance``: known extension, not a folder, never an input,
    an existing file only with ``--overwrite``."""
    if output.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise CLIError(f"{output}: unsupported output extension; use "
                       f"{', '.join(OUTPUT_EXTENSIONS)}")
    if output.is_dir():
        raise CLIError(f"{output}: output path is a folder")
    for i in inputs:
        if output.resolve() == i.resolve():
            raise CLIError(f"{output}: output would overwrite the input {i}")
    if output.exists() and not overwrite:
        raise CLIError(f"{output}: output exists; use --overwrite to replace it")


def _vocoder_options(name: str, checkpoint: Path | None, seed: int) -> dict:
    if name == "waveglow":
        if checkpoint is None:
            raise click.UsageError("waveglow needs --vocoder-checkpoint PATH (a WaveGlow "
                                   "checkpoint: ours or a public NVIDIA release)")
        return {"checkpoint": checkpoint, "config": _wg_config(seed)}
    if checkpoint is not None:
        raise click.UsageError(f"--vocoder-checkpoint is only used with waveglow, not {name}")
    return {"seed": seed} if name == "griffin-lim" else {}


def _wg_config(seed: int):
    from speechvae.vocoders import WaveGlowVocoderConfig

    return WaveGlowVocoderConfig(seed=seed)


_prior_option = click.option("--prior", "prior_name", default="vae", show_default=True,
                             metavar="NAME|PATH",
                             help="Shipped prior name or prior checkpoint file.")
_ckpt_option = click.option("--vocoder-checkpoint", type=click.Path(path_type=Path),
                            help="WaveGlow checkpoint (ours, NVIDIA's hub state dict, or the "
                                 "whole-model pickle, read with a restricted unpickler).")
_common = [
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Seed of the random draws (latent, Griffin-Lim initial phase)."),
    click.option("--threads", type=click.IntRange(min=1), metavar="N",
                 help="CPU threads used by torch [default: torch's choice]."),
    click.option("--overwrite", is_flag=True, help="Replace an existing output."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
]


def _with_common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.command(no_args_is_help=True,
               short_help="Encode clean speech through a prior and decode it back.")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (.wav, .flac or .ogg) [default: IN_resynth.wav beside IN].")
@_prior_option
@click.option("--phase", type=click.Choice(PHASES), default="oracle", show_default=True,
              help="oracle: the input's phase with the decoded magnitude; griffin-lim or "
                   "waveglow: a vocoder from the decoded power spectrogram.")
@_ckpt_option
@_with_common
def resynthesize(input_path, output, prior_name, phase, vocoder_checkpoint, seed, threads,
                 overwrite, as_json):
    """Resynthesize the clean speech file IN through a prior.

    The power spectrogram of IN is encoded (posterior mean), decoded, and turned back into
    a waveform. The output is mono 16-bit PCM at the prior's rate, with IN's duration; it
    is written atomically, and an existing output is refused unless --overwrite.

    \b
    Examples:
      speechvae resynthesize clean.wav                      # -> clean_resynth.wav
      speechvae resynthesize clean.wav --phase griffin-lim -o gl.wav
      speechvae resynthesize clean.wav --phase waveglow --vocoder-checkpoint wg.pt
    """
    from speechvae.audio import load_audio, write_audio
    from speechvae.priors import load_prior
    from speechvae.synthesis import resynthesize as run

    options = {} if phase == "oracle" else _vocoder_options(phase, vocoder_checkpoint, seed)
    if phase == "oracle" and vocoder_checkpoint is not None:
        raise click.UsageError("--vocoder-checkpoint is only used with --phase waveglow")
    if output is None:
        output = input_path.with_name(f"{input_path.stem}_resynth.wav")
    _check_output(output, overwrite, (input_path,))
    set_threads(threads)
    prior = load_prior(prior_name)
    sr = prior.stft_config.sample_rate
    x, _ = load_audio(input_path, sr)
    t0 = time.perf_counter()
    y = run(x, sr, prior, phase=phase, vocoder_options=options)
    seconds = time.perf_counter() - t0
    write_audio(output, y, sr, overwrite=overwrite)
    summary = {"input": str(input_path), "output": str(output), "prior": prior_name,
               "phase": phase, "duration_s": round(y.size / sr, 4),
               "seconds": round(seconds, 3)}
    if as_json:
        print_json(summary)
    else:
        emit(f"{input_path} -> {output}  ({phase}, {y.size / sr:.2f} s, {seconds:.1f} s)")


@click.command(short_help="Generate speech-like audio by sampling a prior's latent.")
@_prior_option
@click.option("--duration", "duration_s", type=click.FloatRange(min=0.0, min_open=True),
              default=3.0, show_default=True, help="Duration in seconds.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("generated.wav"),
              show_default=True, help="Output file (.wav, .flac or .ogg).")
@click.option("--vocoder", type=click.Choice(VOCODERS), default="griffin-lim",
              show_default=True, help="Vocoder from the decoded power spectrogram.")
@_ckpt_option
@_with_common
def generate(prior_name, duration_s, output, vocoder, vocoder_checkpoint, seed, threads,
             overwrite, as_json):
    """Sample z ~ p(z) frame by frame, decode, and vocode to a waveform.

    For the frame-wise VAE the latent frames are iid N(0, I); the result is babble-like
    speech texture. The output (peak 0.5) is written atomically at the prior's rate.

    \b
    Examples:
      speechvae generate --duration 3 --seed 1 -o sample.wav
    """
    from speechvae.audio import write_audio
    from speechvae.priors import load_prior
    from speechvae.synthesis import generate as run

    options = _vocoder_options(vocoder, vocoder_checkpoint, seed)
    _check_output(output, overwrite)
    set_threads(threads)
    prior = load_prior(prior_name)
    sr = prior.stft_config.sample_rate
    t0 = time.perf_counter()
    y = run(prior, duration_s, seed=seed, vocoder=vocoder, vocoder_options=options)
    seconds = time.perf_counter() - t0
    write_audio(output, y, sr, overwrite=overwrite)
    summary = {"output": str(output), "prior": prior_name, "vocoder": vocoder,
               "seed": seed, "duration_s": round(y.size / sr, 4),
               "seconds": round(seconds, 3)}
    if as_json:
        print_json(summary)
    else:
        emit(f"generated {output}  ({y.size / sr:.2f} s, {vocoder}, seed {seed}, "
             f"{seconds:.1f} s)")
