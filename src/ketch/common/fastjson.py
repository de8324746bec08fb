"""JSON without importing :mod:`json`.

``import json`` pulls in :mod:`re` and :mod:`enum`, about 6 ms on these machines: a quarter of the time
budget of ``ketch-runtime run``. The C accelerator ``_json`` that :mod:`json` itself uses needs neither,
so short-lived commands parse and write JSON through it. Long-running code may use :mod:`json` directly;
both produce the same values. :func:`loads` rejects what :func:`json.loads` rejects, and also NaN and Infinity, which
are not JSON; it raises :class:`ValueError`, of which ``json.JSONDecodeError`` is a subclass.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads"]

_WS = " \t\n\r"


def _raise_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


class _Context:
    """The attributes ``_json.make_scanner`` reads from a decoder (see json/scanner.py)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_raise_constant)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed decoder context


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - text.rfind("\n", 0, pos)
    return f"line {line} column {col} (char {pos})"


def loads(data: str | bytes) -> Any:
    if isinstance(data, bytes | bytearray):
        # Not the utf-8-sig codec: importing it costs more than checking for the BOM here.
        text = bytes(data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode()
    else:
        text = data
    end = len(text)
    idx = 0
    while idx < end and text[idx] in _WS:
        idx += 1
    try:
        value, idx = _scan(text, idx)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: {_position(text, exc.value)}") from None
    except SystemError:
        # Some errors (an unterminated string, a missing value after a comma in an object) are reported by
        # the C scanner through json.decoder, which it finds only if already imported. Bad input is the
        # rare path: let the json module parse it and raise its JSONDecodeError (a ValueError).
        import json

        json.loads(text)
        raise ValueError("invalid JSON") from None
    finally:
        _Context.memo.clear()
    while idx < end and text[idx] in _WS:
        idx += 1
    if idx != end:
        raise ValueError(f"Extra data: {_position(text, idx)}")
    return value


def _float_repr(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return float.__repr__(value)


def _unserialisable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_compact = _json.make_encoder(
    None, _unserialisable, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)


def dumps(obj: Any, *, indent: int | None = None, compact: bool = True) -> str:
    """Serialise ``obj``; compact (``{"a":1}``) by default, or indented like ``json.dumps(indent=n)``."""
    if indent is not None or not compact:
        # Only human-facing output is indented; CPython 3.11's C encoder has no indent support.
        import json

        return json.dumps(obj, indent=indent)
    return "".join(_compact(obj, 0))
