"""Helpers the CLI tests share: run `gdas` in-process, and expect a one-line user error."""

from __future__ import annotations

from gdas.cli.main import main


def run_cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def expect_error(capsys, *argv: object, contains: str) -> str:
    """The command fails with exit 2 and a single 'gdas: error:' line naming `contains`, no traceback."""
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("gdas: error:") and len(err.splitlines()) == 1, err
    assert contains in err, err
    return err
