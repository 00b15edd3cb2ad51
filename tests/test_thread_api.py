"""The thread API (store.api.methods.ThreadApi) against the real Codex 0.169 app-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store import open_store
from store.api.methods import ThreadApi
from store.api.rpc import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RpcError


@pytest.fixture
def api(db_url: str, home169: Path) -> Any:
    # The recorded answers were made with `model_provider = "mock"` in config.toml.
    (home169 / "config.toml").write_text('model_provider = "mock"\n')
    with open_store(db_url, auto_upgrade=True, codex_home=home169) as st:
        summary = st.ingest([home169])
        assert summary.errors == 0, summary.error_details
        yield ThreadApi(st)


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"cursor": "yesterday"}, INVALID_REQUEST, "invalid cursor: yesterday"),
        ({"cursor": "2026-11-21T15:36:21Z|not-a-uuid"}, INVALID_REQUEST, "invalid cursor"),
        ({"cursor": "'; DROP TABLE threads; --"}, INVALID_REQUEST, "invalid cursor"),
        ({"limit": "ten"}, INVALID_PARAMS, "`limit`"),
        ({"limit": -1}, INVALID_PARAMS, "`limit`"),
        ({"sortKey": "name"}, INVALID_PARAMS, "`sortKey`"),
        ({"sourceKinds": ["robot"]}, INVALID_PARAMS, "`sourceKinds`"),
        ({"cwd": ["a\0b"]}, INVALID_PARAMS, "invalid thread/list cwd filter"),
        ({"excludedThreadIds": ["x"]}, INVALID_REQUEST, "invalid thread id"),
        (
            {"parentThreadId": "01a1fec0-63df-7f00-8c26-54f1cff07366", "ancestorThreadId": "x"},
            INVALID_REQUEST,
            "mutually exclusive",
        ),
    ],
)
def test_bad_list_params_get_clear_errors(
    api: ThreadApi, params: dict[str, Any], code: int, fragment: str
) -> None:
    with pytest.raises(RpcError) as info:
        api.handle("thread/list", params)
    assert info.value.code == code
    assert fragment in info.value.message


def test_read_errors_use_codex_messages(api: ThreadApi) -> None:
    missing = "01a1fec0-0000-7000-8000-000000000000"
    with pytest.raises(RpcError, match=f"thread not loaded: {missing}"):
        api.handle("thread/read", {"threadId": missing})
    with pytest.raises(RpcError, match="invalid thread id"):
        api.handle("thread/read", {"threadId": "../../etc/passwd"})
    with pytest.raises(RpcError) as info:
        api.handle("thread/nope", {})
    assert info.value.code == METHOD_NOT_FOUND


def test_write_methods_answer_with_codex_notifications(api: ThreadApi) -> None:
    """What the thread API adds to the store calls (tests/conformance.py): answers, notifications."""
    tid = "01a1fec0-5ca1-7410-822a-1f782eb76d7e"
    reply = api.handle("thread/name/set", {"threadId": tid, "name": "  renamed thread  "})
    assert reply.result == {}
    assert [n.to_json() for n in reply.notifications] == [
        {
            "method": "thread/name/updated",
            "params": {"threadId": tid, "threadName": "renamed thread"},
        }
    ]
    with pytest.raises(RpcError, match="thread name must not be empty") as info:
        api.handle("thread/name/set", {"threadId": tid, "name": "   "})
    assert info.value.code == INVALID_REQUEST
    reply = api.handle("thread/fork", {"threadId": tid})
    fork = reply.result["thread"]
    assert fork["forkedFromId"] == tid and fork["turns"]  # the resume answer: with history
    assert reply.result["modelProvider"] == "mock"
    assert [n.method for n in reply.notifications] == ["thread/started"]
    reply = api.handle("thread/archive", {"threadId": tid})
    assert reply.result == {}
    assert [n.to_json() for n in reply.notifications] == [
        {"method": "thread/archived", "params": {"threadId": tid}}
    ]
    with pytest.raises(RpcError, match=f"no rollout found for thread id {tid}") as info:
        api.handle("thread/archive", {"threadId": tid})
    assert info.value.code == INVALID_REQUEST
    reply = api.handle("thread/unarchive", {"threadId": tid})
    assert reply.result["thread"]["id"] == tid
    assert [n.method for n in reply.notifications] == ["thread/unarchived"]
    # The fork reads its history from tid's file: tid alone may not go (a deliberate
    # difference from Codex, docs/thread-api.md); after the fork, it may.
    with pytest.raises(RpcError, match="history base of reference forks") as info:
        api.handle("thread/delete", {"threadId": tid})
    assert info.value.code == INVALID_REQUEST
    with pytest.raises(RpcError, match=r"gitInfo\.branch") as info:
        api.handle("thread/metadata/update", {"threadId": fork["id"], "gitInfo": {"branch": ""}})
    assert info.value.code == INVALID_REQUEST
    api.handle("thread/delete", {"threadId": fork["id"]})
    deleted = api.handle("thread/delete", {"threadId": tid})
    assert [n.to_json() for n in deleted.notifications] == [
        {"method": "thread/deleted", "params": {"threadId": tid}}
    ]
    missing = "01a1fec0-0000-7000-8000-000000000000"
    with pytest.raises(RpcError, match=f"no rollout found for thread id {missing}"):
        api.handle("thread/resume", {"threadId": missing})


def test_search_methods_are_served(api: ThreadApi) -> None:
    assert {"thread/search", "thread/searchOccurrences"} <= api.methods


def test_inject_into_a_vanished_file_is_an_error_not_a_new_fragment(
    api: ThreadApi, home169: Path
) -> None:
    tid = "01a1fec0-5ca1-7410-822a-1f782eb76d7e"
    path = Path(api.handle("thread/read", {"threadId": tid}).result["thread"]["path"])
    moved = path.with_name("moved-away.jsonl")
    path.rename(moved)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    with pytest.raises(RpcError, match="file is gone"):
        api.handle("thread/inject_items", {"threadId": tid, "items": [item]})
    assert not path.exists()
