"""Running the real `rollouts` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(home: Path, db_url: str) -> dict[str, str]:
    """The environment of a user with CODEX_HOME and ROLLOUTS_DB set, and this tree importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["CODEX_HOME"] = str(home)
    env["ROLLOUTS_DB"] = db_url
    env["COLUMNS"] = "80"
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def rollouts(
    home: Path, db_url: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `rollouts ARGS...` to completion and return what it printed."""
    return subprocess.run(
        cli_argv(*args),
        env=cli_env(home, db_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, a one-line `error:` message on stderr naming `needles`, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
