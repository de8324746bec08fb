"""The Docker Engine API's version window, and the query conventions every endpoint shares.

Vocabulary:

- An *API version* is ``MAJOR.MINOR`` (``1.41``). Versions compare component by component as numbers, a missing
  component counting as 0, so ``1.9 < 1.10`` and ``1.4 == 1.4.0`` (moby ``api/types/versions``).
- The *window* is ``MIN_API`` to ``API_VERSION``: ketch reports ``API_VERSION`` in every ``Api-Version``
  header and in ``/version``, and accepts any request version inside the window.
- A request names its version with a path prefix (``/v1.41/containers/json``); an unprefixed path means
  ``API_VERSION``.
- *Negotiation* is the client's side: it uses the lower of its own maximum and the daemon's ``Api-Version``
  header, and 1.24 when a ``/_ping`` answer has no such header (both docker CLIs do this; see
  docker-api-traces/negotiation).
- *Booleans* in queries follow moby's ``httputils.BoolValue``: empty, ``0``, ``no``, ``false`` and ``none``
  (any case, surrounding spaces ignored) are false, anything else is true.
- *Filters* are the ``filters`` query parameter: JSON that maps a key to a set of values, either in the
  map form the docker CLI sends (``{"label":{"k=v":true}}``) or in the list form docker-py and old clients
  send (``{"label":["k=v"]}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping

from ketch.common.errors import InvalidArgument

__all__ = [
    "API_VERSION",
    "FALLBACK_API",
    "MIN_API",
    "Filters",
    "check_version",
    "compare_versions",
    "negotiate",
    "parse_bool",
    "split_version",
]

MIN_API = "1.24"
API_VERSION = "1.41"
# What a client uses when the daemon's /_ping names no version (the CLIs' fallback).
FALLBACK_API = "1.24"

_PREFIX = re.compile(r"/v(\d+(?:\.\d+)*)(/.*)\Z", re.DOTALL)
_FALSE = frozenset({"", "0", "no", "false", "none"})


def split_version(path: str) -> tuple[str | None, str]:
    """``/v1.41/containers/json`` -> ``("1.41", "/containers/json")``; ``/_ping`` -> ``(None, "/_ping")``."""
    match = _PREFIX.match(path)
    if match is None:
        return None, path
    return match.group(1), match.group(2)


def _components(version: str) -> list[int]:
    # moby's versions.compare: a component that is not a number counts as 0, as a missing one does.
    return [int(part) if part.isdigit() else 0 for part in version.split(".")]


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as, or newer than ``b``."""
    left, right = _components(a), _components(b)
    width = max(len(left), len(right))
    left += [0] * (width - len(left))
    right += [0] * (width - len(right))
    return (left > right) - (left < right)


_ACCEPTED: set[str] = set()  # versions already found inside the default window: every request checks one


def check_version(version: str, *, minimum: str = MIN_API, maximum: str = API_VERSION) -> None:
    """Raise InvalidArgument (400), with dockerd's words, for a request version outside the window."""
    default_window = minimum == MIN_API and maximum == API_VERSION
    if default_window and version in _ACCEPTED:
        return
    if compare_versions(version, minimum) < 0:
        raise InvalidArgument(
            f"client version {version} is too old. Minimum supported API version is {minimum}, "
            "please upgrade your client to a newer version"
        )
    if compare_versions(version, maximum) > 0:
        raise InvalidArgument(
            f"client version {version} is too new. Maximum supported API version is {maximum}"
        )
    if default_window and len(_ACCEPTED) < 64:
        _ACCEPTED.add(version)


def negotiate(server_version: str | None, client_maximum: str = API_VERSION) -> str:
    """The version a client should use, given the ``Api-Version`` header of the daemon's ``/_ping`` answer."""
    if not server_version:
        return FALLBACK_API
    return server_version if compare_versions(server_version, client_maximum) < 0 else client_maximum


def parse_bool(value: str) -> bool:
    """A query boolean the way dockerd reads it (see the module docstring)."""
    return value.strip().lower() not in _FALSE


class Filters:
    """The ``filters`` query parameter: each key maps to a set of values (moby ``filters.Args``)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Iterable[str]] | None = None) -> None:
        self._fields: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in (fields or {}).items()}

    @classmethod
    def from_json(cls, text: str) -> Filters:
        """Parse either form; an empty string is no filters. Bad JSON raises InvalidArgument("invalid filter")."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError:
            raise InvalidArgument("invalid filter") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filter")
        fields: dict[str, frozenset[str]] = {}
        for key, values in raw.items():
            if values is None:
                fields[key] = frozenset()
            elif isinstance(values, dict) and all(isinstance(v, bool) for v in values.values()):
                # The map form keeps a value whatever its boolean says, as Go's Args.Get does.
                fields[key] = frozenset(values)
            elif isinstance(values, list) and all(isinstance(v, str) for v in values):
                fields[key] = frozenset(values)
            else:
                raise InvalidArgument("invalid filter")
        return cls(fields)

    def to_json(self) -> str:
        """The map form the docker CLI sends; ``""`` when there are no filters (the parameter is then left out)."""
        if not self._fields:
            return ""
        return json.dumps(
            {k: dict.fromkeys(sorted(v), True) for k, v in sorted(self._fields.items())},
            separators=(",", ":"),
        )

    def get(self, key: str) -> list[str]:
        """The values of ``key``, sorted (Go's map order is random; sorting keeps answers reproducible)."""
        return sorted(self._fields.get(key, ()))

    def keys(self) -> list[str]:
        return sorted(self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filters) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(frozenset(self._fields.items()))

    def __repr__(self) -> str:
        fields = {k: self.get(k) for k in self.keys()}
        return f"Filters({fields!r})"

    def validate(self, accepted: Iterable[str]) -> None:
        """Raise InvalidArgument("invalid filter 'key'") for the first key (in sorted order) not accepted."""
        allowed = set(accepted)
        for key in self.keys():
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")

    def exact_match(self, key: str, source: str) -> bool:
        """True when ``key`` is not filtered on, or ``source`` is one of its values."""
        values = self._fields.get(key)
        return not values or source in values

    def fuzzy_match(self, key: str, source: str) -> bool:
        """True when ``key`` is not filtered on, or one of its values is ``source`` or a prefix of it."""
        values = self._fields.get(key)
        return not values or any(source.startswith(value) for value in values)

    def match_kv_list(self, key: str, sources: Mapping[str, str]) -> bool:
        """Label matching: every ``k`` or ``k=v`` value of ``key`` must be present in ``sources``."""
        values = self._fields.get(key)
        if not values:
            return True
        for value in values:
            name, has_value, wanted = value.partition("=")
            if name not in sources or (has_value and sources[name] != wanted):
                return False
        return True

    def get_bool(self, key: str, default: bool) -> bool:
        """A filter that must be exactly one of true/1 or false/0 (moby ``GetBoolOrDefault``)."""
        if key not in self._fields:
            return default
        values = self._fields[key]
        is_false = bool(values & {"0", "false"})
        is_true = bool(values & {"1", "true"})
        if is_false == is_true:
            shown = "=[" + " ".join(self.get(key)) + "]" if values else ""  # Go prints a []string so
            raise InvalidArgument(f"invalid filter '{key}{shown}'")
        return is_true
