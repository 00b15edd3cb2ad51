"""Stored rows -> app-server v2 wire objects (`Thread`, `Turn`), Codex 0.169 key order."""

from __future__ import annotations

from typing import Any

from store import codec


def _secs(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def git_info(row: dict[str, Any]) -> dict[str, Any] | None:
    sha, branch, origin = row["git_sha"], row["git_branch"], row["git_origin_url"]
    if sha is None and branch is None and origin is None:
        return None
    return {"sha": sha, "branch": branch, "originUrl": origin}


def display_path(path: str | None) -> str | None:
    """Codex shows a compressed rollout under its plain `.jsonl` name."""
    if path is not None and path.endswith(".jsonl.zst"):
        return path[: -len(".zst")]
    return path


def thread_json(
    row: dict[str, Any],
    *,
    name: str | None,
    path: str | None,
    default_provider: str,
    turns: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    preview = row["preview"]
    if name is not None and row["history_mode"] != "paginated" and name.strip() == preview.strip():
        # Codex reports a legacy thread's name as null when it equals the preview.
        name = None
    return {
        "id": row["id"],
        "environments": None,
        "extra": None,
        "sessionId": row["session_id"] or row["id"],
        "forkedFromId": row["forked_from_id"],
        "attachedToThreadId": None,
        "parentThreadId": row["parent_thread_id"],
        "preview": preview,
        "ephemeral": False,
        "section": None,
        "sectionEnteredAt": None,
        "projectId": None,
        "historyMode": row["history_mode"] if row["history_mode"] == "paginated" else "legacy",
        "modelProvider": row["model_provider"] or default_provider,
        "model": row["model"],
        "reasoningEffort": row["reasoning_effort"],
        "createdAt": _secs(row["created_at_ms"]),
        "updatedAt": _secs(row["updated_at_ms"]),
        "recencyAt": _secs(row["recency_at_ms"]),
        "status": {"type": "notLoaded"},
        "path": display_path(path),
        "cwd": row["cwd"],
        "cliVersion": row["cli_version"],
        "originator": row["originator"],
        "source": codec.loads(row["source"]),
        "canAcceptDirectInput": None,
        "threadSource": row["thread_source"],
        "agentNickname": row["agent_nickname"],
        "agentRole": row["agent_role"],
        "gitInfo": git_info(row),
        "name": name,
        "daybreakEnabled": None,
        "turns": turns if turns is not None else [],
    }


def turn_json(row: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    status = row["status"]
    if status == "inProgress":
        # Stored threads are never running: Codex reports open turns as interrupted.
        status = "interrupted"
    return {
        "id": row["turn_id"],
        "rootTurnId": row["root_turn_id"],
        "items": items,
        "itemsView": "full",
        "status": status,
        "error": codec.loads(row["error"]) if row["error"] else None,
        "startedAt": row["started_at"],
        "completedAt": row["completed_at"],
        "durationMs": row["duration_ms"],
    }


def session_response(thread: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The response shared by thread/start, thread/resume and thread/fork.

    `settings` holds what the rollout's last `turn_context` says
    (store.sql.mutations.session_settings); missing keys take Codex's defaults.
    """
    return {
        "thread": thread,
        "model": settings.get("model") or thread["model"] or "",
        "modelProvider": thread["modelProvider"],
        "serviceTier": None,
        "cwd": thread["cwd"],
        "instructionSources": [],
        "approvalPolicy": settings.get("approvalPolicy", "on-request"),
        "approvalsReviewer": settings.get("approvalsReviewer", "user"),
        "sandbox": settings.get("sandbox", {"type": "readOnly"}),
        "reasoningEffort": settings.get("reasoningEffort") or thread["reasoningEffort"],
    }
