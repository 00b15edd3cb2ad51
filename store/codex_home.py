"""CODEX_HOME layout: where rollouts live and how import paths map to roots.

A *root* is the folder a file's stored path is relative to: a CODEX_HOME
(`sessions/`, `archived_sessions/`, `session_index.jsonl`) or, for a plain
folder of rollouts, that folder. Discovery never follows a link or a path that
leads outside its root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from store.errors import InvalidInput
from store.rollout.naming import is_rollout_file

SESSIONS = "sessions"
ARCHIVED = "archived_sessions"
SESSION_INDEX = "session_index.jsonl"


def codex_home_from_env() -> Path:
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()


def looks_like_codex_home(path: Path) -> bool:
    return (
        (path / SESSIONS).is_dir() or (path / ARCHIVED).is_dir() or (path / SESSION_INDEX).is_file()
    )


@dataclass
class RootScan:
    """What one import path contributes."""

    root: Path  # resolved absolute path
    files: list[Path] = field(default_factory=list)  # absolute, inside root
    index_file: Path | None = None
    # True when the whole root (or a whole subfolder) was walked, so a known
    # file that was not seen is really gone.
    complete: bool = False
    prefixes: tuple[str, ...] = ()  # rel-path prefixes that were walked completely
    outside: list[str] = field(default_factory=list)  # entries refused (links out of the root)


def rel_path(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def is_archived_rel(rel: str) -> bool:
    return rel.startswith(ARCHIVED + "/")


def _walk(root: Path, start: Path, scan: RootScan) -> Iterator[Path]:
    """Rollout files below `start`, without following links out of `root`."""
    stack = [start]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                target = Path(os.path.realpath(entry.path))
                if not target.is_relative_to(root):
                    scan.outside.append(entry.path)
                    continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file() and is_rollout_file(entry.name):
                yield Path(entry.path)


def find_home_of(path: Path) -> Path | None:
    """The CODEX_HOME a file or folder lies in, if any."""
    for parent in path.parents:
        if parent.name in (SESSIONS, ARCHIVED) and looks_like_codex_home(parent.parent):
            return parent.parent
    return None


def scan_path(path: Path) -> RootScan:
    """Map one import argument to its root and files."""
    if not path.exists():
        raise InvalidInput(f"no such file or folder: {path}")
    path = Path(os.path.realpath(path))
    if path.is_file():
        home = find_home_of(path)
        root = home if home is not None else path.parent
        if not is_rollout_file(path.name):
            raise InvalidInput(f"not a rollout file (expected *.jsonl or *.jsonl.zst): {path}")
        return RootScan(root=root, files=[path])
    if looks_like_codex_home(path):
        scan = RootScan(root=path, complete=True, prefixes=(SESSIONS + "/", ARCHIVED + "/"))
        for sub in (SESSIONS, ARCHIVED):
            folder = path / sub
            if folder.is_symlink() and not Path(os.path.realpath(folder)).is_relative_to(path):
                # Same rule as inside the walk (and as export): import the
                # link's target as its own folder instead.
                scan.outside.append(str(folder))
            elif folder.is_dir():
                scan.files.extend(_walk(path, folder, scan))
        if (path / SESSION_INDEX).is_file():
            scan.index_file = path / SESSION_INDEX
        return scan
    home = find_home_of(path / "x")
    if home is not None:
        prefix = rel_path(home, path) + "/"
        scan = RootScan(root=home, complete=False, prefixes=(prefix,))
        scan.files.extend(_walk(home, path, scan))
        return scan
    scan = RootScan(root=path, complete=True, prefixes=("",))
    scan.files.extend(_walk(path, path, scan))
    return scan
