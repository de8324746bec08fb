"""Routing: path parameters, greedy parameters, order, methods, and bad patterns."""

from __future__ import annotations

import pytest

from ketch.api.http import Handler, Reply, Request, Response
from ketch.api.router import Router
from ketch.common.errors import InvalidArgument


def handler(name: str) -> Handler:
    async def route(request: Request) -> Reply:
        return Response.text(name)

    route.__name__ = name
    return route


@pytest.fixture
def router() -> Router:
    r = Router()
    r.add("GET", "/containers/json", handler("list"))
    r.add("GET", "/containers/{name}/json", handler("inspect"))
    r.add(("GET", "HEAD"), "/containers/{name}/archive", handler("archive"))
    r.add("DELETE", "/images/{name:.*}", handler("rmi"))
    r.add("GET", "/images/{name:.*}/json", handler("image-inspect"))
    r.add("POST", "/images/{name:.*}/tag", handler("tag"))
    return r


@pytest.mark.parametrize(
    ("method", "path", "expected", "params"),
    [
        ("GET", "/containers/json", "list", {}),
        ("GET", "/containers/abc/json", "inspect", {"name": "abc"}),
        ("HEAD", "/containers/abc/archive", "archive", {"name": "abc"}),
        ("DELETE", "/images/127.0.0.1:5000/ketch/bb:t1", "rmi", {"name": "127.0.0.1:5000/ketch/bb:t1"}),
        ("GET", "/images/library/busybox:latest/json", "image-inspect", {"name": "library/busybox:latest"}),
        ("POST", "/images/sha256:abc/tag", "tag", {"name": "sha256:abc"}),
        ("GET", "/containers/a/b/json", None, None),  # {name} is one segment
        ("POST", "/containers/json", None, None),  # wrong method: not found
        ("GET", "/containers/json/", None, None),
        ("GET", "/containers//json", None, None),
    ],
)
def test_match(
    router: Router, method: str, path: str, expected: str | None, params: dict[str, str] | None
) -> None:
    found = router.match(method, path)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found[0].__name__, found[1]) == (expected, params)


def test_routes_are_tried_in_order() -> None:
    r = Router()
    r.add("GET", "/images/json", handler("list"))
    r.add("GET", "/images/{name:.*}", handler("any"))
    found = r.match("GET", "/images/json")
    assert found is not None and found[0].__name__ == "list"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("containers/json", "must start with '/'"),
        ("/containers/{name", "malformed"),
        ("/containers/{name:[a-z]+}", "malformed"),
        ("/a/{x}/b/{x}", "names {x} twice"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("{", r"\{").replace("}", r"\}")):
        Router().add("GET", pattern, handler("x"))


def test_duplicate_registration_is_refused(router: Router) -> None:
    with pytest.raises(InvalidArgument, match="HEAD /containers/\\{name\\}/archive is already registered"):
        router.add(("HEAD", "PUT"), "/containers/{name}/archive", handler("again"))
    router.add("PUT", "/containers/{name}/archive", handler("put"))  # another method is fine
