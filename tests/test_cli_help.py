"""Help text is tested output: every command has a summary, an example and option help,
and the README mentions it."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from galprof.cli import cli

README = (Path(__file__).parents[1] / "README.md").read_text()


def _commands(group, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


COMMANDS = list(_commands(cli))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_help(path, cmd):
    r = CliRunner().invoke(cli, list(path) + ["--help"])
    assert r.exit_code == 0, r.output
    assert cmd.help and cmd.help.strip().splitlines()[0], f"{path} has no summary"
    if not isinstance(cmd, click.Group):
        assert "Example" in cmd.help, f"{' '.join(path)} has no Example block"
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{' '.join(path)} {param.opts} has no help"
    assert f"galprof {' '.join(path)}" in README, f"README does not mention galprof {' '.join(path)}"
