"""Rollout records -> `Turn`s and `ThreadItem`s in the app-server v2 shapes.

One reducer, three input dialects, chosen per thread:
- `legacy`: envelope files whose display history is in `event_msg` lines
  (user_message, agent_message, ...). Follows Codex's legacy replay exactly
  (docs/thread-history-mapping.md in ../shared): the persistence filter, the
  implicit/explicit turn rules, `item-<n>` ids, rollbacks.
- `paginated`: files with `history_mode: "paginated"`, whose items are persisted
  as `item_completed` events carrying typed turn items
  (docs/paginated-mapping.md).
- `responses`: pre-envelope files (2025), which have no events at all. Codex
  cannot read them any more; we build turns from the Responses API items so the
  history is not lost.

The reducer is a plain object that can be pickled, so a file that grows is
reduced further from where it stopped (see `store.ingest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.rollout import items as conv
from store.rollout.records import (
    COMPACTED,
    EVENT_MSG,
    RESPONSE_ITEM,
    SESSION_META,
    TURN_CONTEXT,
    Record,
)

LEGACY = "legacy"
PAGINATED = "paginated"
RESPONSES = "responses"
# Status of a paginated turn that items name before any lifecycle record does.
PENDING = "pending"

# Record kinds Codex persists and decodes (anything else is dropped on replay
# and does not count as a position for synthetic `rollout-<k>` turn ids).
_KNOWN_KINDS = frozenset(
    {
        SESSION_META,
        RESPONSE_ITEM,
        EVENT_MSG,
        TURN_CONTEXT,
        COMPACTED,
        "world_state",
        "inter_agent_communication",
        "inter_agent_communication_metadata",
        "token_usage_record",
        "retained_context",
        "security_risk_score",
        "realtime_item",
    }
)
# Response items kept by the legacy persistence policy.
_PERSISTED_RESPONSE_ITEMS = frozenset(
    {
        "message",
        "agent_message",
        "reasoning",
        "local_shell_call",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "tool_search_call",
        "tool_search_output",
        "web_search_call",
        "image_generation_call",
        "compaction",
        "context_compaction",
    }
)
# event_msg kinds that survive the legacy filter, with the fields serde requires.
_LEGACY_EVENTS: dict[str, tuple[str, ...]] = {
    "token_count": (),
    "thread_goal_updated": (),
    "thread_rolled_back": ("num_turns",),
    "turn_aborted": (),
    "task_started": ("turn_id",),
    "turn_started": ("turn_id",),
    "task_complete": ("turn_id",),
    "turn_complete": ("turn_id",),
    "thread_settings_applied": (),
    "user_message": ("message",),
    "agent_message": ("message",),
    "agent_reasoning": ("text",),
    "agent_reasoning_raw_content": ("text",),
    "entered_review_mode": (),
    "exited_review_mode": (),
    "patch_apply_end": ("call_id",),
    "context_compacted": (),
    "mcp_tool_call_end": ("call_id",),
    "web_search_end": ("call_id",),
    "image_generation_end": ("call_id",),
    "sub_agent_activity": ("event_id",),
    "item_completed": ("item",),
}


@dataclass(slots=True)
class ItemState:
    data: dict[str, Any]
    line: int  # source line (physical line number in the thread's history)
    ts: str | int | None  # line timestamp (write time); Unix ms when reloaded from the DB


@dataclass(slots=True)
class TurnState:
    id: str
    status: str
    explicit: bool
    items: list[ItemState] = field(default_factory=list)
    error: dict[str, Any] | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None
    root_turn_id: str | None = None
    saw_compaction: bool = False
    first_line: int = 0
    last_line: int = 0

    def to_json(self, *, running: bool = False) -> dict[str, Any]:
        status = self.status
        if status == "inProgress" and not running:
            status = "interrupted"
        return {
            "id": self.id,
            "rootTurnId": self.root_turn_id,
            "items": [it.data for it in self.items],
            "itemsView": "full",
            "status": status,
            "error": self.error,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "durationMs": self.duration_ms,
        }


def _secs(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


class HistoryReducer:
    """Feeds records in file order; `turns` holds the result so far."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.turns: list[TurnState] = []
        self.current: TurnState | None = None
        self.next_item = 1
        self.position = 0  # k: count of surviving records
        # Lowest index in `turns` changed since the reducer was loaded (ingest
        # rewrites the stored turns from there).
        self.dirty_from = 0
        # _turn_index: turn id -> index in `turns`, for its first `_indexed` turns.
        self._ids: dict[str, int] = {}
        self._indexed = 0
        self._indexed_last: TurnState | None = None

    # -- bookkeeping ------------------------------------------------------------

    def _touch(self, index: int) -> None:
        if index < self.dirty_from:
            self.dirty_from = index

    def all_turns(self) -> list[TurnState]:
        return [*self.turns, self.current] if self.current is not None else list(self.turns)

    def _finish_current(self) -> None:
        cur = self.current
        if cur is None:
            return
        self.current = None
        if not cur.items and not cur.explicit and not cur.saw_compaction:
            return
        self._touch(len(self.turns))
        self.turns.append(cur)

    def _open_implicit(self, rec: Record, turn_id: str | None = None) -> TurnState:
        turn = TurnState(
            id=turn_id or f"rollout-{self.position}",
            status="completed",
            explicit=False,
            first_line=rec.line,
            last_line=rec.line,
        )
        self.current = turn
        return turn

    def _ensure_current(self, rec: Record) -> TurnState:
        if self.current is None:
            return self._open_implicit(rec)
        return self.current

    def _find_turn(self, turn_id: str | None) -> tuple[int, TurnState] | None:
        """Current (index = len(turns)) or finished turn with that id."""
        if not turn_id:
            return None
        if self.current is not None and self.current.id == turn_id:
            return len(self.turns), self.current
        i = self._turn_index(turn_id)
        return None if i is None else (i, self.turns[i])

    def _turn_index(self, turn_id: str) -> int | None:
        """Index of the last finished turn with that id, from an index kept in step.

        `turns` only ever grows at the end or loses its tail (rollback), also
        from outside (rows.py restores it): new turns are indexed as they are
        seen, and a shrunk or replaced tail rebuilds the index. A linear
        search here made long threads quadratic (every new turn id is a miss).
        """
        turns = self.turns
        done = self._indexed
        if done > len(turns) or (done and turns[done - 1] is not self._indexed_last):
            self._ids.clear()
            done = 0
        for j in range(done, len(turns)):
            self._ids[turns[j].id] = j
        self._indexed = len(turns)
        self._indexed_last = turns[-1] if turns else None
        return self._ids.get(turn_id)

    def _push(self, turn: TurnState, data: dict[str, Any], rec: Record) -> None:
        turn.items.append(ItemState(data, rec.line, rec.timestamp))
        turn.last_line = rec.line

    def _new_id(self) -> str:
        n = self.next_item
        self.next_item += 1
        return f"item-{n}"

    def _upsert(self, index: int, turn: TurnState, data: dict[str, Any], rec: Record) -> None:
        self._touch(index)
        item_id = data.get("id")
        for i, existing in enumerate(turn.items):
            if existing.data.get("id") == item_id:
                turn.items[i] = ItemState(data, existing.line, existing.ts)
                turn.last_line = rec.line
                return
        self._push(turn, data, rec)

    def _upsert_current(self, data: dict[str, Any], rec: Record) -> None:
        turn = self._ensure_current(rec)
        self._upsert(len(self.turns), turn, data, rec)

    # -- entry point ------------------------------------------------------------

    def feed(self, rec: Record) -> None:
        kind = rec.kind
        if self.mode == RESPONSES:
            self._feed_responses(rec)
            return
        if kind not in _KNOWN_KINDS:
            return
        if self.mode == PAGINATED and kind != EVENT_MSG:
            # Paginated history is only lifecycle events and item_completed.
            self.position += 1
            return
        if kind == RESPONSE_ITEM:
            ptype = rec.payload.get("type")
            if ptype not in _PERSISTED_RESPONSE_ITEMS:
                return
            self.position += 1
            if ptype == "message" and rec.payload.get("role") == "user":
                hook = conv.hook_prompt_item(rec.payload)
                if hook is not None:
                    turn = self._ensure_current(rec)
                    self._touch(len(self.turns))
                    self._push(turn, hook, rec)
            return
        if kind == EVENT_MSG:
            etype = rec.payload.get("type")
            required = _LEGACY_EVENTS.get(etype) if isinstance(etype, str) else None
            if required is None:
                return
            payload = rec.payload
            for f in required:
                if payload.get(f) is None:
                    return
            if self.mode == PAGINATED:
                self._event_paginated(etype, rec)  # type: ignore[arg-type]
            else:
                self._event_legacy(etype, rec)  # type: ignore[arg-type]
            self.position += 1
            return
        if kind == COMPACTED:
            turn = self._ensure_current(rec)
            turn.saw_compaction = True
            turn.last_line = rec.line
        self.position += 1

    def huge_line(self, kind: str | None, rec: Record) -> None:
        """A line too long to parse; only its kind is known."""
        if kind == COMPACTED and self.mode == LEGACY:
            turn = self._ensure_current(rec)
            turn.saw_compaction = True
        if kind in _KNOWN_KINDS:
            self.position += 1

    # -- shared turn lifecycle ----------------------------------------------------

    def _task_started(self, p: dict[str, Any], rec: Record) -> None:
        self._finish_current()
        turn_id = str(p["turn_id"])
        attribution = p.get("turn_attribution")
        root = p.get("root_turn_id")
        if root is None and isinstance(attribution, dict):
            root = attribution.get("root_turn_id")
        self.current = TurnState(
            id=turn_id,
            status="inProgress",
            explicit=True,
            started_at=_secs(p.get("started_at")),
            root_turn_id=root if isinstance(root, str) else None,
            first_line=rec.line,
            last_line=rec.line,
        )

    def _task_complete(self, p: dict[str, Any], rec: Record) -> None:
        turn_id = p.get("turn_id")
        found = self._find_turn(turn_id if isinstance(turn_id, str) else None)
        if found is None:
            if self.current is None:
                return
            found = (len(self.turns), self.current)
        index, turn = found
        self._touch(index)
        err = p.get("error")
        if err is not None:
            turn.status = "failed"
            turn.error = conv.turn_error(err)
        elif turn.status in ("completed", "inProgress"):
            turn.status = "completed"
        turn.completed_at = _secs(p.get("completed_at"))
        turn.duration_ms = _int(p.get("duration_ms"))
        turn.last_line = rec.line
        if turn is self.current:
            self._finish_current()

    def _turn_aborted(self, p: dict[str, Any], rec: Record) -> None:
        turn_id = p.get("turn_id")
        found = self._find_turn(turn_id if isinstance(turn_id, str) else None)
        if found is None:
            if self.current is None:
                return
            found = (len(self.turns), self.current)
        index, turn = found
        self._touch(index)
        turn.status = "interrupted"
        turn.completed_at = _secs(p.get("completed_at"))
        turn.duration_ms = _int(p.get("duration_ms"))
        turn.last_line = rec.line

    def _rolled_back(self, p: dict[str, Any]) -> None:
        self._finish_current()
        n = _int(p.get("num_turns")) or 0
        if n > 0:
            keep = max(0, len(self.turns) - n)
            self._touch(keep)
            del self.turns[keep:]
        self.next_item = sum(len(t.items) for t in self.turns) + 1

    # -- legacy (event_msg) dialect -------------------------------------------------

    def _event_legacy(self, etype: str, rec: Record) -> None:
        p = rec.payload
        if etype in ("task_started", "turn_started"):
            self._task_started(p, rec)
        elif etype in ("task_complete", "turn_complete"):
            self._task_complete(p, rec)
        elif etype == "turn_aborted":
            self._turn_aborted(p, rec)
        elif etype == "thread_rolled_back":
            self._rolled_back(p)
        elif etype == "user_message":
            cur = self.current
            if cur is not None and not cur.explicit and (cur.items or not cur.saw_compaction):
                self._finish_current()
            turn = self._ensure_current(rec)
            self._touch(len(self.turns))
            self._push(turn, conv.user_message_from_event(p, self._new_id()), rec)
        elif etype == "agent_message":
            msg = p.get("message")
            if not msg:
                return
            turn = self._ensure_current(rec)
            self._touch(len(self.turns))
            self._push(turn, conv.agent_message_from_event(p, self._new_id()), rec)
        elif etype in ("agent_reasoning", "agent_reasoning_raw_content"):
            text = p.get("text")
            if not text:
                return
            key = "summary" if etype == "agent_reasoning" else "content"
            turn = self._ensure_current(rec)
            self._touch(len(self.turns))
            last = turn.items[-1].data if turn.items else None
            if last is not None and last.get("type") == "reasoning":
                last[key] = [*last[key], text]
                turn.last_line = rec.line
            else:
                data = {"type": "reasoning", "id": self._new_id(), "summary": [], "content": []}
                data[key] = [text]
                self._push(turn, data, rec)
        elif etype == "context_compacted":
            turn = self._ensure_current(rec)
            self._touch(len(self.turns))
            self._push(turn, {"type": "contextCompaction", "id": self._new_id()}, rec)
        elif etype == "patch_apply_end":
            data = conv.file_change_from_event(p)
            turn_id = p.get("turn_id")
            if isinstance(turn_id, str) and turn_id:
                found = self._find_turn(turn_id)
                if found is None:
                    return
                self._upsert(found[0], found[1], data, rec)
            else:
                self._upsert_current(data, rec)
        elif etype == "mcp_tool_call_end":
            self._upsert_current(conv.mcp_tool_call_from_event(p), rec)
        elif etype == "web_search_end":
            self._upsert_current(conv.web_search_from_event(p), rec)
        elif etype == "image_generation_end":
            self._upsert_current(conv.image_generation_from_event(p), rec)
        elif etype == "sub_agent_activity":
            self._upsert_current(conv.sub_agent_activity_from_event(p), rec)
        elif etype in ("entered_review_mode", "exited_review_mode"):
            self._review(etype, p, rec)
        elif etype == "item_completed":
            item = p.get("item")
            if not isinstance(item, dict):
                return
            plan = conv.plan_or_sleep_item(item)
            if plan is None:
                return
            found = self._find_turn(p.get("turn_id") if isinstance(p.get("turn_id"), str) else None)
            if found is not None:
                self._upsert(found[0], found[1], plan, rec)

    def _review(self, etype: str, p: dict[str, Any], rec: Record) -> None:
        item_id = p.get("item_id")
        data = (
            conv.entered_review_item(p, item_id or self._new_id())
            if etype == "entered_review_mode"
            else conv.exited_review_item(p, item_id or self._new_id())
        )
        turn_id = p.get("turn_id")
        if isinstance(turn_id, str) and turn_id:
            found = self._find_turn(turn_id)
            if found is None:
                self._finish_current()
                self.current = TurnState(
                    id=turn_id,
                    status="completed",
                    explicit=False,
                    first_line=rec.line,
                    last_line=rec.line,
                )
                found = (len(self.turns), self.current)
            self._upsert(found[0], found[1], data, rec)
        else:
            self._upsert_current(data, rec)

    # -- paginated (item_completed) dialect -----------------------------------------

    def _event_paginated(self, etype: str, rec: Record) -> None:
        """Paginated files: each lifecycle/item line names its turn (no current turn)."""
        if etype not in (
            "task_started",
            "turn_started",
            "task_complete",
            "turn_complete",
            "turn_aborted",
            "item_completed",
        ):
            return
        p = rec.payload
        turn_id = p.get("turn_id")
        if not isinstance(turn_id, str) or not turn_id:
            return
        found = self._find_turn(turn_id)
        if found is None:
            # Turns exist once a lifecycle record names them; an item may come
            # first (review turns), so its turn waits as "pending" until then.
            turn = TurnState(
                id=turn_id, status=PENDING, explicit=False, first_line=rec.line, last_line=rec.line
            )
            self.turns.append(turn)
            found = (len(self.turns) - 1, turn)
        index, turn = found
        self._touch(index)
        turn.last_line = rec.line
        if etype in ("task_started", "turn_started"):
            root = p.get("root_turn_id")
            turn.status = "inProgress"
            turn.root_turn_id = root if isinstance(root, str) else None
            turn.started_at = _secs(p.get("started_at"))
            turn.completed_at = None
            turn.duration_ms = None
            turn.error = None
        elif etype in ("task_complete", "turn_complete", "turn_aborted"):
            err = p.get("error")
            if etype == "turn_aborted":
                turn.status = "interrupted"
                turn.error = conv.turn_error(err) if err is not None else None
            elif err is not None:
                turn.status = "failed"
                turn.error = conv.turn_error(err)
            else:
                turn.status = "completed"
                turn.error = None
            started = _secs(p.get("started_at"))
            if started is not None:
                turn.started_at = started
            turn.completed_at = _secs(p.get("completed_at"))
            turn.duration_ms = _int(p.get("duration_ms"))
        else:
            item = p.get("item")
            if not isinstance(item, dict):
                return
            data = conv.turn_item(item, p)
            if data is None:
                return
            item_id = data.get("id")
            for i, existing in enumerate(turn.items):
                if existing.data.get("id") == item_id:
                    first_start = existing.data.get("startedAtMs")
                    if first_start is not None:
                        data["startedAtMs"] = first_start
                    turn.items[i] = ItemState(data, existing.line, existing.ts)
                    return
            self._push(turn, data, rec)

    # -- responses dialect (pre-envelope files) --------------------------------------

    def _feed_responses(self, rec: Record) -> None:
        if rec.kind != RESPONSE_ITEM:
            self.position += 1
            return
        p = rec.payload
        ptype = p.get("type")
        if ptype == "message":
            role = p.get("role")
            text = conv.message_text(p)
            if role == "user":
                if conv.is_context_wrapper(text):
                    self.position += 1
                    return
                self._finish_current()
                turn = self._open_implicit(rec)
                self._push(turn, conv.user_message_from_text(text, self._new_id()), rec)
            elif role == "assistant" and text:
                turn = self._ensure_current(rec)
                self._push(
                    turn,
                    {
                        "type": "agentMessage",
                        "id": self._new_id(),
                        "text": text,
                        "phase": None,
                        "memoryCitation": None,
                    },
                    rec,
                )
        elif ptype == "reasoning":
            summary = conv.reasoning_summary(p)
            if summary:
                turn = self._ensure_current(rec)
                self._push(
                    turn,
                    {
                        "type": "reasoning",
                        "id": self._new_id(),
                        "summary": summary,
                        "content": [],
                    },
                    rec,
                )
        elif ptype in ("function_call", "local_shell_call", "custom_tool_call"):
            data = conv.command_from_call(p)
            if data is not None:
                turn = self._ensure_current(rec)
                self._upsert(len(self.turns), turn, data, rec)
        elif (
            ptype in ("function_call_output", "custom_tool_call_output")
            and self.current is not None
        ):
            call_id = p.get("call_id")
            for it in self.current.items:
                if it.data.get("id") == call_id and it.data.get("type") == "commandExecution":
                    conv.apply_command_output(it.data, p)
                    self.current.last_line = rec.line
                    break
        self.position += 1

    def finish(self) -> None:
        """Nothing to do: an open turn stays open so that more lines can follow.

        Readers call `all_turns()`; `TurnState.to_json` reports an open explicit
        turn as interrupted, as Codex does for threads that are not running.
        """


def choose_mode(meta: dict[str, Any] | None, envelope: bool) -> str:
    if not envelope:
        return RESPONSES
    if meta is not None and meta.get("history_mode") == "paginated":
        return PAGINATED
    return LEGACY
