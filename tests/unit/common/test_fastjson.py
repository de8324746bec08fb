import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketch.common import fastjson

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(values)
def test_matches_json_module(value: object) -> None:
    text = json.dumps(value)
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert fastjson.loads(fastjson.dumps(value)) == value


@pytest.mark.parametrize(
    "bad", ["", " ", "{", "[1,]", '{"a":1} x', "[1] [2]", "{'a': 1}", "01", '"abc', '{"a": 1, ', '{"a" 1}']
)
def test_rejects_what_json_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_error_without_json_module_loaded() -> None:
    """The C scanner reports some errors through json.decoder; a process that never imported json must
    still get a ValueError, not a SystemError."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'src'); from ketch.common import fastjson\n"
        "try:\n    fastjson.loads('{\"a\": \"1')\nexcept ValueError as e:\n    print('ok', e)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert out.stdout.startswith("ok Unterminated string"), out.stderr


def test_bytes_and_bom() -> None:
    assert fastjson.loads(b'\xef\xbb\xbf{"a": [1]}') == {"a": [1]}


def test_indent_matches_json() -> None:
    value = {"b": [1, {"c": None}], "a": "x"}
    assert fastjson.dumps(value, indent=2) == json.dumps(value, indent=2)


def test_unserialisable() -> None:
    with pytest.raises(TypeError):
        fastjson.dumps({"a": object()})


def test_rejects_non_json_constants() -> None:
    # json.loads accepts NaN and Infinity; they are not JSON and a config carrying them is broken.
    for bad in ("NaN", "[Infinity]", "-Infinity"):
        with pytest.raises(ValueError):
            fastjson.loads(bad)
