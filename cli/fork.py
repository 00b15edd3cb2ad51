"""`rollouts fork`, and the lineage lines of `rollouts show --lineage`.

Registered on the main app by cli.main through `register`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli.common import DbOpt, HomeOpt, JsonOpt, cli_store, print_json


def fork_command(
    thread_id: Annotated[str, typer.Argument(help="Thread id (UUID) to fork.")],
    at_turn: Annotated[
        str | None,
        typer.Option("--at-turn", help="Keep the history up to and including this turn id."),
    ] = None,
    db: DbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fork a thread into a new rollout under CODEX_HOME that Codex can resume.

    Prints `{"thread": Thread, "path": "<new rollout file>"}` with --json.
    """
    with cli_store(db, home) as st:
        thread = st.fork(thread_id, last_turn_id=at_turn)
    if as_json:
        print_json({"thread": thread, "path": thread["path"]})
        return
    point = f" at turn {at_turn}" if at_turn else ""
    sys.stdout.write(
        f"forked {thread['forkedFromId']}{point} -> {thread['id']}  {thread['path']}\n"
    )


def lineage_lines(lineage: dict[str, Any]) -> list[str]:
    """The fork tree around a thread, one thread a line, sources first."""
    out: list[str] = []
    if lineage["missingAncestorId"]:
        out.append(f"{lineage['missingAncestorId']}  (not in the store)")
    chain = [*reversed(lineage["ancestors"]), lineage["thread"]]
    for depth, t in enumerate(chain):
        mark = "  <- this thread" if t is lineage["thread"] else ""
        out.append(f"{'  ' * depth}{_label(t)}{mark}")
    depth_of = {lineage["thread"]["id"]: len(chain) - 1}
    children: dict[str, list[dict[str, Any]]] = {}
    for t in lineage["descendants"]:
        children.setdefault(t["forkedFromId"], []).append(t)

    def walk(parent: str) -> None:
        for t in children.get(parent, []):
            depth_of[t["id"]] = depth_of[parent] + 1
            out.append(f"{'  ' * depth_of[t['id']]}{_label(t)}")
            walk(t["id"])

    walk(lineage["thread"]["id"])
    return out


def _label(t: dict[str, Any]) -> str:
    title = t["name"] or (t["preview"].splitlines()[0][:60] if t["preview"] else "")
    return f"{t['id']}  {title}".rstrip()


def register(app: typer.Typer) -> None:
    app.command("fork")(fork_command)
