import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections import Counter

import pytest

from pasa.io import (
    ItemLock,
    _tmp_tag,
    iter_jsonl,
    make_temp_dir,
    remove_stale_temp_files,
    this_host,
    write_json_atomic,
)


def test_iter_jsonl_skips_and_counts(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{bad\n[1]\n{"b": 2}\n', encoding="utf-8")
    counts = Counter()
    assert list(iter_jsonl(str(path), required=("a",), counts=counts)) == [(1, {"a": 1})]
    assert counts == Counter(malformed_lines=2, missing_fields=1)


def test_write_json_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    write_json_atomic(str(target), {"k": [1, 2]})
    assert json.loads(target.read_text()) == {"k": [1, 2]}

    def crash(src, dst):  # the process dies between writing the temporary file and renaming it
        raise OSError("disk went away")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        write_json_atomic(str(target), {"k": [3]})
    assert json.loads(target.read_text()) == {"k": [1, 2]}  # the finished file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # and the temporary file is gone


def test_iter_jsonl_skips_a_line_that_is_not_utf8(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": "caf\xe9"}\n{"a": 3}\n')
    counts = Counter()
    with caplog.at_level(logging.WARNING):
        assert [r["a"] for _, r in iter_jsonl(str(path), counts=counts)] == [1, 3]
    assert "x.jsonl:2: not UTF-8 (byte 0xe9 at column 11)" in caplog.text and counts["malformed_lines"] == 1


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_and_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(str(tmp_path / "out.json"), {"k": 1})
        folder = make_temp_dir(str(tmp_path))
        lock = ItemLock(str(tmp_path / "q.json"))
        assert lock.acquire()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.json").st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~umask
    assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o666 & ~umask


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    host = _tmp_tag().split("-")[0]
    dead = tmp_path / f".tmp-{host}-{_dead_pid()}-abc0.json"
    mine = tmp_path / f".tmp-{_tmp_tag()}abc1.json"  # this process is writing it
    foreign_new = tmp_path / ".tmp-otherhost-1-abc2.json"
    legacy_old = tmp_path / ".tmp-xyz3.json"
    for p in (dead, mine, foreign_new, legacy_old):
        p.write_text("{")
    old = time.time() - 2 * 3600
    os.utime(legacy_old, (old, old))
    assert sorted(remove_stale_temp_files(str(tmp_path))) == sorted([dead.name, legacy_old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, foreign_new.name])


def test_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path):
    target = str(tmp_path / "3.json")
    first, second = ItemLock(target), ItemLock(target)
    assert first.acquire() and not second.acquire()
    assert f"pid {os.getpid()}" in second.describe_owner()
    first.release()
    assert second.acquire()
    second.release()
    # a lock left by a dead process on this host is taken over
    (tmp_path / "3.json.lock").write_text(json.dumps({"pid": _dead_pid(), "host": this_host(), "time": 0}))
    assert first.acquire()
    first.release()
    # another host's lock is respected unless older than stale_after_s
    (tmp_path / "3.json.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": 0}))
    assert not ItemLock(target).acquire()
    old = time.time() - 120
    os.utime(tmp_path / "3.json.lock", (old, old))
    assert ItemLock(target, stale_after_s=60).acquire()


LOCK_WORKER = """
import json, sys, time
from pasa.io import ItemLock
done = []
for i in range(int(sys.argv[2])):
    lock = ItemLock(f"{sys.argv[1]}/{i}.json")
    if lock.acquire():
        time.sleep(0.02)
        done.append(i)
print(json.dumps(done))
"""


def test_two_processes_split_the_items(tmp_path):
    """Two processes racing over the same 40 items: every item is locked by exactly one of them."""
    procs = [
        subprocess.Popen([sys.executable, "-c", LOCK_WORKER, str(tmp_path), "40"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    done = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert sorted(done[0] + done[1]) == list(range(40))


def test_paper_db_and_search_index_follow_the_umask(tmp_path):
    """The outputs renamed into place from mkstemp/mkdtemp temporaries get the umask's mode."""
    from pasa.paper import Paper
    from pasa.tools.local_search import LocalSearchIndex
    from pasa.tools.paper_db import build_paper_db

    papers = [Paper("2401.00001", "A title", "An abstract.", {}, "SearchFrom:test", "20240101")]
    old = os.umask(0o002)
    try:
        build_paper_db(papers, str(tmp_path / "db.zip"), str(tmp_path / "id2paper.json"))
        LocalSearchIndex.build(papers, str(tmp_path / "index"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "db.zip").st_mode) == 0o664
    assert stat.S_IMODE(os.stat(tmp_path / "id2paper.json").st_mode) == 0o664
    assert stat.S_IMODE(os.stat(tmp_path / "index").st_mode) == 0o775
