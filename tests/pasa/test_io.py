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


def test_write_json_atomic_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(str(target), {"k": [1, 2]})
    assert json.loads(target.read_text()) == {"k": [1, 2]}
    with pytest.raises(TypeError):
        write_json_atomic(str(target), {"k": object()})  # not serialisable: the old file must survive
    assert json.loads(target.read_text()) == {"k": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
