"""The `ThreadStore` conformance suite: the behaviour every backend must have.

Every test here takes a `thread_store`: a store opened by URL with
`store.open_store` (so a third-party backend registered in the
`rollouts.backends` entry-point group is found like SQLite and PostgreSQL),
on a copy of a real Codex 0.169.0 CODEX_HOME (forks, a revert segment, an
archived thread, names, the real app-server's recorded answers), imported
with `ingest`. The expected values come from the files and from those
recorded answers, never from the store under test.

To run it on a backend, import the suite into a test module and provide a
`conformance_url` fixture that yields the URL of a fresh, empty store:

    # tests/test_my_backend.py
    import pytest
    from tests.conformance import *  # noqa: F403  (the suite's fixtures and tests)

    @pytest.fixture
    def conformance_url(tmp_path):
        yield f"mydb://{tmp_path}/store"

`conformance_home` (the CODEX_HOME the store is opened with) can be
overridden the same way. tests/test_conformance.py runs it on SQLite,
PostgreSQL and a plugin backend found through its entry point.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from store import open_store
from store.api.contract import ThreadStore
from store.api.methods import ThreadApi
from store.errors import InvalidCursor, InvalidInput, InvalidParam, NotFound, RolloutsError
from store.sql.listing import SORT_KEYS
from tests.conftest import CORPUS, FIXTURES, copy_home
from tests.helpers import (
    ANY_SOURCE,
    EVERY_THREAD,
    json_lines,
    recorded,
    rollout_files,
    thread_id_of,
)

SCHEMA = FIXTURES / "schema"
MISSING = "01a1fec0-0000-7000-8000-000000000000"  # a well-formed id no corpus has
NAMED = "01a1fec0-5ca1-7410-822a-1f782eb76d7e"  # an active thread with one turn
WITH_GIT = "01a1fec0-63df-7f00-8c26-54f1cff07366"  # an active paginated thread, git branch main
ARCHIVED = "01a1fec0-6348-77f3-be1f-61fa47783037"  # archived, with a revert segment
# Fields of the real app-server's Thread that come from the files (not from process state).
STORED_FIELDS = (
    "id",
    "sessionId",
    "forkedFromId",
    "parentThreadId",
    "preview",
    "historyMode",
    "modelProvider",
    "model",
    "reasoningEffort",
    "createdAt",
    "updatedAt",
    "recencyAt",
    "cwd",
    "cliVersion",
    "originator",
    "source",
    "threadSource",
    "agentNickname",
    "agentRole",
    "gitInfo",
    "name",
    "ephemeral",
    "status",
)
USER_ITEM = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "conformance: a new thread arrives"}],
}


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def conformance_home(tmp_path: Path) -> Path:
    """A copy of the real Codex 0.169.0 CODEX_HOME (its model_provider is "mock")."""
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "conformance-home")
    (home / "config.toml").write_text('model_provider = "mock"\n')
    return home


@pytest.fixture
def thread_store(conformance_url: str, conformance_home: Path) -> Iterator[ThreadStore]:
    """The backend at `conformance_url`, with `conformance_home` imported."""
    st = open_store(conformance_url, codex_home=conformance_home, auto_upgrade=True)
    try:
        assert isinstance(st, ThreadStore)
        summary = st.ingest([conformance_home])
        assert summary.errors == 0, summary.error_details
        yield st
    finally:
        st.close()


# -- what the files say, read without the store ------------------------------------------


def _local(path: str | None, home: Path) -> str | None:
    """A path of the recorded answers, under this copy of the CODEX_HOME."""
    if path is None:
        return None
    return str(home.resolve() / path.split("codex-0.169.0-s202/", 1)[1])


def _main_files(home: Path) -> dict[str, Path]:
    """Thread id -> its main rollout file (revert segments left out)."""
    return {thread_id_of(p): p for p in rollout_files(home) if "_" not in p.name}


def _everything(st: ThreadStore, **params: Any) -> list[dict[str, Any]]:
    return list(st.list_threads(limit=100, **{**EVERY_THREAD, **params})["data"])


def _all_pages(st: ThreadStore, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = params.pop("cursor", None)
    for _ in range(500):
        page = st.list_threads(cursor=cursor, **params)
        ids += [t["id"] for t in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


# -- reading ---------------------------------------------------------------------------


def test_every_thread_is_listed_once_and_exported_byte_for_byte(
    thread_store: ThreadStore, conformance_home: Path
) -> None:
    files = _main_files(conformance_home)
    listed = _everything(thread_store)
    assert sorted(t["id"] for t in listed) == sorted(files)
    for tid, path in files.items():
        assert b"".join(thread_store.export(tid)) == path.read_bytes(), path
        # The thread's newest file: the main one, or its latest revert segment.
        shown = Path(thread_store.get_thread(tid)["path"])
        assert shown.is_file() and tid in shown.name and shown.parent == path.resolve().parent


def test_read_matches_real_app_server(thread_store: ThreadStore, conformance_home: Path) -> None:
    records = recorded(conformance_home, "thread/read")
    assert len(records) == 9
    validator = jsonschema.Draft7Validator(
        json.loads((SCHEMA / "ThreadReadResponse.json").read_text())
    )
    for rec in records:
        want = rec["response"]["result"]["thread"]
        got = thread_store.get_thread(want["id"], include_turns=True)
        validator.validate({"thread": got})
        assert got["turns"] == want["turns"], want["id"]
        for key in STORED_FIELDS:
            assert got[key] == want[key], (want["id"], key)
        assert got["path"] == _local(want["path"], conformance_home)
        bare = thread_store.get_thread(want["id"])
        assert bare["turns"] == []
        assert {k: v for k, v in bare.items() if k != "turns"} == {
            k: v for k, v in got.items() if k != "turns"
        }


def test_list_matches_real_app_server(thread_store: ThreadStore, conformance_home: Path) -> None:
    """Codex's thread/list params and answers, through the thread API over this backend."""
    api = ThreadApi(thread_store)
    records = recorded(conformance_home, "thread/list")
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
            w = {**w, "path": _local(w["path"], conformance_home)}
            # Codex's list leaves out a fork's lineage (thread/read has it); we keep it.
            for key in ("forkedFromId", "threadSource"):
                if w[key] is None:
                    w[key] = g[key]
            assert g == w, (params, g["id"])
        assert got["nextCursor"] == want["nextCursor"], params
        assert got["backwardsCursor"] == want["backwardsCursor"], params


def test_list_defaults_are_codex_defaults(thread_store: ThreadStore) -> None:
    everything = _everything(thread_store)
    # Defaults: not archived, the default provider ("mock"), interactive sources.
    default = thread_store.list_threads(limit=100)["data"]
    assert [t["id"] for t in default] == [
        t["id"]
        for t in everything
        if t["path"]
        and "archived_sessions" not in t["path"]
        and t["source"] in ("vscode", "cli")
        and t["preview"]
    ]
    assert default and len(default) < len(everything)
    # limit is clamped to 1..100.
    assert len(thread_store.list_threads(limit=0, **ANY_SOURCE)["data"]) == 1
    assert len(thread_store.list_threads(limit=10_000, **ANY_SOURCE)["data"]) == len(
        [t for t in everything if "archived_sessions" not in t["path"]]
    )


def test_list_filters(thread_store: ThreadStore) -> None:
    everything = _everything(thread_store)
    ids = [t["id"] for t in everything]

    def listed(**params: Any) -> list[str]:
        return [t["id"] for t in _everything(thread_store, **params)]

    def where(pred: Any) -> list[str]:
        return [t["id"] for t in everything if pred(t)]

    # archived: True, False, None (both).
    archived = listed(archived=True)
    assert archived == where(lambda t: "archived_sessions" in t["path"]) and ARCHIVED in archived
    assert listed(archived=False) == where(lambda t: "archived_sessions" not in t["path"])
    # Providers: [] is every provider; others filter; the default also matches files naming none.
    assert listed(model_providers=["mock"]) == ids
    assert listed(model_providers=["openai"]) == []
    assert listed(model_providers=["openai", "mock"]) == ids
    # Source kinds.
    assert listed(source_kinds=["exec"]) == where(lambda t: t["source"] == "exec")
    assert listed(source_kinds=["vscode"]) == where(lambda t: t["source"] == "vscode")
    assert listed(source_kinds=["subAgent", "appServer"]) == []
    # cwd: one path, a list, none.
    cwds = sorted({t["cwd"] for t in everything})
    assert len(cwds) > 1
    assert listed(cwd=cwds[0]) == where(lambda t: t["cwd"] == cwds[0])
    assert listed(cwd=cwds[:2]) == where(lambda t: t["cwd"] in cwds[:2])
    assert listed(cwd=[]) == []
    # searchTerm: a case-sensitive substring of the preview or the name.
    term = everything[0]["preview"][:12]
    assert listed(search_term=term) == where(lambda t: term in t["preview"])
    assert listed(search_term=term.swapcase()) == where(lambda t: term.swapcase() in t["preview"])
    thread_store.set_name(NAMED, "zebra conformance name")
    assert listed(search_term="zebra conformance") == [NAMED]
    # Exclusions, originators, lineage.
    assert listed(excluded_thread_ids=ids[:2]) == ids[2:]
    origin = everything[0]["originator"]
    assert listed(originators=[origin]) == where(lambda t: t["originator"] == origin)
    assert listed(originators=["nobody"]) == []
    forks = [t for t in everything if t["forkedFromId"]]
    assert forks  # the corpus has a fork (parentThreadId is for sub-agents: none here)
    assert listed(parent_thread_id=forks[0]["forkedFromId"]) == where(
        lambda t: t["parentThreadId"] == forks[0]["forkedFromId"]
    )
    assert listed(ancestor_thread_id=MISSING) == []
    # include_empty: a started thread without a user message is listed only on request.
    empty = thread_store.create_thread(cwd=cwds[0], model_provider=None, model=None)
    shown = {**ANY_SOURCE, "include_empty": False}
    assert empty["id"] not in [
        t["id"] for t in thread_store.list_threads(limit=100, **shown)["data"]
    ]
    assert empty["id"] in listed()


@pytest.mark.parametrize("sort_key", SORT_KEYS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_paging_visits_every_thread_once_in_order(
    thread_store: ThreadStore, sort_key: str, direction: str
) -> None:
    # Same-second threads: the corpus threads were created within seconds.
    params = {**EVERY_THREAD, "sort_key": sort_key, "sort_direction": direction}
    whole = thread_store.list_threads(limit=100, **params)["data"]
    field = {"created_at": "createdAt", "updated_at": "updatedAt", "recency_at": "recencyAt"}
    times = [t[field[sort_key]] for t in whole]
    assert times == sorted(times, reverse=direction == "desc")
    ids = [t["id"] for t in whole]
    assert len(ids) == len(set(ids)) == 9
    for limit in (1, 2, 3, 4):
        assert _all_pages(thread_store, limit=limit, **params) == ids, limit
        page = thread_store.list_threads(limit=limit, **params)
        assert (page["nextCursor"] is None) == (limit >= len(ids))


def test_cursors_stay_valid_while_threads_arrive(
    thread_store: ThreadStore, conformance_home: Path
) -> None:
    params = {**ANY_SOURCE, "limit": 3}
    first = thread_store.list_threads(**params)
    new = thread_store.fork(NAMED)  # a new thread with a preview: created now, sorts first
    rest = _all_pages(thread_store, cursor=first["nextCursor"], **params)
    listed = [t["id"] for t in first["data"]] + rest
    assert len(listed) == len(set(listed)) == 8  # the newcomer sorts first: not on later pages
    assert thread_store.get_thread(new["id"])["preview"]
    assert new["id"] not in listed
    assert thread_store.list_threads(**params)["data"][0]["id"] == new["id"]
    # backwardsCursor with the opposite direction lists the first item and everything newer.
    back = thread_store.list_threads(
        **{**params, "limit": 100, "sort_direction": "asc", "cursor": first["backwardsCursor"]}
    )["data"]
    assert [t["id"] for t in back] == [first["data"][0]["id"], new["id"]]


def test_turns_and_items_pages(thread_store: ThreadStore, conformance_home: Path) -> None:
    for rec in recorded(conformance_home, "thread/read"):
        full = rec["response"]["result"]["thread"]
        tid, turns = full["id"], full["turns"]
        for direction in ("asc", "desc"):
            want = turns if direction == "asc" else turns[::-1]
            got: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = thread_store.list_turns_page(
                    tid, cursor=cursor, limit=1, sort_direction=direction, items_view="full"
                )
                got += page["data"]
                cursor = page["nextCursor"]
                if cursor is None:
                    break
            assert [t["id"] for t in got] == [t["id"] for t in want]
            assert [t["items"] for t in got] == [t["items"] for t in want]
            assert all(t["itemsView"] == "full" for t in got)
        if turns:
            # backwardsCursor includes its anchor: paging back from it starts there.
            page = thread_store.list_turns_page(tid, limit=1, sort_direction="asc")
            again = thread_store.list_turns_page(
                tid, cursor=page["backwardsCursor"], sort_direction="asc"
            )
            assert again["data"][0]["id"] == turns[0]["id"]
        for t in thread_store.list_turns_page(tid)["data"]:  # summary view (the default)
            assert all(i["type"] in ("userMessage", "agentMessage") for i in t["items"])
        for t in thread_store.list_turns_page(tid, items_view="notLoaded")["data"]:
            assert t["items"] == []
        for direction in ("asc", "desc"):
            items: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = thread_store.list_items_page(
                    tid, cursor=cursor, limit=2, sort_direction=direction
                )
                items += page["data"]
                cursor = page["nextCursor"]
                if cursor is None:
                    break
            flat = [(t["id"], i) for t in turns for i in t["items"]]
            if direction == "desc":
                flat.reverse()
            assert [(e["turnId"], e["item"]) for e in items] == flat
        for turn in turns:
            entries = thread_store.list_items_page(tid, turn_id=turn["id"], limit=100)["data"]
            assert [e["item"] for e in entries] == turn["items"]


# -- writing ---------------------------------------------------------------------------


def test_create_and_append_items(thread_store: ThreadStore, conformance_home: Path) -> None:
    cwd = str(conformance_home)
    thread = thread_store.create_thread(cwd=cwd, model_provider=None, model=None)
    assert thread["cwd"] == cwd and thread["turns"] == [] and thread["preview"] == ""
    assert thread["modelProvider"] == "mock"  # the CODEX_HOME's default provider
    path = Path(thread["path"])
    assert path.is_file() and path.is_relative_to(conformance_home.resolve())
    first = json_lines(path)[0]
    assert first["type"] == "session_meta" and first["payload"]["id"] == thread["id"]
    # Durable at once, but (as in Codex) not listed until it has a user message.
    assert thread["id"] in [t["id"] for t in _everything(thread_store)]
    shown = {**ANY_SOURCE, "include_empty": False}
    assert thread["id"] not in [t["id"] for t in thread_store.list_threads(**shown)["data"]]
    before = path.read_bytes()
    second = {**USER_ITEM, "content": [{"type": "input_text", "text": "and another"}]}
    assert thread_store.append_items(thread["id"], [USER_ITEM, second]) == 2
    after = path.read_bytes()
    assert after.startswith(before)  # appended, never rewritten
    added = json_lines(path)[len(json_lines(path)) - 2 :]
    assert [(ln["type"], ln["payload"]) for ln in added] == [
        ("response_item", USER_ITEM),
        ("response_item", second),
    ]
    assert b"".join(thread_store.export(thread["id"])) == after
    assert thread_store.get_thread(thread["id"])["id"] == thread["id"]
    # Writes go to the thread's file: appending to a forked thread's file works the same.
    fork = thread_store.fork(NAMED)
    fork_path = Path(fork["path"])
    size = fork_path.stat().st_size
    assert thread_store.append_items(fork["id"], [USER_ITEM]) == 1
    assert fork_path.stat().st_size > size


def test_name_set_persists_in_session_index(
    thread_store: ThreadStore, conformance_home: Path
) -> None:
    thread_store.set_name(NAMED, "  renamed thread  ")
    assert thread_store.get_thread(NAMED)["name"] == "renamed thread"
    listed = {t["id"]: t for t in _everything(thread_store)}
    assert listed[NAMED]["name"] == "renamed thread"
    last = json_lines(conformance_home / "session_index.jsonl")[-1]
    assert (last["id"], last["thread_name"]) == (NAMED, "renamed thread")
    with pytest.raises(InvalidInput, match="thread name must not be empty"):
        thread_store.set_name(NAMED, "   ")


def test_metadata_update_is_tri_state(thread_store: ThreadStore) -> None:
    before = thread_store.get_thread(WITH_GIT)["gitInfo"]
    assert before["branch"] == "main"
    after = thread_store.update_metadata(WITH_GIT, git_info={"branch": "feature", "sha": None})
    want = {"sha": None, "branch": "feature", "originUrl": before["originUrl"]}
    assert after["gitInfo"] == want
    assert thread_store.get_thread(WITH_GIT)["gitInfo"] == want
    listed = {t["id"]: t for t in _everything(thread_store)}
    assert listed[WITH_GIT]["gitInfo"] == want
    with pytest.raises(InvalidInput, match=r"gitInfo\.branch"):
        thread_store.update_metadata(WITH_GIT, git_info={"branch": ""})


def test_archive_unarchive_delete(thread_store: ThreadStore, conformance_home: Path) -> None:
    files = _main_files(conformance_home)
    original = files[NAMED].read_bytes()
    assert thread_store.archive(NAMED) == [NAMED]
    assert NAMED in [t["id"] for t in _everything(thread_store, archived=True)]
    assert NAMED not in [t["id"] for t in _everything(thread_store, archived=False)]
    moved = list((conformance_home / "archived_sessions").glob(f"*{NAMED}.jsonl"))
    assert len(moved) == 1 and moved[0].read_bytes() == original
    assert thread_store.get_thread(NAMED)["path"] == str(moved[0].resolve())
    with pytest.raises(NotFound, match=f"no rollout found for thread id {NAMED}"):
        thread_store.archive(NAMED)
    thread = thread_store.unarchive(NAMED)
    assert thread["id"] == NAMED and "archived_sessions" not in thread["path"]
    assert Path(thread["path"]).read_bytes() == original
    with pytest.raises(NotFound, match=f"no archived rollout found for thread id {NAMED}"):
        thread_store.unarchive(NAMED)
    assert thread_store.delete(NAMED) == [NAMED]
    assert NAMED not in [t["id"] for t in _everything(thread_store)]
    with pytest.raises(NotFound):
        thread_store.get_thread(NAMED)
    with pytest.raises(NotFound):
        thread_store.delete(NAMED)
    # The other threads are untouched.
    assert sorted(t["id"] for t in _everything(thread_store)) == sorted(set(files) - {NAMED})


def test_fork_at_every_turn_and_whole(thread_store: ThreadStore, conformance_home: Path) -> None:
    for rec in recorded(conformance_home, "thread/read"):
        src = rec["response"]["result"]["thread"]
        source_bytes = b"".join(thread_store.export(src["id"]))
        if src["path"] and "archived_sessions" in src["path"]:
            with pytest.raises(RolloutsError, match="is archived"):
                thread_store.fork(src["id"])
            continue
        cuts: list[str | None] = [t["id"] for t in src["turns"]] + [None]
        for cut in cuts:
            fork = thread_store.fork(src["id"], last_turn_id=cut)
            n = len(src["turns"]) if cut is None else cuts.index(cut) + 1
            assert fork["forkedFromId"] == src["id"] and fork["id"] != src["id"]
            resumed = thread_store.resume(fork["id"])
            assert resumed["thread"]["id"] == fork["id"]
            assert [t["id"] for t in resumed["thread"]["turns"]] == [
                t["id"] for t in src["turns"][:n]
            ]
            assert [t["items"] for t in resumed["thread"]["turns"]] == [
                t["items"] for t in src["turns"][:n]
            ]
            first = json_lines(Path(fork["path"]))[0]
            assert first["payload"]["id"] == fork["id"]
            assert first["payload"]["forked_from_id"] == src["id"]
        assert b"".join(thread_store.export(src["id"])) == source_bytes  # source untouched
    with pytest.raises(InvalidInput, match="was not found in the source thread"):
        thread_store.fork(NAMED, last_turn_id="no-such-turn")
    # Re-importing everything changes nothing: the forks were indexed as written.
    again = thread_store.ingest([conformance_home])
    assert again.errors == 0 and again.threads == 0


def test_resume_returns_history_and_settings(
    thread_store: ThreadStore, conformance_home: Path
) -> None:
    schema = json.loads((SCHEMA / "ThreadReadResponse.json").read_text())
    for rec in recorded(conformance_home, "thread/read"):
        want = rec["response"]["result"]["thread"]
        if "archived_sessions" in want["path"]:
            continue
        result = thread_store.resume(want["id"])
        jsonschema.validate({"thread": result["thread"]}, schema)
        assert result["thread"]["turns"] == want["turns"]
        assert result["modelProvider"] == "mock"
        assert result["approvalPolicy"] == "never"  # from the rollout's turn_context
        assert result["cwd"] == want["cwd"]


# -- errors ----------------------------------------------------------------------------


def test_unknown_and_malformed_thread_ids(thread_store: ThreadStore) -> None:
    calls: list[tuple[str, Any]] = [
        ("get_thread", lambda tid: thread_store.get_thread(tid)),
        ("get_thread turns", lambda tid: thread_store.get_thread(tid, include_turns=True)),
        ("list_turns_page", lambda tid: thread_store.list_turns_page(tid)),
        ("list_items_page", lambda tid: thread_store.list_items_page(tid)),
        ("export", lambda tid: thread_store.export(tid)),
        ("append_items", lambda tid: thread_store.append_items(tid, [USER_ITEM])),
        ("set_name", lambda tid: thread_store.set_name(tid, "x")),
        ("update_metadata", lambda tid: thread_store.update_metadata(tid, git_info={})),
        ("archive", lambda tid: thread_store.archive(tid)),
        ("unarchive", lambda tid: thread_store.unarchive(tid)),
        ("delete", lambda tid: thread_store.delete(tid)),
        ("fork", lambda tid: thread_store.fork(tid)),
        ("resume", lambda tid: thread_store.resume(tid)),
    ]
    for name, call in calls:
        with pytest.raises(NotFound):
            call(MISSING)
            pytest.fail(f"{name} of an unknown thread did not raise")
        for bad in ("../../etc/passwd", "", "x" * 500):
            with pytest.raises(InvalidInput, match=r"invalid thread id|not a UUID|thread id"):
                call(bad)
                pytest.fail(f"{name} of {bad!r} did not raise")
    before = _everything(thread_store)
    assert _everything(thread_store) == before  # nothing changed on the way


@pytest.mark.parametrize(
    "cursor",
    [
        "yesterday",
        "2026-11-21T15:36:21Z|not-a-uuid",
        "'; DROP TABLE threads; --",
        "2026-13-45T99:99:99Z",
        "x" * 1000,
    ],
)
def test_malformed_list_cursors(thread_store: ThreadStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="invalid cursor"):
        thread_store.list_threads(cursor=cursor)
    assert len(_everything(thread_store)) == 9  # the table is intact


def test_malformed_turn_and_item_cursors(thread_store: ThreadStore) -> None:
    for cursor in ("nope", "{}", '{"turnId": 5}', '{"turnId": "missing-turn"}'):
        with pytest.raises(InvalidCursor):
            thread_store.list_turns_page(NAMED, cursor=cursor)
    for cursor in ("nope", '{"position": "x"}', {"itemId": "missing-item", "turnId": "t"}):
        with pytest.raises(InvalidInput):  # InvalidCursor is an InvalidInput
            thread_store.list_items_page(NAMED, cursor=cursor)


@pytest.mark.parametrize(
    ("params", "error", "fragment"),
    [
        ({"sort_key": "name"}, InvalidInput, "sortKey"),
        ({"sort_direction": "sideways"}, InvalidInput, "sortDirection"),
        ({"source_kinds": ["robot"]}, InvalidInput, "unknown source kind"),
        ({"cwd": ["a\0b"]}, InvalidParam, "invalid thread/list cwd filter"),
        ({"excluded_thread_ids": ["x"]}, InvalidInput, "invalid thread id"),
        ({"excluded_thread_ids": [MISSING] * 101}, InvalidInput, "at most 100"),
        ({"parent_thread_id": "x"}, InvalidInput, "invalid parent thread id"),
        ({"parent_thread_id": NAMED, "ancestor_thread_id": NAMED}, InvalidInput, "exclusive"),
    ],
)
def test_bad_list_params(
    thread_store: ThreadStore, params: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        thread_store.list_threads(**params)


def test_bad_page_and_write_params(thread_store: ThreadStore) -> None:
    with pytest.raises(InvalidInput, match="sortDirection"):
        thread_store.list_turns_page(NAMED, sort_direction="up")
    with pytest.raises(InvalidInput, match="itemsView"):
        thread_store.list_turns_page(NAMED, items_view="everything")
    with pytest.raises(InvalidInput, match="sortDirection"):
        thread_store.list_items_page(NAMED, sort_direction="up")
    with pytest.raises(NotFound, match="turn not found"):
        thread_store.list_items_page(NAMED, turn_id="no-such-turn")
    path = Path(thread_store.get_thread(NAMED)["path"])
    before = path.read_bytes()
    for items in ([], [{"no": "type"}], ["text"]):
        with pytest.raises(InvalidInput, match="items"):
            thread_store.append_items(NAMED, items)
    assert path.read_bytes() == before  # a refused write leaves the file alone


# `from tests.conformance import *` brings the fixtures and every test.
__all__ = ["conformance_home", "thread_store"] + [
    name for name in list(globals()) if name.startswith("test_")
]
