"""The thread API (store.api.methods.ThreadApi) against the real Codex 0.169 app-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from store import open_store
from store.api.methods import ThreadApi
from store.api.rpc import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RpcError
from store.sql.backend import SqlThreadStore
from store.sql.listing import SOURCE_KINDS
from tests.conftest import FIXTURES
from tests.helpers import json_lines

SCHEMA = FIXTURES / "schema"
ALL_SOURCES = list(SOURCE_KINDS)  # every ThreadSourceKind of the 0.169 schema


def _recorded(home: Path, method: str) -> list[dict[str, Any]]:
    return [
        rec
        for rec in json_lines(home / "expected-app-server-with-state.jsonl")
        if rec["request"]["method"] == method
    ]


@pytest.fixture
def api(db_url: str, home169: Path) -> Any:
    # The recorded answers were made with `model_provider = "mock"` in config.toml.
    (home169 / "config.toml").write_text('model_provider = "mock"\n')
    with open_store(db_url, auto_upgrade=True, codex_home=home169) as st:
        summary = st.ingest([home169])
        assert summary.errors == 0, summary.error_details
        yield ThreadApi(st)


def _local(path: str | None, home: Path) -> str | None:
    if path is None:
        return None
    return str(home.resolve() / path.split("codex-0.169.0-s202/", 1)[1])


def test_thread_list_matches_real_app_server(api: ThreadApi, home169: Path) -> None:
    records = _recorded(home169, "thread/list")
    assert len(records) == 10
    schema = json.loads((SCHEMA / "ThreadListResponse.json").read_text())
    for rec in records:
        params = rec["request"]["params"]
        want = rec["response"]["result"]
        got = api.handle("thread/list", params).result
        jsonschema.validate(got, schema)
        # Codex lists a thread once per revert segment file; we list each thread
        # once (documented difference), as its newest file, which Codex lists first.
        seen: dict[str, dict[str, Any]] = {}
        for t in want["data"]:
            seen.setdefault(t["id"], t)
        want_data = list(seen.values())
        assert [t["id"] for t in got["data"]] == [t["id"] for t in want_data], params
        for g, w in zip(got["data"], want_data, strict=True):
            w = {**w, "path": _local(w["path"], home169)}
            # Codex's list leaves out a fork's lineage (thread/read has it); we keep it.
            for key in ("forkedFromId", "threadSource"):
                if w[key] is None:
                    w[key] = g[key]
            assert g == w, (params, g["id"])
        assert got["nextCursor"] == want["nextCursor"], params
        assert got["backwardsCursor"] == want["backwardsCursor"], params


def test_default_filters_are_codex_defaults(api: ThreadApi) -> None:
    # No sourceKinds: interactive sources only (the exec threads are hidden).
    default = api.handle("thread/list", {"limit": 100}).result["data"]
    assert {t["source"] for t in default} == {"vscode"}
    everything = api.handle("thread/list", {"limit": 100, "sourceKinds": ALL_SOURCES}).result
    assert len(everything["data"]) == 8  # the active threads of the corpus
    # modelProviders omitted = the configured default ("mock"); another provider: nothing.
    other = api.handle("thread/list", {"modelProviders": ["openai"], "sourceKinds": ALL_SOURCES})
    assert other.result["data"] == []
    assert (
        api.handle("thread/list", {"modelProviders": [], "sourceKinds": ALL_SOURCES}).result["data"]
        == everything["data"]
    )
    # limit is clamped to 1..100 as in Codex.
    assert (
        len(api.handle("thread/list", {"limit": 0, "sourceKinds": ALL_SOURCES}).result["data"]) == 1
    )


def test_cwd_search_and_exclusion_filters(api: ThreadApi) -> None:
    base = {"limit": 100, "sourceKinds": ALL_SOURCES}
    everything = api.handle("thread/list", base).result["data"]
    cwd = everything[0]["cwd"]
    by_cwd = api.handle("thread/list", {**base, "cwd": cwd}).result["data"]
    assert by_cwd and all(t["cwd"] == cwd for t in by_cwd)
    assert {t["id"] for t in by_cwd} == {t["id"] for t in everything if t["cwd"] == cwd}
    assert api.handle("thread/list", {**base, "cwd": []}).result["data"] == []
    term = everything[0]["preview"][:12]
    found = api.handle("thread/list", {**base, "searchTerm": term}).result["data"]
    assert {t["id"] for t in found} == {t["id"] for t in everything if term in t["preview"]}
    # searchTerm is case-sensitive, as in Codex.
    if term.upper() != term:
        upper = api.handle("thread/list", {**base, "searchTerm": term.upper()}).result["data"]
        assert all(term.upper() in t["preview"] for t in upper)
    excluded = api.handle(
        "thread/list", {**base, "excludedThreadIds": [everything[0]["id"]]}
    ).result["data"]
    assert [t["id"] for t in excluded] == [t["id"] for t in everything[1:]]


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


def _all_pages(api: ThreadApi, params: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    cursor = params.get("cursor")
    for _ in range(200):
        page = api.handle("thread/list", {**params, "cursor": cursor}).result
        ids += [t["id"] for t in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st_.integers(min_value=1, max_value=4),
    sort_key=st_.sampled_from(["created_at", "updated_at", "recency_at"]),
    direction=st_.sampled_from(["asc", "desc"]),
)
def test_paging_visits_every_thread_once_in_order(
    api: ThreadApi, limit: int, sort_key: str, direction: str
) -> None:
    params = {"sourceKinds": ALL_SOURCES, "sortKey": sort_key, "sortDirection": direction}
    whole = [t["id"] for t in api.handle("thread/list", {**params, "limit": 100}).result["data"]]
    assert len(whole) == 8
    assert _all_pages(api, {**params, "limit": limit}) == whole


def test_cursor_stays_valid_while_threads_arrive(api: ThreadApi) -> None:
    params = {"sourceKinds": ALL_SOURCES, "limit": 3}
    first = api.handle("thread/list", params).result
    new = api.handle("thread/start", {"cwd": "/tmp/project"}).result["thread"]
    api.handle(
        "thread/inject_items",
        {
            "threadId": new["id"],
            "items": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a new thread arrives"}],
                }
            ],
        },
    )
    rest = _all_pages(api, {**params, "cursor": first["nextCursor"]})
    listed = [t["id"] for t in first["data"]] + rest
    assert len(listed) == len(set(listed)) == 8  # the newcomer sorts first: not on later pages
    # backwardsCursor with the opposite direction lists the first item and everything newer.
    back = api.handle(
        "thread/list",
        {**params, "limit": 100, "sortDirection": "asc", "cursor": first["backwardsCursor"]},
    ).result["data"]
    assert [t["id"] for t in back][:1] == [first["data"][0]["id"]]


def test_turns_and_items_pages(api: ThreadApi, home169: Path) -> None:
    for rec in _recorded(home169, "thread/read"):
        full = rec["response"]["result"]["thread"]
        tid = full["id"]
        turns: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = api.handle(
                "thread/turns/list",
                {
                    "threadId": tid,
                    "limit": 1,
                    "sortDirection": "asc",
                    "itemsView": "full",
                    "cursor": cursor,
                },
            ).result
            turns += page["data"]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert [t["id"] for t in turns] == [t["id"] for t in full["turns"]]
        assert [t["items"] for t in turns] == [t["items"] for t in full["turns"]]
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = api.handle(
                "thread/items/list", {"threadId": tid, "limit": 2, "cursor": cursor}
            ).result
            items += [e["item"] for e in page["data"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert items == [i for t in full["turns"] for i in t["items"]]
        summary = api.handle("thread/turns/list", {"threadId": tid}).result["data"]
        for t in summary:
            assert all(i["type"] in ("userMessage", "agentMessage") for i in t["items"])


def test_name_set_persists_in_session_index(api: ThreadApi, home169: Path) -> None:
    tid = "01a1fec0-5ca1-7410-822a-1f782eb76d7e"
    reply = api.handle("thread/name/set", {"threadId": tid, "name": "  renamed thread  "})
    assert [n.to_json() for n in reply.notifications] == [
        {
            "method": "thread/name/updated",
            "params": {"threadId": tid, "threadName": "renamed thread"},
        }
    ]
    assert api.handle("thread/read", {"threadId": tid}).result["thread"]["name"] == "renamed thread"
    last = json_lines(home169 / "session_index.jsonl")[-1]
    assert (last["id"], last["thread_name"]) == (tid, "renamed thread")
    with pytest.raises(RpcError, match="thread name must not be empty"):
        api.handle("thread/name/set", {"threadId": tid, "name": "   "})


def test_metadata_update_is_tri_state(api: ThreadApi) -> None:
    tid = "01a1fec0-63df-7f00-8c26-54f1cff07366"
    before = api.handle("thread/read", {"threadId": tid}).result["thread"]["gitInfo"]
    assert before["branch"] == "main"
    after = api.handle(
        "thread/metadata/update", {"threadId": tid, "gitInfo": {"branch": "feature", "sha": None}}
    ).result["thread"]["gitInfo"]
    assert after == {"sha": None, "branch": "feature", "originUrl": before["originUrl"]}
    with pytest.raises(RpcError, match=r"gitInfo\.branch"):
        api.handle("thread/metadata/update", {"threadId": tid, "gitInfo": {"branch": ""}})


def test_fork_at_every_turn_keeps_history_and_lineage(api: ThreadApi, home169: Path) -> None:
    store: SqlThreadStore = api.store
    for rec in _recorded(home169, "thread/read"):
        src = rec["response"]["result"]["thread"]
        if src["path"] and "archived_sessions" in src["path"]:
            with pytest.raises(RpcError, match="is archived"):
                api.handle("thread/fork", {"threadId": src["id"]})
            continue
        for i, turn in enumerate(src["turns"]):
            reply = api.handle("thread/fork", {"threadId": src["id"], "lastTurnId": turn["id"]})
            fork = reply.result["thread"]
            assert fork["forkedFromId"] == src["id"]
            assert fork["id"] != src["id"]
            assert [t["id"] for t in fork["turns"]] == [t["id"] for t in src["turns"][: i + 1]]
            assert [t["items"] for t in fork["turns"]] == [
                t["items"] for t in src["turns"][: i + 1]
            ]
            assert Path(fork["path"]).is_file()
            assert [n.method for n in reply.notifications] == ["thread/started"]
            # The new file begins with the fork's own session_meta; the source is untouched.
            first = json_lines(Path(fork["path"]))[0]
            assert first["payload"]["id"] == fork["id"]
            assert first["payload"]["forked_from_id"] == src["id"]
    # Re-importing everything changes nothing: the forks were indexed as written.
    again = store.ingest([home169])
    assert again.errors == 0 and again.threads == 0


def test_resume_returns_history_and_settings(api: ThreadApi, home169: Path) -> None:
    schema = json.loads((SCHEMA / "ThreadReadResponse.json").read_text())
    rec = _recorded(home169, "thread/read")[0]
    tid = rec["request"]["params"]["threadId"]
    result = api.handle("thread/resume", {"threadId": tid}).result
    jsonschema.validate({"thread": result["thread"]}, schema)
    assert [t["id"] for t in result["thread"]["turns"]] == [
        t["id"] for t in rec["response"]["result"]["thread"]["turns"]
    ]
    assert result["approvalPolicy"] == "never"
    assert result["modelProvider"] == "mock"
    with pytest.raises(RpcError, match="no rollout found for thread id"):
        api.handle("thread/resume", {"threadId": "01a1fec0-0000-7000-8000-000000000000"})


def test_archive_unarchive_delete_through_the_api(api: ThreadApi, home169: Path) -> None:
    tid = "01a1fec0-5ca1-7410-822a-1f782eb76d7e"
    everywhere = {"sourceKinds": ALL_SOURCES, "limit": 100}
    reply = api.handle("thread/archive", {"threadId": tid})
    assert reply.result == {}
    assert [n.to_json() for n in reply.notifications] == [
        {"method": "thread/archived", "params": {"threadId": tid}}
    ]
    archived = api.handle("thread/list", {**everywhere, "archived": True}).result["data"]
    assert tid in {t["id"] for t in archived}
    assert list((home169 / "archived_sessions").glob(f"*{tid}.jsonl"))
    with pytest.raises(RpcError, match=f"no rollout found for thread id {tid}"):
        api.handle("thread/archive", {"threadId": tid})
    thread = api.handle("thread/unarchive", {"threadId": tid}).result["thread"]
    assert thread["id"] == tid and "archived_sessions" not in thread["path"]
    with pytest.raises(RpcError, match=f"no archived rollout found for thread id {tid}"):
        api.handle("thread/unarchive", {"threadId": tid})
    deleted = api.handle("thread/delete", {"threadId": tid})
    assert [n.method for n in deleted.notifications] == ["thread/deleted"]
    active = api.handle("thread/list", everywhere).result["data"]
    assert tid not in {t["id"] for t in active}


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
