"""The ``speechvae`` command group: error and warning handling shared by every command."""
from __future__ import annotations

import copy
import sys

import click

from ._common import (
    CLIError,
    debug_enabled,
    emit,
    exception_message,
    expected_errors,
    one_line,
    one_line_warnings,
)

#: click >= 8.2 raises this (a UsageError whose message is the help) for no_args_is_help
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SpeechVAEGroup(click.Group):
    """A click group whose failures are one line each.

    * Expected library exceptions (``AudioError``, ``CheckpointError``, other ``ValueError``,
      ``KeyError``, ``OSError`` such as ``FileExistsError``) become ``error: <message>`` on
      stderr with exit code 1, without a traceback (set ``SPEECHVAE_DEBUG=1`` to get it).
    * Usage errors (bad options) become one ``error:`` line too, exit code 2.
    * Warnings (e.g. ``speechvae.audio.AudioWarning`` for downmixing, resampling and
      clipping) are printed as one ``warning: <message>`` line each.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # outputs in progress were removed by the library
            exc = CLIError("interrupted")
            exc.exit_code = 130
            raise exc from None
        except expected_errors() as exc:
            if debug_enabled():
                raise
            raise CLIError(exception_message(exc)) from exc

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if prog_name is None:
            prog_name = "speechvae"
        if not standalone_mode:  # embedding: the caller handles exceptions
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            with one_line_warnings():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  **extra)
        except (CLIError, _NO_ARGS_IS_HELP) as exc:  # the latter shows the command's help
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # usage errors: one line plus where to look
            message = one_line(exc.format_message())
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            emit(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:  # Ctrl-C: click turns KeyboardInterrupt into Abort
            emit("error: interrupted", err=True)
            sys.exit(130)
        # ``rv`` is the exit code when a command (or --help) called ctx.exit()
        sys.exit(rv if isinstance(rv, int) else 0)


def _version() -> str:
    from speechvae import __version__

    return __version__


@click.group(cls=SpeechVAEGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(_version(), "-V", "--version", prog_name="speechvae")
def cli():
    """Unsupervised speech enhancement with variational-autoencoder speech priors.

    Every failure is reported as one 'error: ...' line on stderr with a non-zero exit code;
    set SPEECHVAE_DEBUG=1 to get a traceback instead.
    """


def _register() -> None:
    from .edit import edit_formant, learn_subspaces, shift_f0, whisper
    from .enhance import enhance
    from .evaluate import evaluate
    from .mix import mix
    from .priors import priors
    from .score import score
    from .synthesis import generate, resynthesize
    from .train import train

    for command in (enhance, score, train, priors, mix, evaluate, resynthesize, generate,
                    shift_f0, edit_formant, whisper, learn_subspaces):
        cli.add_command(command)
    alias = copy.copy(priors)  # same command, hidden from the listing
    alias.hidden = True
    cli.add_command(alias, name="list-priors")


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``speechvae`` console script and of ``python -m speechvae``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    cli.main(args=argv, prog_name="speechvae")
