"""Where things are: CODEX_HOME, the database URL, Codex's default provider."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from store.codex_home import codex_home_from_env
from store.sql.engine import default_sqlite_url


def codex_home(value: str | os.PathLike[str] | None = None) -> Path:
    return Path(value).expanduser() if value else codex_home_from_env()


def database_url(url: str | None = None, home: Path | None = None) -> str:
    """`url`, else ROLLOUTS_DB, else a SQLite file inside CODEX_HOME."""
    return url or os.environ.get("ROLLOUTS_DB") or default_sqlite_url(home or codex_home())


def default_provider(home: Path) -> str:
    """Codex's default model provider: `model_provider` in config.toml, else openai."""
    try:
        with open(home / "config.toml", "rb") as fh:
            value = tomllib.load(fh).get("model_provider")
    except (OSError, tomllib.TOMLDecodeError):
        return "openai"
    return value if isinstance(value, str) and value else "openai"
