"""The common image references (``busybox``, ``user/app:1.2``) read without :mod:`ketch.spec.reference`.

That module compiles its grammar with :mod:`re` and builds :mod:`dataclasses` (~15 ms of imports), which
``run`` and ``ps`` would pay on every call only to learn that ``busybox:latest`` is fine. A *plain* reference
here is a strict subset of its grammar: Docker Hub paths (no registry host, no digest) of lower-case
alphanumeric components joined by single ``.``, ``_`` or ``-``, and an optional tag. Every plain reference
parses, and :func:`familiar` says what :func:`ketch.spec.reference.parse` would; anything else is left to it.
"""

from __future__ import annotations

__all__ = ["familiar", "is_image_id", "split_plain"]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_SEPARATORS = frozenset("._-")
_TAG_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TAG_REST = _TAG_FIRST | frozenset(".-")
_HEX = frozenset("0123456789abcdef")
_LONGEST = 200  # well inside the 255 characters allowed for a path (with "library/" added)


def is_image_id(text: str) -> bool:
    """An image ID, full or with its algorithm (``sha256:`` and 64 lower-case hex digits)."""
    digits = text.removeprefix("sha256:")
    return len(digits) == 64 and all(char in _HEX for char in digits)


def _component(text: str) -> bool:
    if not text or text[0] not in _ALNUM or text[-1] not in _ALNUM:
        return False
    previous_separator = False
    for char in text:
        if char in _ALNUM:
            previous_separator = False
        elif char in _SEPARATORS and not previous_separator:
            previous_separator = True
        else:
            return False
    return True


def split_plain(text: str) -> tuple[str, str | None] | None:
    """``(path, tag)`` of a plain reference (``user/app``, ``None`` for no tag); None for any other text."""
    if len(text) > _LONGEST:
        return None
    name, colon, tag = text.partition(":")
    if colon and not (tag and tag[0] in _TAG_FIRST and len(tag) <= 128 and all(c in _TAG_REST for c in tag)):
        return None
    components = name.split("/")
    if len(components) > 1 and ("." in components[0] or components[0] == "localhost"):
        return None  # the first element names a registry
    if not all(_component(component) for component in components):
        return None
    if len(name) == 64 and all(char in _HEX for char in name):
        return None  # refused as an image ID, whatever follows
    return name, tag if colon else None


def familiar(path: str) -> str:
    """The familiar name of a plain reference's path (``library/busybox`` -> ``busybox``)."""
    rest = path.removeprefix("library/")
    return rest if rest != path and "/" not in rest else path
