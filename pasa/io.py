"""Small file helpers shared by the runner, the evaluator and the scripts: atomic writes, tolerant jsonl."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
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


def iter_jsonl(path: str, required: tuple[str, ...] = (), counts=None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; malformed lines and records missing ``required`` keys are logged
    with their line number and skipped. Line numbers start at 1.

    ``counts`` (a ``collections.Counter``), when given, counts the skips under ``"malformed_lines"`` (bad JSON or
    not an object) and ``"missing_fields"``, so a caller can report every record it dropped.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
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
