"""Builders of app-server v2 `ThreadItem` JSON from rollout payloads.

Every builder emits every key of its variant (nulls included), as Codex's
serde output does; key spelling follows the 0.169.0 schema (camelCase, except
`text_elements` and `move_path`, which Codex writes in snake_case).
"""

from __future__ import annotations

import re
from typing import Any

_REQUEST_MARKER = "## My request for Codex:"
_HOOK_PROMPT = re.compile(r'^<hook_prompt hook_run_id="([^"]+)">(.*)</hook_prompt>$', re.S)
_WRAPPER_PREFIXES = (
    "<user_instructions>",
    "<environment_context>",
    "# AGENTS.md instructions",
    "<INSTRUCTIONS>",
    "<user_shell_command>",
    "<turn_aborted>",
    "<subagent_notification>",
)

# -- small helpers ---------------------------------------------------------------


def _camel(s: str) -> str:
    head, *rest = s.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _duration_ms(d: Any) -> int | None:
    if isinstance(d, dict):
        secs = d.get("secs") or 0
        nanos = d.get("nanos") or 0
        if isinstance(secs, int) and isinstance(nanos, int):
            return secs * 1000 + nanos // 1_000_000
    if isinstance(d, int) and not isinstance(d, bool):
        return d
    return None


def message_text(payload: dict[str, Any]) -> str:
    """Text of a Responses API message: its text parts joined."""
    parts = payload.get("content")
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return ""
    out = []
    for part in parts:
        if isinstance(part, dict):
            t = part.get("text")
            if isinstance(t, str):
                out.append(t)
    return "".join(out)


def is_context_wrapper(text: str) -> bool:
    """True for user-role messages Codex injects (instructions, environment)."""
    s = text.lstrip()
    return not s or s.startswith(_WRAPPER_PREFIXES)


def preview_text(message: str) -> str:
    """Codex's list preview of a user message: drop its request prefix."""
    idx = message.find(_REQUEST_MARKER)
    if idx >= 0:
        message = message[idx + len(_REQUEST_MARKER) :]
    return message.strip()


def camel_error_info(info: Any) -> Any:
    """CodexErrorInfo on disk is snake_case; the wire uses camelCase."""
    if isinstance(info, str):
        return _camel(info)
    if isinstance(info, dict):
        return {
            _camel(k): camel_error_info(v) if isinstance(v, dict) else v for k, v in info.items()
        }
    return info


def turn_error(err: Any) -> dict[str, Any]:
    if isinstance(err, dict):
        message = err.get("message")
        info = err.get("codex_error_info", err.get("codexErrorInfo"))
        details = err.get("additional_details", err.get("additionalDetails"))
        return {
            "message": message if isinstance(message, str) else str(err),
            "codexErrorInfo": camel_error_info(info) if info is not None else None,
            "additionalDetails": details if isinstance(details, str) else None,
            "misalignment": err.get("misalignment"),
        }
    return {
        "message": str(err),
        "codexErrorInfo": None,
        "additionalDetails": None,
        "misalignment": None,
    }


# -- user input ------------------------------------------------------------------


def _text_elements(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return []
    out = []
    for el in value:
        if isinstance(el, dict):
            br = el.get("byte_range", el.get("byteRange"))
            if isinstance(br, dict):
                out.append(
                    {
                        "byteRange": {"start": br.get("start"), "end": br.get("end")},
                        "placeholder": el.get("placeholder"),
                    }
                )
                continue
        out.append(el)
    return out


def user_message_from_event(p: dict[str, Any], item_id: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    message = p.get("message")
    if isinstance(message, str) and message.strip():
        content.append(
            {
                "type": "text",
                "text": message,
                "text_elements": _text_elements(p.get("text_elements")),
            }
        )
    details = _list(p.get("image_details"))
    for i, url in enumerate(p.get("images") or []):
        content.append(
            {"type": "image", "url": url, "detail": details[i] if i < len(details) else None}
        )
    ldetails = _list(p.get("local_image_details"))
    for i, path in enumerate(p.get("local_images") or []):
        content.append(
            {
                "type": "localImage",
                "path": path,
                "detail": ldetails[i] if i < len(ldetails) else None,
            }
        )
    for url in p.get("audio") or []:
        content.append({"type": "audio", "url": url})
    for path in p.get("local_audio") or []:
        content.append({"type": "localAudio", "path": path})
    return {
        "type": "userMessage",
        "id": item_id,
        "clientId": _str_or_none(p.get("client_id")),
        "content": content,
    }


def user_message_from_text(text: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "userMessage",
        "id": item_id,
        "clientId": None,
        "content": [{"type": "text", "text": text, "text_elements": []}],
    }


def _memory_citation(mc: Any) -> Any:
    if not isinstance(mc, dict):
        return None
    out = dict(mc)
    if "rolloutIds" in out and "threadIds" not in out:
        out["threadIds"] = out.pop("rolloutIds")
    if "rollout_ids" in out and "threadIds" not in out:
        out["threadIds"] = out.pop("rollout_ids")
    return out


def agent_message_from_event(p: dict[str, Any], item_id: str) -> dict[str, Any]:
    return {
        "type": "agentMessage",
        "id": item_id,
        "text": p.get("message"),
        "phase": _str_or_none(p.get("phase")),
        "memoryCitation": _memory_citation(p.get("memory_citation")),
    }


def hook_prompt_item(payload: dict[str, Any]) -> dict[str, Any] | None:
    parts = payload.get("content")
    if not isinstance(parts, list) or not parts:
        return None
    fragments = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != "input_text":
            return None
        m = _HOOK_PROMPT.match(str(part.get("text", "")).strip())
        if m is None or not m.group(1).strip():
            return None
        fragments.append({"text": m.group(2), "hookRunId": m.group(1)})
    item_id = payload.get("id")
    return {
        "type": "hookPrompt",
        "id": item_id if isinstance(item_id, str) else "hook-prompt",
        "fragments": fragments,
    }


# -- tools -------------------------------------------------------------------------


def _file_changes(changes: Any) -> list[dict[str, Any]]:
    if not isinstance(changes, dict):
        return []
    out = []
    for path in sorted(changes):
        ch = changes[path]
        if not isinstance(ch, dict):
            continue
        kind = ch.get("type")
        if kind == "add":
            out.append({"path": path, "kind": {"type": "add"}, "diff": ch.get("content", "")})
        elif kind == "delete":
            out.append({"path": path, "kind": {"type": "delete"}, "diff": ch.get("content", "")})
        else:
            move = ch.get("move_path")
            diff = ch.get("unified_diff", "")
            if move:
                diff = f"{diff}\n\nMoved to: {move}"
            out.append({"path": path, "kind": {"type": "update", "move_path": move}, "diff": diff})
    return out


def _patch_status(p: dict[str, Any]) -> str:
    status = p.get("status")
    if status in ("completed", "failed", "declined", "inProgress"):
        return str(status)
    if status == "in_progress":
        return "inProgress"
    return "completed" if p.get("success", True) else "failed"


def file_change_from_event(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "fileChange",
        "id": p.get("call_id"),
        "changes": _file_changes(p.get("changes")),
        "status": _patch_status(p),
    }


def mcp_tool_call_from_event(p: dict[str, Any]) -> dict[str, Any]:
    inv = _dict(p.get("invocation"))
    result = p.get("result")
    out_result = None
    error = None
    status = "failed"
    if isinstance(result, dict) and "Ok" in result:
        ok = result["Ok"] if isinstance(result["Ok"], dict) else {}
        is_error = ok.get("isError", ok.get("is_error"))
        status = "failed" if is_error is True else "completed"
        out_result = {
            "content": ok.get("content", []),
            "structuredContent": ok.get("structuredContent", ok.get("structured_content")),
            "_meta": ok.get("_meta"),
        }
    elif isinstance(result, dict) and "Err" in result:
        error = {"message": str(result["Err"])}
    connector = p.get("connector_id")
    app_context = None
    if connector:
        app_context = {
            "connectorId": connector,
            "linkId": p.get("link_id"),
            "resourceUri": p.get("mcp_app_resource_uri"),
            "appName": p.get("app_name"),
            "actionName": p.get("action_name"),
        }
    data: dict[str, Any] = {
        "type": "mcpToolCall",
        "id": p.get("call_id"),
        "server": inv.get("server", ""),
        "tool": inv.get("tool", ""),
        "status": status,
        "arguments": inv.get("arguments"),
        "appContext": app_context,
        "pluginId": _str_or_none(p.get("plugin_id")),
        "readOnlyHint": p.get("read_only_hint")
        if isinstance(p.get("read_only_hint"), bool)
        else None,
        "result": out_result,
        "error": error,
        "durationMs": _duration_ms(p.get("duration")),
    }
    if p.get("mcp_app_resource_uri") is not None:
        data["mcpAppResourceUri"] = p.get("mcp_app_resource_uri")
    return data


def web_search_action(action: Any) -> Any:
    if not isinstance(action, dict):
        return None
    kind = action.get("type")
    if kind == "search":
        queries = action.get("queries")
        return {
            "type": "search",
            "query": action.get("query"),
            "queries": queries if isinstance(queries, list) else None,
        }
    if kind in ("open_page", "openPage"):
        return {"type": "openPage", "url": action.get("url")}
    if kind in ("find_in_page", "findInPage"):
        return {"type": "findInPage", "url": action.get("url"), "pattern": action.get("pattern")}
    return {"type": "other"}


def web_search_from_event(p: dict[str, Any]) -> dict[str, Any]:
    results = p.get("results")
    return {
        "type": "webSearch",
        "id": p.get("call_id"),
        "query": p.get("query", ""),
        "action": web_search_action(p.get("action")),
        "results": results if isinstance(results, list) else None,
    }


def image_generation_from_event(p: dict[str, Any]) -> dict[str, Any]:
    tb = p.get("transparent_background")
    return {
        "type": "imageGeneration",
        "id": p.get("call_id"),
        "status": p.get("status", ""),
        "revisedPrompt": _str_or_none(p.get("revised_prompt")),
        "result": p.get("result", ""),
        "transparentBackground": tb if isinstance(tb, bool) else None,
        "savedPath": _str_or_none(p.get("saved_path")),
    }


def sub_agent_activity_from_event(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "subAgentActivity",
        "id": p.get("event_id"),
        "kind": p.get("kind"),
        "agentThreadId": p.get("agent_thread_id"),
        "agentPath": p.get("agent_path"),
    }


def entered_review_item(p: dict[str, Any], item_id: str) -> dict[str, Any]:
    hint = p.get("user_facing_hint")
    return {
        "type": "enteredReviewMode",
        "id": item_id,
        "review": hint if isinstance(hint, str) and hint else "Review requested.",
    }


def render_review(output: Any) -> str:
    if not isinstance(output, dict):
        return "Reviewer failed to output a response."
    sections = []
    explanation = output.get("overall_explanation")
    if isinstance(explanation, str) and explanation.strip():
        sections.append(explanation.strip())
    findings = output.get("findings")
    if isinstance(findings, list) and findings:
        lines = ["Review comment:" if len(findings) == 1 else "Full review comments:"]
        for f in findings:
            if not isinstance(f, dict):
                continue
            loc = _dict(f.get("code_location"))
            rng = _dict(loc.get("line_range"))
            lines.append(
                f"- {f.get('title', '')} — {loc.get('absolute_file_path', '')}:"
                f"{rng.get('start', '')}-{rng.get('end', '')}"
            )
            for body_line in str(f.get("body", "")).splitlines():
                lines.append(f"  {body_line}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) if sections else "Reviewer failed to output a response."


def exited_review_item(p: dict[str, Any], item_id: str) -> dict[str, Any]:
    return {
        "type": "exitedReviewMode",
        "id": item_id,
        "review": render_review(p.get("review_output")),
    }


def plan_or_sleep_item(item: dict[str, Any]) -> dict[str, Any] | None:
    kind = item.get("type")
    if kind == "Plan":
        text = item.get("text")
        if isinstance(text, str) and text:
            return {"type": "plan", "id": item.get("id"), "text": text}
        return None
    if kind == "Sleep":
        return {
            "type": "sleep",
            "id": item.get("id"),
            "durationMs": _duration_ms(item.get("duration_ms", item.get("duration"))),
        }
    return None


# -- pre-envelope Responses API items ----------------------------------------------


def reasoning_summary(p: dict[str, Any]) -> list[str]:
    out = []
    for part in p.get("summary") or []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])
    return out


def command_from_call(p: dict[str, Any]) -> dict[str, Any] | None:
    """A shell call of a pre-envelope file as a `commandExecution` item."""
    call_id = p.get("call_id") or p.get("id")
    if not isinstance(call_id, str):
        return None
    argv: Any = None
    cwd = ""
    if p.get("type") == "local_shell_call":
        action = _dict(p.get("action"))
        argv = action.get("command")
        cwd = action.get("working_directory") or ""
    elif p.get("type") == "function_call" and p.get("name") in (
        "shell",
        "container.exec",
        "exec_command",
    ):
        from store.codec import JSONDecodeError, loads

        try:
            args = loads(p.get("arguments") or "{}")
        except JSONDecodeError:
            args = {}
        if isinstance(args, dict):
            argv = args.get("command", args.get("cmd"))
            cwd = args.get("workdir") or ""
    else:
        return None
    if isinstance(argv, list):
        command = " ".join(str(a) for a in argv)
    elif isinstance(argv, str):
        command = argv
    else:
        return None
    return {
        "type": "commandExecution",
        "id": call_id,
        "pluginId": None,
        "scriptPath": None,
        "command": command,
        "cwd": cwd,
        "processId": None,
        "source": "agent",
        "status": "inProgress",
        "commandActions": [{"type": "unknown", "command": command}],
        "aggregatedOutput": None,
        "exitCode": None,
        "durationMs": None,
    }


def apply_command_output(item: dict[str, Any], p: dict[str, Any]) -> None:
    output = p.get("output")
    text = None
    exit_code = None
    if isinstance(output, str):
        text = output
        from store.codec import JSONDecodeError, loads

        try:
            parsed = loads(output)
        except JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("output"), str):
            text = parsed["output"]
            meta = parsed.get("metadata")
            if isinstance(meta, dict):
                exit_code = _int_or_none(meta.get("exit_code"))
    elif isinstance(output, dict):
        text = output.get("content") if isinstance(output.get("content"), str) else None
    item["aggregatedOutput"] = text
    item["exitCode"] = exit_code
    item["status"] = "completed" if exit_code in (None, 0) else "failed"


# -- paginated item_completed items -----------------------------------------------


def _command_actions(parsed: Any, command: str, cwd: Any) -> list[dict[str, Any]]:
    if not isinstance(parsed, list):
        return [{"type": "unknown", "command": command}]
    out = []
    for a in parsed:
        if not isinstance(a, dict):
            continue
        kind = a.get("type")
        cmd = a.get("cmd", a.get("command", command))
        if kind == "read":
            path = a.get("path")
            if isinstance(path, str) and isinstance(cwd, str) and cwd and not path.startswith("/"):
                path = cwd.rstrip("/") + "/" + path
            out.append({"type": "read", "command": cmd, "name": a.get("name"), "path": path})
        elif kind in ("list_files", "listFiles"):
            out.append({"type": "listFiles", "command": cmd, "path": a.get("path")})
        elif kind == "search":
            out.append(
                {"type": "search", "command": cmd, "query": a.get("query"), "path": a.get("path")}
            )
        else:
            out.append({"type": "unknown", "command": cmd})
    return out


_UNQUOTED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-./:@]_")


_UNQ, _SQ, _DQ = 1, 2, 4


def _rust_shlex_quote(arg: str) -> str:
    """Quote one argument the way Rust's `shlex` 1.3 `try_join` does.

    Repeatedly takes the longest prefix that some style can hold whole and
    writes it in the first such style: bare, 'single' or "double" quotes.
    """
    if arg == "":
        return "''"
    data = arg.encode("utf-8")
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        ok = _SQ if data[i] == ord("^") else (_UNQ | _SQ | _DQ)
        j = i
        while j < n:
            c = data[j]
            cur = ok
            if c not in _UNQUOTED:
                cur &= ~_UNQ
            if c in b"'\\":
                cur &= ~_SQ
            if c in b"`$!^":
                cur &= ~_DQ
            if c == ord("^"):
                cur &= ~_UNQ
            if cur == 0:
                break
            ok = cur
            j += 1
        chunk = data[i:j].decode("utf-8", "surrogateescape")
        if ok & _UNQ:
            out.append(chunk)
        elif ok & _SQ:
            out.append("'" + chunk + "'")
        else:
            out.append('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"')
        i = j
    return "".join(out)


def shell_join(argv: list[Any]) -> str:
    args = [str(a) for a in argv]
    if any("\x00" in a for a in args):
        return " ".join(args)
    return " ".join(_rust_shlex_quote(a) for a in args)


def _display_command(command: Any) -> str:
    if isinstance(command, list):
        return shell_join(command)
    return str(command) if command is not None else ""


def _file_uri_to_path(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("file://"):
        from urllib.parse import unquote

        return unquote(value[len("file://") :])
    return value


def _enum(value: Any, default: str) -> str:
    return _camel(value) if isinstance(value, str) and value else default


def _user_input(part: dict[str, Any]) -> dict[str, Any]:
    ptype = part.get("type")
    if ptype == "text":
        return {
            "type": "text",
            "text": part.get("text", ""),
            "text_elements": _text_elements(part.get("text_elements")),
        }
    if ptype == "image":
        return {
            "type": "image",
            "url": part.get("image_url", part.get("url")),
            "detail": part.get("detail"),
        }
    if ptype in ("local_image", "localImage"):
        return {"type": "localImage", "path": part.get("path"), "detail": part.get("detail")}
    if ptype == "audio":
        return {"type": "audio", "url": part.get("audio_url", part.get("url"))}
    if ptype in ("local_audio", "localAudio"):
        return {"type": "localAudio", "path": part.get("path")}
    return dict(part)


def turn_item(item: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """A persisted `item_completed` turn item as a `ThreadItem`.

    Returns None for kinds Codex cannot decode (they are not shown).
    """
    kind = item.get("type")
    item_id = item.get("id")
    data: dict[str, Any] | None
    if kind == "UserMessage":
        content = [_user_input(p) for p in item.get("content") or [] if isinstance(p, dict)]
        data = {
            "type": "userMessage",
            "id": item_id,
            "clientId": _str_or_none(item.get("client_id")),
            "content": content,
        }
    elif kind == "AgentMessage":
        text = "".join(
            str(part.get("text", ""))
            for part in item.get("content") or []
            if isinstance(part, dict)
        )
        data = {
            "type": "agentMessage",
            "moderation": item.get("moderation"),
            "id": item_id,
            "text": text,
            "phase": _str_or_none(item.get("phase")),
            "memoryCitation": _memory_citation(item.get("memory_citation")),
            "delivery": item.get("delivery"),
            "questions": item.get("questions"),
        }
    elif kind == "Reasoning":
        data = {
            "type": "reasoning",
            "id": item_id,
            "summary": list(item.get("summary_text") or []),
            "content": list(item.get("raw_content") or []),
        }
    elif kind == "CommandExecution":
        command = _display_command(item.get("command"))
        cwd = _file_uri_to_path(item.get("cwd"))
        output = item.get("aggregated_output")
        data = {
            "type": "commandExecution",
            "id": item_id,
            "pluginId": _str_or_none(item.get("plugin_id")),
            "scriptPath": _str_or_none(item.get("script_path")),
            "command": command,
            "cwd": cwd,
            "processId": _str_or_none(item.get("process_id")),
            "source": _enum(item.get("source"), "agent"),
            "status": _enum(item.get("status"), "inProgress"),
            "commandActions": _command_actions(item.get("parsed_cmd"), command, cwd),
            "aggregatedOutput": output if isinstance(output, str) and output else None,
            "exitCode": _int_or_none(item.get("exit_code")),
            "durationMs": _duration_ms(item.get("duration")),
        }
    elif kind == "FileChange":
        data = {
            "type": "fileChange",
            "id": item_id,
            "changes": _file_changes(item.get("changes")),
            "status": _enum(item.get("status"), "inProgress"),
        }
    elif kind == "WebSearch":
        data = {
            "type": "webSearch",
            "id": item_id,
            "query": item.get("query", ""),
            "action": web_search_action(item.get("action")),
            "results": item.get("results") if isinstance(item.get("results"), list) else None,
        }
    elif kind == "ContextCompaction":
        data = {"type": "contextCompaction", "id": item_id}
    elif kind == "Plan":
        data = {"type": "plan", "id": item_id, "text": str(item.get("text") or "")}
    elif kind == "Sleep" or (kind == "Extension" and item.get("kind") == "clock.sleep"):
        data = {
            "type": "sleep",
            "id": item_id,
            "durationMs": _duration_ms(item.get("duration_ms", item.get("durationMs"))),
        }
    elif kind == "McpToolCall":
        connector = item.get("connectorId")
        result = item.get("result")
        data = {
            "type": "mcpToolCall",
            "id": item_id,
            "server": item.get("server", ""),
            "tool": item.get("tool", ""),
            "status": _enum(item.get("status"), "inProgress"),
            "arguments": item.get("arguments"),
            "appContext": {
                "connectorId": connector,
                "linkId": item.get("linkId"),
                "resourceUri": item.get("mcpAppResourceUri"),
                "appName": item.get("appName"),
                "actionName": item.get("actionName"),
            }
            if connector
            else None,
        }
        if item.get("mcpAppResourceUri") is not None:
            data["mcpAppResourceUri"] = item["mcpAppResourceUri"]
        data |= {
            "mcpAppUi": None,
            "pluginId": _str_or_none(item.get("pluginId")),
            "readOnlyHint": item.get("readOnlyHint"),
            "result": {
                "content": result.get("content", []),
                "structuredContent": result.get("structuredContent"),
                "_meta": result.get("_meta"),
            }
            if isinstance(result, dict)
            else None,
            "error": item.get("error") if isinstance(item.get("error"), dict) else None,
            "durationMs": _duration_ms(item.get("duration")),
        }
    elif kind == "DynamicToolCall":
        items = item.get("content_items")
        data = {
            "type": "dynamicToolCall",
            "id": item_id,
            "namespace": item.get("namespace"),
            "tool": item.get("tool", ""),
            "arguments": item.get("arguments"),
            "status": _enum(item.get("status"), "inProgress"),
            "contentItems": [
                {
                    _camel(k): (_camel(v) if k == "type" and isinstance(v, str) else v)
                    for k, v in ci.items()
                }
                for ci in items
                if isinstance(ci, dict)
            ]
            if isinstance(items, list)
            else None,
            "success": item.get("success"),
            "durationMs": _duration_ms(item.get("duration")),
        }
    elif kind == "CollabAgentToolCall":
        states = item.get("agents_states")
        data = {
            "type": "collabAgentToolCall",
            "id": item_id,
            "tool": _enum(item.get("tool"), "spawnAgent"),
            "status": _enum(item.get("status"), "inProgress"),
            "senderThreadId": item.get("sender_thread_id"),
            "receiverThreadIds": list(item.get("receiver_thread_ids") or []),
            "prompt": item.get("prompt"),
            "model": item.get("model"),
            "reasoningEffort": item.get("reasoning_effort"),
            "agentsStates": states if isinstance(states, dict) else {},
        }
    elif kind == "SubAgentActivity":
        data = {
            "type": "subAgentActivity",
            "id": item_id,
            "kind": item.get("kind"),
            "agentThreadId": item.get("agent_thread_id"),
            "agentPath": item.get("agent_path"),
            "model": None,
            "reasoningEffort": None,
        }
    elif kind == "ImageView":
        data = {"type": "imageView", "id": item_id, "path": _file_uri_to_path(item.get("path"))}
    elif kind == "ImageGeneration":
        data = {
            "type": "imageGeneration",
            "id": item_id,
            "status": item.get("status", ""),
            "revisedPrompt": _str_or_none(item.get("revised_prompt")),
            "savedPath": _str_or_none(item.get("saved_path")),
            "transparentBackground": None,
            "failure": None,
            "generationId": None,
        }
    elif kind == "HookPrompt":
        data = {"type": "hookPrompt", "id": item_id, "fragments": list(item.get("fragments") or [])}
    elif kind == "EnteredReviewMode":
        hint = item.get("user_facing_hint")
        data = {
            "type": "enteredReviewMode",
            "id": item_id,
            "review": hint if isinstance(hint, str) else "",
        }
    elif kind == "ExitedReviewMode":
        data = {
            "type": "exitedReviewMode",
            "id": item_id,
            "review": render_review(item.get("review_output")),
        }
    elif kind == "FunctionCallOutput":
        data = {
            "type": "functionCallOutput",
            "id": item_id,
            "name": item.get("name", ""),
            "namespace": item.get("namespace"),
            "output": item.get("output"),
        }
    else:
        return None
    started = _int_or_none(event.get("started_at_ms"))
    completed = _int_or_none(event.get("completed_at_ms"))
    data["startedAtMs"] = started
    data["completedAtMs"] = completed or None
    return data
