"""Container and exec IDs: generation, the 12-character short form, and lookup by unique prefix.

Vocabulary (moby pkg/stringid, pkg/truncindex):

- *ID*: 64 lowercase hex digits from 32 random bytes;
- *short ID*: its first 12 digits, as ``docker ps`` shows it and as a container's default hostname. A fresh ID
  never has an all-digit short ID, because a hostname made only of digits confuses resolvers (moby#3869);
- *prefix*: any leading part of an ID that a user types; it names an ID when exactly one ID starts with it.

Pure functions over strings; callers keep the IDs (engine/db.py reads candidates out of SQLite).
"""

from __future__ import annotations

import os

from ketch.common.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "FULL_LEN",
    "SHORT_LEN",
    "AmbiguousPrefix",
    "generate_id",
    "is_full_id",
    "lookup_prefix",
    "truncate_id",
]

FULL_LEN = 64
SHORT_LEN = 12
_HEX = frozenset("0123456789abcdef")


class AmbiguousPrefix(InvalidArgument):
    """More than one ID starts with the prefix the user gave (Docker answers this with a 500; the fault is
    the request's, so ketch says 400, as it does for an ambiguous image ID)."""


def generate_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh ID whose short form is not all digits (moby stringid.GenerateRandomID draws again then)."""
    while True:
        candidate = random_bytes(FULL_LEN // 2).hex()
        if not candidate[:SHORT_LEN].isdigit():
            return candidate


def truncate_id(value: str) -> str:
    """The short form: the part after an ``algorithm:`` prefix, cut to 12 characters."""
    _, sep, rest = value.partition(":")
    return (rest if sep else value)[:SHORT_LEN]


def is_full_id(value: str) -> bool:
    return len(value) == FULL_LEN and _HEX.issuperset(value)


def lookup_prefix(prefix: str, ids: Iterable[str], *, kind: str = "container") -> str:
    """The one ID in ``ids`` that starts with ``prefix``.

    Raises InvalidArgument for an empty prefix or one with a space (truncindex's ErrEmptyPrefix and
    ErrIllegalChar), AmbiguousPrefix when several match, and NotFound ("No such container: x") when none does.
    """
    if not prefix:
        raise InvalidArgument("Prefix can't be empty")
    if " " in prefix:
        raise InvalidArgument("illegal character: ' '")
    found = ""
    for candidate in ids:
        if candidate.startswith(prefix) and candidate != found:
            if found:
                raise AmbiguousPrefix(f"Multiple IDs found with provided prefix: {prefix}")
            found = candidate
    if not found:
        raise NotFound(f"No such {kind}: {prefix}")
    return found
