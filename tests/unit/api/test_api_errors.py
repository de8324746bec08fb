"""The one mapping from ketch's error categories to HTTP answers."""

from __future__ import annotations

import json
import logging

import pytest

from ketch.api.errors import error_response, page_not_found, status_for
from ketch.common import errors


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidArgument("bad"), 400),
        (errors.Unauthorized("who"), 401),
        (errors.Forbidden("no"), 403),
        (errors.NotFound("No such container: x"), 404),
        (errors.Conflict("in use"), 409),
        (errors.Unsupported("no"), 501),
        (errors.Unavailable("later"), 503),
        (errors.SystemFailure("mount /x: Permission denied", errno=13, path="/x"), 500),
        (errors.KetchError("base"), 500),
        (RuntimeError("bug"), 500),
        (OSError(5, "I/O error"), 500),
    ],
)
def test_status_and_body(exc: Exception, status: int) -> None:
    assert status_for(exc) == status
    response = error_response(exc)
    assert response.status == status
    assert response.content_type == "application/json"
    assert json.loads(response.body) == {"message": str(exc)}


def test_every_category_is_in_the_table() -> None:
    # a new category added to common.errors must get a test row (and a deliberate status)
    categories = {
        cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.KetchError)
    }
    assert {cls.__name__: cls.status for cls in categories} == {
        "KetchError": 500,
        "InvalidArgument": 400,
        "Unauthorized": 401,
        "Forbidden": 403,
        "NotFound": 404,
        "Conflict": 409,
        "NotModified": 304,
        "Unsupported": 501,
        "Unavailable": 503,
        "SystemFailure": 500,
    }


def test_not_modified_has_no_body() -> None:
    response = error_response(errors.NotModified("already started"))
    assert (response.status, response.body) == (304, b"")


def test_unexpected_errors_are_logged_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ketch.api"):
        error_response(errors.NotFound("No such image: x"), context="GET /images/x/json")
        error_response(ValueError("boom"), context="GET /boom")
    assert [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        ("ERROR", "GET /boom failed", True)
    ]


def test_empty_message_names_the_exception() -> None:
    assert json.loads(error_response(KeyError()).body) == {"message": "KeyError"}


def test_page_not_found() -> None:
    response = page_not_found()
    assert (response.status, response.body) == (404, b'{"message":"page not found"}\n')
