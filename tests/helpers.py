"""Test helpers that read rollout files independently of the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def rollout_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.name.endswith((".jsonl", ".jsonl.zst")) and p.name.startswith("rollout-")
    )


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_bytes().split(b"\n"):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def thread_id_of(path: Path) -> str:
    first = json_lines(path)[0]
    payload = first.get("payload", first)
    return str(payload["id"])


# thread/list params that list every stored thread: archived or not, any
# provider, any source, with or without a first user message.
EVERY_THREAD: dict[str, Any] = {
    "archived": None,
    "model_providers": [],
    "source_kinds": [
        "cli",
        "vscode",
        "exec",
        "appServer",
        "subAgent",
        "unknown",
    ],
    "include_empty": True,
}
# The same without the archived filter, for callers that pass `archived=` themselves.
ANY_SOURCE: dict[str, Any] = {k: v for k, v in EVERY_THREAD.items() if k != "archived"}


def recorded(home: Path, method: str) -> list[dict[str, Any]]:
    """The real app-server's recorded requests and answers of `method` in a corpus home."""
    return [
        rec
        for rec in json_lines(home / "expected-app-server-with-state.jsonl")
        if rec["request"]["method"] == method
    ]


def recorded_reads(home: Path) -> dict[str, dict[str, Any]]:
    """Thread id -> the real app-server's `thread/read` Thread (with turns)."""
    return {
        rec["response"]["result"]["thread"]["id"]: rec["response"]["result"]["thread"]
        for rec in recorded(home, "thread/read")
    }
