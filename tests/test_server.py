"""`rollouts serve` as a real subprocess over stdio and WebSocket, on a real store.

The store is the codex-0.169.0 corpus imported into SQLite or PostgreSQL.
Protocol-only behaviour (framing, handshake) runs on SQLite alone; anything
that goes through the database runs on both.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from store import open_store
from store.api.methods import EXPERIMENTAL_FIELDS, EXPERIMENTAL_METHODS, ThreadApi
from tests.conftest import CORPUS, FIXTURES, SHARED, copy_home
from tests.helpers import EVERY_THREAD
from tests.rpc_client import REPO, StdioServer, serve_env

SCHEMA = FIXTURES / "schema"
MESSAGE = jsonschema.Draft7Validator(json.loads((SCHEMA / "JSONRPCMessage.json").read_text()))
INIT_RESPONSE = jsonschema.Draft7Validator(
    json.loads((SCHEMA / "InitializeResponse.json").read_text())
)
READ_RESPONSE = jsonschema.Draft7Validator(
    json.loads((SCHEMA / "ThreadReadResponse.json").read_text())
)
OVERLOADED = {"code": -32001, "message": "Server overloaded; retry later."}


@dataclass
class Served:
    url: str
    home: Path
    thread_ids: list[str]

    def args(self, *extra: str) -> list[str]:
        return ["--db", self.url, "--codex-home", str(self.home), *extra]


def _import(url: str, tmp_path: Path) -> Served:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    # As when the real answers were recorded: the corpus threads use provider "mock".
    (home / "config.toml").write_text('model_provider = "mock"\n')
    with open_store(url, auto_upgrade=True, codex_home=home) as st:
        assert st.ingest([home]).errors == 0
        ids = [t["id"] for t in st.list_threads(limit=100, **EVERY_THREAD)["data"]]
    assert len(ids) == 9
    return Served(url, home, ids)


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Served:
    """The corpus in the parametrised database (SQLite and PostgreSQL)."""
    return _import(db_url, tmp_path)


@pytest.fixture
def served_sqlite(tmp_path: Path) -> Served:
    """The corpus in SQLite, for protocol tests the database cannot change."""
    return _import(f"sqlite:///{tmp_path / 'proto.sqlite'}", tmp_path)


@pytest.fixture
def server(served_sqlite: Served) -> Iterator[StdioServer]:
    with StdioServer(served_sqlite.args()) as srv:
        yield srv


def _assert_wire(msg: dict[str, Any]) -> None:
    MESSAGE.validate(msg)
    assert "jsonrpc" not in msg


# -- handshake ---------------------------------------------------------------------


def test_initialize_answers_like_codex_then_serves_threads(served: Served) -> None:
    with StdioServer(served.args()) as srv:
        answer = srv.initialize("my_client")
        _assert_wire(answer)
        result = answer["result"]
        INIT_RESPONSE.validate(result)
        assert result["codexHome"] == str(served.home)
        assert result["platformFamily"] == "unix"
        assert result["platformOs"] == ("linux" if sys.platform.startswith("linux") else "macos")
        # Codex: "<originator>/<version> (<os> <os version>; <arch>) <terminal> (<name>; <version>)"
        assert re.fullmatch(
            r"my_client/\S+ \(.+; .+\) \S+ \(my_client; 1\.2\.3\)", result["userAgent"]
        )

        again = srv.request("initialize", {"clientInfo": {"name": "x", "version": "1"}})
        assert again["error"] == {"code": -32600, "message": "Already initialized"}

        tid = served.thread_ids[0]
        read = srv.request("thread/read", {"threadId": tid, "includeTurns": True})
        _assert_wire(read)
        READ_RESPONSE.validate(read["result"])
        assert read["result"]["thread"]["id"] == tid
        assert srv.no_more_output()  # `initialized` is a notification: no answer


def test_requests_before_initialize_are_refused(server: StdioServer) -> None:
    answer = server.request("thread/list", {})
    assert answer["error"] == {"code": -32600, "message": "Not initialized"}
    # Even unknown methods: the connection is not usable yet.
    assert server.request("no/such", {})["error"]["message"] == "Not initialized"
    assert "result" in server.initialize()


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            {"clientInfo": {"name": "bad\nname", "version": "1"}},
            -32600,
            "Invalid clientInfo.name: 'bad\nname'. Must be a valid HTTP header value.",
        ),
        ({}, -32602, "Invalid params: missing field `clientInfo`"),
        (None, -32602, "Invalid params: missing field `clientInfo`"),
        (
            {"clientInfo": {"name": "a"}},
            -32602,
            "Invalid params: missing field `clientInfo.version`",
        ),
        (
            {
                "clientInfo": {"name": "a", "version": "1"},
                "capabilities": {"experimentalApi": "yes"},
            },
            -32602,
            "Invalid params: `capabilities.experimentalApi` must be a boolean",
        ),
    ],
)
def test_invalid_initialize(server: StdioServer, params: Any, code: int, message: str) -> None:
    answer = server.request("initialize", params)
    assert answer["error"] == {"code": code, "message": message}
    # A failed initialize leaves the connection uninitialized, and retry works.
    assert server.request("thread/list", {})["error"]["message"] == "Not initialized"
    assert "result" in server.initialize()


def test_experimental_methods_need_the_capability(served_sqlite: Served) -> None:
    with StdioServer(served_sqlite.args()) as srv:
        srv.initialize()
        answer = srv.request("thread/search", {"searchTerm": "hello"})
        assert answer["error"] == {
            "code": -32600,
            "message": "thread/search requires experimentalApi capability",
        }
    with StdioServer(served_sqlite.args()) as srv:
        srv.initialize(experimentalApi=True)
        answer = srv.request("thread/search", {"searchTerm": "hello"})
        assert "result" in answer, answer


def test_experimental_fields_need_the_capability(served_sqlite: Served) -> None:
    tid = served_sqlite.thread_ids[0]
    gated = [
        ("thread/list", {"parentThreadId": tid}, "thread/list.parentThreadId"),
        ("thread/list", {"projectId": "p"}, "thread/list.projectId"),
        ("thread/resume", {"threadId": tid, "path": "/x.jsonl"}, "thread/resume.path"),
        ("thread/fork", {"threadId": tid, "beforeTurnId": "t"}, "thread/fork.beforeTurnId"),
        (
            "thread/items/list",
            {"threadId": tid, "deferOutput": {"commandExecution": True}},
            "thread/items/list.deferOutput.commandExecution",
        ),
    ]
    with StdioServer(served_sqlite.args()) as srv:
        srv.initialize()
        for method, params, descriptor in gated:
            answer = srv.request(method, params)
            assert answer.get("error") == {
                "code": -32600,
                "message": f"{descriptor} requires experimentalApi capability",
            }, (method, answer)
        # Stable methods, and experimental fields sent as null, pass the gate.
        assert "result" in srv.request("thread/turns/list", {"threadId": tid})
        assert "result" in srv.request("thread/items/list", {"threadId": tid, "deferOutput": {}})
        listed = srv.request("thread/list", {"parentThreadId": None, "limit": 2})
        assert len(listed["result"]["data"]) == 2
    with StdioServer(served_sqlite.args()) as srv:
        srv.initialize(experimentalApi=True)
        answer = srv.request("thread/list", {"parentThreadId": tid})
        assert answer["result"]["data"] == []  # no thread of the corpus has that parent


def _params_properties(kind: str, method: str) -> dict[str, set[str]] | None:
    """Top-level and one-level-nested property names of a method's params."""
    spec = SHARED / "spec" / "codex-app-server-0.169.0" / kind
    requests = json.loads((spec / "ClientRequest.json").read_text())
    refs = {
        v["properties"]["method"]["enum"][0]: v["properties"].get("params", {}).get("$ref")
        for v in requests["oneOf"]
    }
    if method not in refs:
        return None
    name = refs[method].rsplit("/", 1)[-1] if refs[method] else None
    if name is None:
        return {"": set()}
    schema = json.loads((spec / "v2" / f"{name}.json").read_text())
    props: dict[str, set[str]] = {"": set(schema.get("properties", {}))}
    for field, sub in schema.get("properties", {}).items():
        for ref in re.findall(r'"#/definitions/([^"]+)"', json.dumps(sub)):
            nested = schema["definitions"][ref].get("properties")
            if nested:
                props[field] = set(nested)
    return props


def test_experimental_tables_match_the_0169_schema(tmp_path: Path) -> None:
    if not (SHARED / "spec" / "codex-app-server-0.169.0").is_dir():
        pytest.skip("../shared/spec/codex-app-server-0.169.0 is not present")
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", auto_upgrade=True) as st:
        served = ThreadApi(st).methods
    assert served >= EXPERIMENTAL_METHODS
    for method in sorted(served):
        stable = _params_properties("stable", method)
        experimental = _params_properties("experimental", method)
        assert experimental is not None, f"{method} is not a 0.169 method"
        if stable is None:
            assert method in EXPERIMENTAL_METHODS, method
            continue
        assert method not in EXPERIMENTAL_METHODS, method
        fields = set()
        for parent, names in experimental.items():
            if parent and parent not in stable[""]:
                continue  # inside a field that is experimental as a whole
            for name in names - stable.get(parent, set()):
                fields.add(f"{parent}.{name}" if parent else name)
        assert fields == set(EXPERIMENTAL_FIELDS.get(method, ())), method


# -- envelopes ---------------------------------------------------------------------


def test_malformed_frames(server: StdioServer) -> None:
    server.initialize()
    server.write(b"this is not json\n\n[1, 2]\n")
    server.send({"id": 7}, {"id": 8, "method": 5}, {"id": [1], "method": "thread/list"})
    server.send({"jsonrpc": "2.0", "id": "abc", "method": "no/such/method", "params": {}})
    answers = {m["id"]: m for m in server.recv_many(3)}
    for msg in answers.values():
        _assert_wire(msg)
    assert answers[7]["error"] == {
        "code": -32600,
        "message": "Invalid request: missing field `method`",
    }
    assert answers[8]["error"]["code"] == -32600
    assert answers["abc"]["error"]["code"] == -32601  # string ids are echoed as strings
    assert server.no_more_output()  # the non-JSON line, the array and the bad id: dropped
    log = server.stderr_text()
    assert "not JSON" in log and "invalid request id" in log
    # The connection still works.
    assert "result" in server.request("thread/list", {"limit": 1})


def test_a_line_over_the_limit_is_dropped(server: StdioServer) -> None:
    server.initialize()
    big = b'{"id": 1, "method": "thread/list", "params": {"x": "' + b"a" * (17 * 1024 * 1024)
    server.write(big + b'"}}\n')
    assert "result" in server.request("thread/list", {"limit": 1})
    assert "longer than" in server.stderr_text()


# -- concurrency -------------------------------------------------------------------


def _mixed_requests(ids: list[str], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            params = {"limit": 5, "sourceKinds": ["vscode", "exec"]}
            out.append({"id": i, "method": "thread/list", "params": params})
        else:
            tid = ids[i % len(ids)]
            out.append({"id": i, "method": "thread/read", "params": {"threadId": tid}})
    return out


def test_many_pipelined_requests_are_all_answered(served: Served) -> None:
    n = 300
    env = serve_env(ROLLOUTS_SERVE_QUEUE_SIZE="1000")
    with StdioServer(served.args(), env) as srv:
        srv.initialize()
        requests = _mixed_requests(served.thread_ids, n)
        srv.send(*requests)
        answers = {m["id"]: m for m in srv.recv_many(n)}
        assert sorted(answers) == list(range(n))
        for req in requests:
            got = answers[req["id"]]
            _assert_wire(got)
            assert "result" in got, got
            if req["method"] == "thread/read":
                assert got["result"]["thread"]["id"] == req["params"]["threadId"]
            else:
                assert len(got["result"]["data"]) == 5


def test_overload_answers_32001_at_once_and_recovers(served_sqlite: Served) -> None:
    n = 200
    env = serve_env(ROLLOUTS_SERVE_QUEUE_SIZE="1", ROLLOUTS_SERVE_WORKERS="1")
    with StdioServer(served_sqlite.args(), env) as srv:
        srv.initialize()
        srv.send(*_mixed_requests(served_sqlite.thread_ids, n))
        answers = {m["id"]: m for m in srv.recv_many(n)}
        assert sorted(answers) == list(range(n))  # every request answered, once
        refused = [a for a in answers.values() if "error" in a]
        assert refused, "a queue of 1 must overflow under 200 pipelined requests"
        assert all(a["error"] == OVERLOADED for a in refused)
        assert len(refused) < n  # the admitted ones were served
        assert srv.no_more_output(0.2)
        # Once the flood is answered, the server takes requests again.
        assert "result" in srv.request("thread/list", {"limit": 1})


# -- logging -----------------------------------------------------------------------


def test_json_logs_on_stderr_and_only_protocol_on_stdout(
    server: StdioServer, served_sqlite: Served
) -> None:
    server.stop()
    env = serve_env(LOG_FORMAT="json", ROLLOUTS_LOG="warn,store.server=debug")
    with StdioServer(served_sqlite.args(), env) as srv:
        srv.initialize()
        srv.write(b"garbage\n")
        srv.request("thread/list", {"limit": 1})
        srv.close_stdin()
        assert srv.wait() == 0
        srv.no_more_output()
        records = [json.loads(line) for line in srv.stderr_text().splitlines()]
        assert {"timestamp", "level", "target", "message"} <= set(records[0])
        levels = {(r["level"], r["target"]) for r in records}
        assert ("DEBUG", "store.server") in levels  # store.server=debug
        assert any("dropping a frame" in r["message"] for r in records)
        for line in srv.stdout_lines:
            _assert_wire(json.loads(line))


def test_log_level_off_silences_stderr(served_sqlite: Served) -> None:
    with StdioServer(served_sqlite.args(), serve_env(ROLLOUTS_LOG="off")) as srv:
        srv.initialize()
        srv.write(b"garbage\n")
        srv.close_stdin()
        assert srv.wait() == 0
        assert srv.stderr_text() == ""


# -- shutdown ----------------------------------------------------------------------


def test_eof_answers_everything_then_exits_0(served: Served) -> None:
    with StdioServer(served.args()) as srv:
        srv.initialize()
        srv.send(*_mixed_requests(served.thread_ids, 50))
        srv.close_stdin()
        assert srv.wait() == 0
        answers = srv.recv_many(50)
        assert sorted(a["id"] for a in answers) == list(range(50))
        assert "Traceback" not in srv.stderr_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(server: StdioServer, sig: signal.Signals) -> None:
    server.initialize()
    server.proc.send_signal(sig)
    assert server.wait() == 0
    assert "Traceback" not in server.stderr_text()


def test_bad_listen_url_is_a_clear_error(served_sqlite: Served) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", *served_sqlite.args("--listen", "tcp://x:1")],
        capture_output=True,
        env=serve_env(),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"unsupported --listen 'tcp://x:1'" in proc.stderr
    assert b"Traceback" not in proc.stderr


# -- WebSocket ---------------------------------------------------------------------


def test_websocket_transport(served: Served) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with StdioServer(served.args("--listen", "ws://127.0.0.1:0")) as srv:
        log = srv.wait_stderr("listening on ws://")
        url = re.search(r"listening on (ws://127\.0\.0\.1:\d+)", log)
        assert url, log
        ws_url = url.group(1)
        with connect(ws_url) as ws:
            ws.send(json.dumps({"id": 1, "method": "thread/list", "params": {}}))
            assert json.loads(ws.recv(timeout=30))["error"]["message"] == "Not initialized"
            init = {"clientInfo": {"name": "ws-client", "version": "1"}}
            ws.send(json.dumps({"id": 2, "method": "initialize", "params": init}))
            answer = json.loads(ws.recv(timeout=30))
            INIT_RESPONSE.validate(answer["result"])
            ws.send(json.dumps({"method": "initialized"}))
            tid = served.thread_ids[0]
            ws.send(json.dumps({"id": 3, "method": "thread/read", "params": {"threadId": tid}}))
            read = json.loads(ws.recv(timeout=30))
            _assert_wire(read)
            assert read["result"]["thread"]["id"] == tid
        http_url = ws_url.replace("ws://", "http://")
        with urllib.request.urlopen(f"{http_url}/readyz", timeout=30) as resp:
            assert resp.status == 200
        # A browser page must not drive the local server (Codex refuses Origin too).
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        assert srv.stdout_lines == [] and srv.no_more_output(0.1)  # nothing on stdout
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0
        assert "Traceback" not in srv.stderr_text()
