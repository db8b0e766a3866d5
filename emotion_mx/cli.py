"""Shared CLI plumbing: one-line errors, logging, config loading at the boundary."""
import logging
import os
import sys

import click

from .errors import EmotionMXError


def run_cli(command):
    """Run a click command; an EmotionMXError becomes one ``error: ...`` line and exit code 2."""
    logging.basicConfig(level=os.environ.get("EMOTION_MX_LOG", "INFO"),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        command(standalone_mode=False)
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
