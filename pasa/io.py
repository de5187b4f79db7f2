"""Small file helpers shared by the runner, the evaluator and the scripts: atomic writes, per-item locks,
tolerant jsonl.

Files and folders are created with the user's umask (``0o666 & ~umask`` / ``0o777 & ~umask``), like any other
tool: ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700, so :func:`make_temp_file` and :func:`make_temp_dir`
widen them to what ``open()``/``os.makedirs`` would have given.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"  # atomic-write temporaries: ".tmp-<host>-<pid>-<random><name>"
LOCK_SUFFIX = ".lock"
# A temporary or takeover file whose writer cannot be identified is removed only after this long.
UNKNOWN_OWNER_STALE_S = 3600.0

# json.loads recurses once per nesting level (three per tree level: node, "child", list), so a tree deeper than
# ~330 levels hits the default recursion limit; such files are parsed again in a thread with a larger stack.
DEEP_JSON_RECURSION_LIMIT = 200_000
DEEP_JSON_STACK_BYTES = 512 * 1024 * 1024

_umask_lock = threading.Lock()
_deep_json_lock = threading.Lock()


# -- modes ------------------------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock: there is no getter)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (``open()``'s)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new folder under the current umask (``os.makedirs``')."""
    return 0o777 & ~current_umask()


def make_temp_file(folder: str, prefix: str = TMP_PREFIX, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` with the umask's mode instead of 0600: ``(fd, path)``."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, file_mode())
    return fd, path


def make_temp_dir(parent: str | None = None, prefix: str = TMP_PREFIX) -> str:
    """``tempfile.mkdtemp`` with the umask's mode instead of 0700 (for a folder renamed into place later)."""
    path = tempfile.mkdtemp(dir=parent, prefix=prefix)
    os.chmod(path, dir_mode())
    return path


# -- owners: host + pid -----------------------------------------------------------------------------------------
def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (``kill(pid, 0)``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _tmp_tag() -> str:
    """``<host>-<pid>-`` with the host made file-name safe (no '-' inside, so the pid can be parsed back)."""
    host = "".join(c if c.isalnum() else "_" for c in this_host())
    return f"{host}-{os.getpid()}-"


# -- atomic writes ----------------------------------------------------------------------------------------------
def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    The temporary file is named ``.tmp-<host>-<pid>-…<name>`` so that :func:`remove_stale_temp_files` can tell
    a temporary left by a killed writer from one being written right now by another process.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = make_temp_file(folder, prefix=TMP_PREFIX + _tmp_tag(), suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that also parses deeply nested documents (a 3,000-level result tree) instead of raising
    ``RecursionError``; a document too deep even for that raises ``ValueError``."""
    try:
        return json.loads(text)
    except RecursionError:
        pass
    out: dict[str, Any] = {}

    def parse() -> None:
        try:
            out["value"] = json.loads(text)
        except BaseException as err:  # handed back to the caller's thread
            out["error"] = err

    with _deep_json_lock:  # the recursion limit and the thread stack size are process-wide settings
        old_limit, old_stack = sys.getrecursionlimit(), threading.stack_size()
        try:
            threading.stack_size(DEEP_JSON_STACK_BYTES)
            sys.setrecursionlimit(max(old_limit, DEEP_JSON_RECURSION_LIMIT))
            worker = threading.Thread(target=parse, name="deep-json")
            worker.start()
            worker.join()
        finally:
            sys.setrecursionlimit(old_limit)
            threading.stack_size(old_stack)
    if "error" in out:
        if isinstance(out["error"], RecursionError):
            raise ValueError("JSON nested too deeply to parse") from out["error"]
        raise out["error"]
    return out["value"]


def load_json(path: str) -> Any:
    """Read a JSON file (UTF-8) with :func:`loads_json`."""
    with open(path, encoding="utf-8") as f:
        return loads_json(f.read())


def _temp_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` encoded in a temporary file name, or None (an older or foreign temporary)."""
    rest = name[len(TMP_PREFIX) :]
    parts = rest.split("-", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def remove_stale_temp_files(folder: str, max_age_s: float = UNKNOWN_OWNER_STALE_S) -> list[str]:
    """Delete ``.tmp-*`` files a killed writer left in ``folder``; returns their names.

    A temporary written on this host is stale when its pid is dead; one from another host, or without an owner
    in its name, when it is older than ``max_age_s`` (a live writer renames it within seconds).
    """
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    host, now = _tmp_tag().split("-", 1)[0], time.time()
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        path = os.path.join(folder, name)
        owner = _temp_owner(name)
        try:
            if owner is not None and owner[0] == host:
                stale = owner[1] != os.getpid() and not pid_alive(owner[1])
            else:
                stale = now - os.path.getmtime(path) > max_age_s
            if stale and os.path.isfile(path):
                os.unlink(path)
                removed.append(name)
        except OSError:  # removed meanwhile by another process
            continue
    if removed:
        logger.warning("%s: removed %d temporary file(s) left by a killed run", folder, len(removed))
    return removed


# -- per-item locks ---------------------------------------------------------------------------------------------
class ItemLock:
    """An ``O_EXCL`` lock file (``<path>.lock`` holding ``{"pid", "host", "time"}``) so that several processes,
    or machines on a shared disk, working on one output folder split the items instead of computing each twice.

    ``acquire()`` returns False when another live process holds the lock. A lock from a dead pid on this host
    is taken over; one from another host is respected (its liveness cannot be checked) unless it is older than
    ``stale_after_s``. Use as ``if lock.acquire(): try: ... finally: lock.release()``.
    """

    def __init__(self, path: str, stale_after_s: float | None = None):
        self.path = path + LOCK_SUFFIX
        self.stale_after_s = stale_after_s
        self.held = False

    def _owner_record(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": this_host(), "time": time.time()})

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self._owner_record())
        self.held = True
        return True

    def read_owner(self) -> dict[str, Any] | None:
        """The lock file's record, ``{}`` when unreadable (being written or damaged), None when absent."""
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _is_stale(self, owner: dict[str, Any]) -> bool:
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == this_host():
            return pid != os.getpid() and not pid_alive(pid)
        try:
            age = time.time() - os.path.getmtime(self.path)
        except OSError:
            return False
        if not owner:  # unreadable: a writer between create and write, or a damaged file
            return age > UNKNOWN_OWNER_STALE_S
        return self.stale_after_s is not None and age > self.stale_after_s

    def acquire(self) -> bool:
        if self._create():
            return True
        owner = self.read_owner()
        if owner is None:  # released meanwhile
            return self._create()
        if not self._is_stale(owner):
            return False
        # Take over under a second O_EXCL file, so two processes that both saw the stale lock cannot both
        # delete-and-create it (the second would delete the first one's fresh lock).
        takeover = ItemLock(self.path, stale_after_s=UNKNOWN_OWNER_STALE_S)
        if not takeover.acquire():
            return False
        try:
            if self.read_owner() != owner:  # someone else took it over already
                return False
            logger.warning("%s: taking over a stale lock (%s)", self.path, owner or "unreadable")
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return self._create()
        finally:
            takeover.release()

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def describe_owner(self) -> str:
        owner = self.read_owner() or {}
        return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"


# -- jsonl ------------------------------------------------------------------------------------------------------
def iter_jsonl(path: str, required: tuple[str, ...] = (), counts=None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; malformed lines and records missing ``required`` keys are logged
    with their line number and skipped. Line numbers start at 1.

    A line that is not valid UTF-8 is reported (line number, byte offset) and skipped, not fatal. ``counts``
    (a ``collections.Counter``), when given, counts the skips under ``"malformed_lines"`` (bad UTF-8, bad JSON or
    not an object) and ``"missing_fields"``, so a caller can report every record it dropped.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                logger.warning(
                    "%s:%d: not UTF-8 (byte 0x%02x at column %d), skipped; re-save the file as UTF-8",
                    path,
                    lineno,
                    raw[err.start],
                    err.start + 1,
                )
                _count(counts, "malformed_lines")
                continue
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                logger.warning("%s:%d: malformed JSON, skipped (%s)", path, lineno, err)
                _count(counts, "malformed_lines")
                continue
            if not isinstance(record, dict):
                logger.warning("%s:%d: expected a JSON object, got %s, skipped", path, lineno, type(record).__name__)
                _count(counts, "malformed_lines")
                continue
            missing = [k for k in required if k not in record]
            if missing:
                logger.warning("%s:%d: missing field(s) %s, skipped", path, lineno, ", ".join(missing))
                _count(counts, "missing_fields")
                continue
            yield lineno, record


def _count(counts, key: str) -> None:
    if counts is not None:
        counts[key] += 1
