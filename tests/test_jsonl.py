"""The one JSON-lines reader seeds, labels and filled sheets share: line numbers, a BOM, blank
lines, and one clear error naming the file and the first bad line."""

from __future__ import annotations

import pytest

from distill.errors import DistillError
from distill.jsonl import read_objects


def test_objects_with_their_line_numbers(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes('\ufeff{"a": 1}\n\n  \n{"b": "é"}\r\n'.encode())
    assert read_objects(p) == [(1, {"a": 1}), (4, {"b": "é"})]
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert read_objects(tmp_path / "empty.jsonl") == []


@pytest.mark.parametrize("content,message", [
    (b'{"a": 1}\n{"a": }\n', "line 2: invalid JSON (Expecting value at column 7)"),
    (b'{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
    (b'{"a": 1}\n\n"text"\n', "line 3: expected a JSON object, got str"),
    (b'{"a": 1}\n{"a": "\xff"}\n', "line 2: not UTF-8 text"),
])
def test_the_first_bad_line_is_named(tmp_path, content, message):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(content)
    with pytest.raises(DistillError) as e:
        read_objects(p)
    assert str(e.value) == f"{p} {message}"
