"""`rollouts retain` and `rollouts stats --json`, run as a user would, on real corpus data.

Expectations are computed from the rollout files themselves (session_meta,
token_count events, file sizes and mtimes), not from the store.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from store import open_store
from store.archive import tables as t
from store.sql import schema as s
from tests.cli_run import assert_clean_failure, rollouts
from tests.conftest import CORPUS, copy_home
from tests.helpers import json_lines, rollout_files, thread_id_of
from tests.test_archive import snapshot

DAY_NS = 86400 * 10**9


def meta(path: Path) -> dict[str, Any]:
    first = json_lines(path)[0]
    return dict(first.get("payload", first))


def cli_json(home: Path, db: str, *args: str) -> Any:
    proc = rollouts(home, db, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def imported(home: Path, db: str) -> None:
    """`rollouts db upgrade` and `rollouts import`, as a user with a fresh database would."""
    proc = rollouts(home, db, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert cli_json(home, db, "import", "--json")["errors"] in (0, [])


@pytest.fixture
def aged(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The 0.169 corpus, its active threads aged 10, 50 and 100 days by cwd rank.

    Returns the home and, per active thread id: cwd, age in days, path.
    """
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    by_cwd: dict[str, list[Path]] = defaultdict(list)
    for p in rollout_files(home / "sessions"):
        by_cwd[meta(p)["cwd"]].append(p)
    now = time.time_ns()
    threads: dict[str, dict[str, Any]] = {}
    for cwd, paths in by_cwd.items():
        for rank, p in enumerate(sorted(paths)):
            days = (10, 50, 100)[min(rank, 2)]
            ns = now - days * DAY_NS - rank * 10**9  # distinct, newest first by rank
            os.utime(p, ns=(ns, ns))
            threads[thread_id_of(p)] = {"cwd": cwd, "days": days, "rank": rank, "path": p}
    assert len(by_cwd) >= 2 and any(len(v) >= 3 for v in by_cwd.values())
    return home, threads


def test_retain_policy_file_dry_run_then_apply(
    db_url: str, aged: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    home, threads = aged
    (home / "rollouts-retention.toml").write_text(
        '[retention]\nkeep_newest = 1\narchive_after = "30d"\nvault_after = "80d"\n'
        "compress = false\n"
    )
    imported(home, db_url)
    # the newest thread of each cwd is kept; older than 30 days archived; older than 80 vaulted
    want_archived = {tid for tid, th in threads.items() if th["rank"] >= 1 and th["days"] > 30}
    want_vaulted = {tid for tid, th in threads.items() if th["rank"] >= 1 and th["days"] > 80}
    assert want_archived and want_vaulted and want_vaulted < want_archived

    before = snapshot(home)
    dry = cli_json(home, db_url, "retain", "--dry-run")
    assert snapshot(home) == before
    assert dry["archive"]["dryRun"] is True
    assert {i["threadId"] for i in dry["archive"]["items"]} == want_archived
    assert {i["threadId"] for i in dry["vault"]["items"]} == want_vaulted

    out = cli_json(home, db_url, "retain")
    assert {i["threadId"] for i in out["archive"]["items"]} == want_archived
    assert {i["threadId"] for i in out["vault"]["items"]} == want_vaulted
    assert out["archive"]["skipped"] == [] and out["vault"]["skipped"] == []
    for tid, th in threads.items():
        name = th["path"].name
        if tid in want_vaulted:
            assert not list(home.rglob(name)), name  # its bytes are in the vault
        elif tid in want_archived:
            assert (home / "archived_sessions" / name).exists()
        else:
            assert th["path"].exists()  # kept where it was
    # a second run has nothing left to do
    again = cli_json(home, db_url, "retain")
    assert again["archive"]["threads"] == 0 and again["vault"]["threads"] == 0
    # every byte is still there: vaulted threads come back byte for byte
    cli_json(home, db_url, "restore", *sorted(want_vaulted), "--json")
    after = snapshot(home)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


def test_retain_options_override_config_and_purge_trash(
    db_url: str, aged: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    home, threads = aged
    bases = {meta(th["path"]).get("forked_from_id") for th in threads.values()}
    config = tmp_path / "policy.toml"
    config.write_text('[retention]\nkeep_newest = 5\narchive_after = "1d"\ncompress = true\n')
    imported(home, db_url)
    # --keep-newest 2 overrides keep_newest = 5; archive_after = 1d still applies, compressed
    out = cli_json(home, db_url, "retain", "--config", str(config), "--keep-newest", "2")
    want = {tid for tid, th in threads.items() if th["rank"] >= 2}
    assert want
    assert {i["threadId"] for i in out["archive"]["items"]} == want
    assert all(i["path"].endswith(".jsonl.zst") for i in out["archive"]["items"])
    assert "vault" not in out and "purge" not in out

    # purge_trash_after: a thread deleted now stays; one deleted 20 days ago goes
    # (not a thread that reference forks read their history from: delete refuses those)
    ids = sorted(tid for tid in threads if tid not in want and tid not in bases)[:2]
    assert len(ids) == 2
    deleted = cli_json(home, db_url, "delete", *ids, "--json")
    assert deleted["skipped"] == [], deleted
    out = cli_json(home, db_url, "retain", "--config", str(config), "--purge-trash-after", "10d")
    assert out["purge"]["threads"] == 0
    with open_store(db_url) as st, st.engine.begin() as conn:
        old = (time.time_ns() // 10**6) - 20 * 86400 * 1000
        conn.execute(update(t.trash).where(t.trash.c.thread_id == ids[0]).values(deleted_at_ms=old))
    dry = cli_json(home, db_url, "retain", "--purge-trash-after", "10d", "--dry-run")
    assert [i["threadId"] for i in dry["purge"]["items"]] == [ids[0]]
    out = cli_json(home, db_url, "retain", "--purge-trash-after", "10d")
    assert [i["threadId"] for i in out["purge"]["items"]] == [ids[0]]
    # The report's shape is the one every archive command prints (docs/archive.md).
    for report in (dry["purge"], out["purge"]):
        assert report["bytesBefore"] > 0 and report["bytesAfter"] == 0
        for item in report["items"]:
            assert set(item) == {"threadId", "action", "path", "from"}
            assert item["action"] == "purge" and item["from"] == item["path"]
    assert not list(home.rglob(threads[ids[0]]["path"].name))
    left = cli_json(home, db_url, "trash", "list", "--json")
    assert [r["threadId"] for r in left] == [ids[1]]


def test_retain_bad_policy_is_a_clean_error(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    imported(home, db_url)
    (home / "rollouts-retention.toml").write_text("[retention\nkeep_newest = ")
    assert_clean_failure(rollouts(home, db_url, "retain"), "rollouts-retention.toml")
    (home / "rollouts-retention.toml").write_text('[retention]\narchive_after = "soon"\n')
    assert_clean_failure(rollouts(home, db_url, "retain"), "not a duration")
    assert_clean_failure(rollouts(home, db_url, "retain", "--vault-after", "x"), "not a duration")
    (home / "rollouts-retention.toml").write_text('[retention]\nkeep_newest = "5"\n')
    assert_clean_failure(rollouts(home, db_url, "retain"), "keep_newest must be a whole number")
    (home / "rollouts-retention.toml").write_text("[retention]\ncompress = \"no\"\n")
    assert_clean_failure(rollouts(home, db_url, "retain"), "compress must be true or false")
    missing = tmp_path / "typo.toml"
    assert_clean_failure(
        rollouts(home, db_url, "retain", "--config", str(missing)), "no such policy file"
    )
    assert_clean_failure(rollouts(home, db_url, "unarchive"), "name one or more thread ids")


def _expected_tokens(home: Path) -> tuple[dict[tuple[str, str], int], set[str]]:
    """(model, day) -> total tokens, from each thread's last token_count event.

    Threads with a revert segment (`..._<id>.jsonl`) are left out and returned
    apart: what a rollback does to the usage is the replay's business (tested
    with the mapping), not a file-level fact.
    """
    by_thread: dict[str, list[Path]] = defaultdict(list)
    for p in rollout_files(home):
        by_thread[thread_id_of(p)].append(p)
    out: dict[tuple[str, str], int] = defaultdict(int)
    reverted = set()
    for tid, paths in by_thread.items():
        if len(paths) > 1:
            reverted.add(tid)
            continue
        model, total = _expected_tokens_of(paths[0])
        out[(model, str(meta(paths[0])["timestamp"])[:10])] += total
    return dict(out), reverted


def test_stats_json_on_real_corpus(db_url: str, tmp_path: Path) -> None:
    home = copy_home(CORPUS / "codex-0.169.0", tmp_path / "home")
    files = rollout_files(home)
    tokens, reverted = _expected_tokens(home)
    assert reverted  # the corpus has a thread with a revert segment
    imported(home, db_url)

    active = [p for p in files if "archived_sessions" not in p.parts]
    archived = [p for p in files if "archived_sessions" in p.parts]
    compress_p, vault_p, delete_p = active[0], active[1], active[2]
    plain_sizes = {p.name: p.stat().st_size for p in files}
    metas = {p: meta(p) for p in files}  # read before the files move
    del_tokens = _expected_tokens_of(delete_p)
    cli_json(home, db_url, "archive", thread_id_of(compress_p), "--compress", "--json")
    cli_json(home, db_url, "archive", thread_id_of(vault_p), "--vault", "--json")
    cli_json(home, db_url, "delete", thread_id_of(delete_p), "--json")
    zst = home / "archived_sessions" / (compress_p.name + ".zst")
    assert zst.exists()

    st = cli_json(home, db_url, "stats", "--json")
    indexed = [p for p in files if p != delete_p]
    # by state
    assert st["state"]["compressed"] == {"files": 1, "bytes": zst.stat().st_size}
    assert st["state"]["vaulted"] == {"files": 1, "bytes": plain_sizes[vault_p.name]}
    assert st["state"]["archived"] == {
        "files": len(archived),
        "bytes": sum(plain_sizes[p.name] for p in archived),
    }
    rest = [p for p in active if p not in (compress_p, vault_p, delete_p)]
    assert st["state"]["active"] == {
        "files": len(rest),
        "bytes": sum(plain_sizes[p.name] for p in rest),
    }
    assert st["state"]["trash"] == {"files": 1, "bytes": plain_sizes[delete_p.name]}

    def on_disk(p: Path) -> int:
        return zst.stat().st_size if p == compress_p else plain_sizes[p.name]

    # by project (cwd of session_meta)
    want_project: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "bytes": 0})
    for p in indexed:
        slot = want_project[metas[p]["cwd"]]
        slot["files"] += 1
        slot["bytes"] += on_disk(p)
    assert st["project"] == dict(want_project)
    # by month (all sessions of the corpus were made in November 2026)
    assert st["month"] == {
        "2026-11": {"files": len(indexed), "bytes": sum(on_disk(p) for p in indexed)}
    }
    # by source: exec sessions are those whose session_meta says so
    exec_files = [p for p in indexed if metas[p].get("source") == "exec"]
    assert exec_files
    assert st["source"]["exec"] == {
        "files": len(exec_files),
        "bytes": sum(on_disk(p) for p in exec_files),
    }
    assert sum(v["files"] for v in st["source"].values()) == len(indexed)
    # tokens by model and day (the deleted thread is no longer counted)
    want_tokens = dict(tokens)
    key = (del_tokens[0], str(metas[delete_p]["timestamp"])[:10])
    want_tokens[key] -= del_tokens[1]
    with open_store(db_url) as store, store.engine.connect() as conn:
        for tid in reverted:  # its usage after the rollback, as the replay computed it
            row = conn.execute(
                select(
                    s.threads.c.model, s.threads.c.created_at_ms, s.threads.c.tokens_total
                ).where(s.threads.c.id == tid)
            ).one()
            day = time.strftime("%Y-%m-%d", time.gmtime(row[1] / 1000))
            want_tokens[(row[0], day)] = want_tokens.get((row[0], day), 0) + int(row[2] or 0)
    got = {(r["model"], r["day"]): r["tokens"] for r in st["tokens"]}
    assert got == {k: v for k, v in want_tokens.items() if k in got}
    assert sum(got.values()) == sum(want_tokens.values()) > 0
    # the vault holds the vaulted file's bytes, compressed
    assert st["vault"]["logical"] == plain_sizes[vault_p.name]
    assert 0 < st["vault"]["stored"] < st["vault"]["logical"]


def _expected_tokens_of(path: Path) -> tuple[str, int]:
    model, total = "", 0
    for rec in json_lines(path):
        payload = rec.get("payload") or {}
        if rec.get("type") == "turn_context" and payload.get("model"):
            model = payload["model"]
        info = payload.get("info") if payload.get("type") == "token_count" else None
        if info and info.get("total_token_usage"):
            total = int(info["total_token_usage"]["total_tokens"])
    return model, total
