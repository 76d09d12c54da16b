"""ResponseCache: the persistent SQLite store every LLM answer goes through."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from jalign.llm.cache import ResponseCache, cache_key

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_put_get_round_trip(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    value = {"text": "日本語の答え。", "input_tokens": 3, "output_tokens": 5, "finish_reason": None}
    cache.put_many({"k1": value, "k2": {"probs": {"A": 0.75, "B": 0.25}, "mass": 0.9}})
    assert cache.get("k1") == value
    assert cache.get("k2") == {"probs": {"A": 0.75, "B": 0.25}, "mass": 0.9}
    assert cache.get("missing") is None
    assert len(cache) == 2
    cache.put_many({})  # no-op
    assert len(cache) == 2


def test_put_replaces_existing_key(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many({"k": {"text": "old"}})
    cache.put_many({"k": {"text": "new"}})
    assert cache.get("k") == {"text": "new"}
    assert len(cache) == 1


def test_get_many_beyond_the_sqlite_variable_chunk(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    items = {f"key{i:05d}": {"i": i} for i in range(1234)}
    cache.put_many(items)
    wanted = sorted(items) + [f"absent{i}" for i in range(300)]
    found = cache.get_many(wanted)
    assert found == items  # every present key across all 500-key chunks, nothing for absent ones
    assert cache.get_many([]) == {}


def test_persists_across_instances(tmp_path):
    path = tmp_path / "nested" / "dir" / "c.sqlite"  # parent directories are created
    first = ResponseCache(path)
    first.put_many({"a": {"text": "x"}, "b": {"text": "y"}})
    second = ResponseCache(path)
    assert second.get_many(["a", "b"]) == {"a": {"text": "x"}, "b": {"text": "y"}}
    assert len(second) == 2


def test_default_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "env-cache.sqlite"
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(path))
    ResponseCache().put_many({"k": {"v": 1}})
    assert path.exists()
    assert ResponseCache(path).get("k") == {"v": 1}


def test_cache_key_is_order_independent_and_content_sensitive():
    a = cache_key({"model": "m", "messages": [{"role": "user", "content": "こんにちは"}], "seed": 0})
    b = cache_key({"seed": 0, "messages": [{"role": "user", "content": "こんにちは"}], "model": "m"})
    c = cache_key({"model": "m", "messages": [{"role": "user", "content": "こんばんは"}], "seed": 0})
    assert a == b != c
    assert len(a) == 64


def test_threads_share_one_instance(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for i in range(25):
                cache.put_many({f"t{t}-{i}": {"t": t, "i": i}})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(cache) == 100


def _writer(path: str, worker: int, n: int, barrier) -> None:
    cache = ResponseCache(path)
    barrier.wait()  # all processes start writing at the same moment
    for i in range(0, n, 5):  # many small transactions: maximal lock contention
        cache.put_many(
            {f"w{worker}-{j}": {"worker": worker, "j": j, "text": "答" * 20} for j in range(i, i + 5)}
        )


def test_concurrent_writer_processes(tmp_path, monkeypatch):
    # spawn children import this module by name: make the repository root importable in them
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    path = tmp_path / "shared.sqlite"
    ResponseCache(path)  # create the schema once, as a stage would
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(path), w, 200, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    cache = ResponseCache(path)
    keys = [f"w{w}-{j}" for w in range(4) for j in range(200)]
    found = cache.get_many(keys)
    assert len(found) == 800 == len(cache)
    assert all(
        found[f"w{w}-{j}"] == {"worker": w, "j": j, "text": "答" * 20} for w in range(4) for j in range(200)
    )
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_failed_write_names_the_cache_and_is_raised_at_once(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("DROP TABLE responses")  # every write now fails
    blocker.commit()
    blocker.close()
    with pytest.raises(RuntimeError, match=r"c\.sqlite: writing answers failed \(no such table"):
        cache.put_many({"k": {"text": "x"}})


def test_default_path_is_found_from_the_repository_root(tmp_path, monkeypatch):
    from jalign.llm.cache import CACHE_RELATIVE, cache_path, project_root

    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / "stages" / "deep").mkdir(parents=True)
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpa1b2c3"  # `dvc exp run --temp` works in a copy
    (copy / "stages").mkdir(parents=True)
    (copy / ".dvc").mkdir()
    assert project_root(repo / "stages" / "deep") == repo
    assert project_root(copy / "stages") == repo  # the copy shares the workspace's cache
    assert project_root(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # no repository above
    monkeypatch.delenv("JALIGN_LLM_CACHE")
    monkeypatch.chdir(copy)
    assert cache_path() == repo / CACHE_RELATIVE
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "override.sqlite"))
    assert cache_path() == tmp_path / "override.sqlite"  # the environment still wins
    monkeypatch.setenv("JALIGN_LLM_CACHE", "team/cache.sqlite")
    assert cache_path() == repo / "team" / "cache.sqlite"  # relative: from the root, also in the copy
