"""Shared CLI plumbing: one-line errors, logging, and the ``emotion-mx`` command group.

Every command lives in :mod:`emotion_mx.commands` (one module per verb); ``tools/*.py`` and the
``emotion-mx`` console script (``python -m emotion_mx``) run the same click objects through
:func:`run_cli`.
"""
import importlib
import logging
import os
import sys

import click

from . import __version__
from .commands import COMMANDS
from .errors import EmotionMXError
from .optional import MissingExtra, install_hint

__all__ = ["run_cli", "main", "entry", "SET_HELP"]

SET_HELP = ("Override one config value: dotted key = YAML value, e.g. --set optim.lr=1e-4 "
            "--set data.modalities=[audio,text]; repeatable; checked like the file.")


def run_cli(command, args=None, prog_name=None):
    """Run a click command; an EmotionMXError becomes one ``error: ...`` line and exit code 2."""
    logging.basicConfig(level=os.environ.get("EMOTION_MX_LOG", "INFO"),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        command(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except EmotionMXError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        # the environment, not the code: disk full, read-only or permission denied → one line
        from .fileio import ENVIRONMENT_ERRNOS, os_reason
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        click.echo(f"error: {os_reason(e)}{where}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


def _unavailable(verb, extra, reason):
    """Stand-in for a verb whose module or optional dependency is missing: one line, exit 2."""

    @click.command(name=verb, add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.pass_context
    def stub(ctx):
        raise MissingExtra(f"'emotion-mx {verb}' is not available in this installation ({reason}); "
                           f"install it with {install_hint(extra)}", extra)

    stub.short_help = COMMANDS[verb].help
    return stub


class LazyGroup(click.Group):
    """A click group whose verbs (:data:`emotion_mx.commands.COMMANDS`) are imported on use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        verb = COMMANDS.get(name)
        if verb is None:
            return None
        module, attr = verb.target.split(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except MissingExtra as e:
            return _unavailable(name, e.extra, str(e).split(";")[0])
        except ImportError as e:
            if verb.extra is None:
                raise
            missing = getattr(e, "name", None) or str(e)
            return _unavailable(name, verb.extra, f"cannot import {missing}")
        return command

    def format_commands(self, ctx, formatter):
        # one-line help from the registry: listing the verbs imports none of them
        rows = [(name, verb.help + (f" [{verb.extra}]" if verb.extra else "")) for name, verb in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(name="emotion-mx", cls=LazyGroup)
@click.version_option(__version__, prog_name="emotion_mx")
def main():
    """Multimodal (speech, text, face) emotion recognition on Apache MXNet 1.9 / Gluon.

    One verb per job; `emotion-mx VERB --help` for its options.  Config files named
    configs/... are found in the installed package when they are not in the current folder.
    A verb marked [extra] needs `pip install 'emotion_mx[extra]'`.
    """


def entry():
    """Console script ``emotion-mx`` (and ``python -m emotion_mx``)."""
    prog = "python -m emotion_mx" if os.path.basename(sys.argv[0]) == "__main__.py" else None
    run_cli(main, prog_name=prog)
