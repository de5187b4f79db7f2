import json
from collections import Counter

import pytest

from pasa.io import iter_jsonl, write_json_atomic


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
