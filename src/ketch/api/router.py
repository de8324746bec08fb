"""Routes by method and path pattern.

A pattern is a path whose ``{name}`` segments capture one path segment and whose ``{name:.*}`` segments
capture the rest of the path, slashes included (image names such as ``127.0.0.1:5000/ketch/bb`` appear in
paths like ``/images/{name:.*}/push``). Routes are tried in the order they were added, as gorilla/mux does in
moby, so put a specific pattern before a general one that also matches its paths. Patterns are matched
against the percent-decoded path with its version prefix removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ketch.api.http import Handler
from ketch.common.errors import InvalidArgument

__all__ = ["Route", "Router"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(\.\*|\.\+))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise InvalidArgument(f"route pattern {pattern!r} must start with '/'")
    parts: list[str] = []
    names: set[str] = set()
    position = 0
    for match in [*_PARAM.finditer(pattern), None]:
        literal = pattern[position : match.start() if match else len(pattern)]
        if "{" in literal or "}" in literal:
            raise InvalidArgument(f"route pattern {pattern!r} has a malformed {{parameter}}")
        parts.append(re.escape(literal))
        if match is None:
            break
        name, greedy = match.group(1), match.group(2)
        if name in names:
            raise InvalidArgument(f"route pattern {pattern!r} names {{{name}}} twice")
        names.add(name)
        parts.append(f"(?P<{name}>{greedy})" if greedy else f"(?P<{name}>[^/]+)")
        position = match.end()
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def add(self, methods: str | Iterable[str], pattern: str, handler: Handler) -> None:
        wanted = frozenset([methods] if isinstance(methods, str) else methods)
        for route in self._routes:
            if route.pattern == pattern and route.methods & wanted:
                taken = ", ".join(sorted(route.methods & wanted))
                raise InvalidArgument(f"route {taken} {pattern} is already registered")
        self._routes.append(Route(wanted, pattern, _compile(pattern), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The first route for ``method`` whose pattern matches ``path``, and its parameters; else None.

        A path that matches only under another method is not found either: dockerd answers both with 404.
        """
        for route in self._routes:
            if method in route.methods:
                found = route.regex.match(path)
                if found is not None:
                    return route.handler, found.groupdict()
        return None
