"""The galprof command line: a thin click layer over the library.

Subcommands live one group per module and are imported only when used, so that
`galprof --help` and `galprof --version` stay fast (no numpy, no runtimes).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from galprof import __version__

# command name -> "module:attribute"
COMMANDS = {
    "scan": "galprof.cli.scan:scan",
    "show": "galprof.cli.show:show",
    "errors": "galprof.cli.errors:errors",
    "profile": "galprof.cli.profile:profile",
    "models": "galprof.cli.models:models",
    "benchmark": "galprof.cli.benchmark:benchmark",
    "people": "galprof.cli.people:people",
    "private": "galprof.cli.private:private",
    "serve": "galprof.cli.serve:serve",
    "report": "galprof.cli.report:report",
    "aggregate": "galprof.cli.aggregate:aggregate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def main(self, *args, **kwargs):
        """Like click's, except that usage errors exit with 1, as setup errors do: the exit
        statuses cron sees are 0 (all read), 1 (nothing done: fix the command or setup)
        and 3 (done, some files failed)."""
        kwargs["standalone_mode"] = False
        try:
            super().main(*args, **kwargs)
        except click.ClickException as e:
            e.show()
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted!", err=True)    # a scan keeps what it committed; run it again
            sys.exit(1)
        sys.exit(0)

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="galprof")
def cli():
    """Learn what you are interested in from your photos and videos, on this device.

    \b
    Example:
        galprof models install --from ~/Downloads/galprof-models
        galprof scan ~/DCIM
        galprof profile --json --out profile.json
    """


def main():
    cli()
