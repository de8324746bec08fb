"""The API version window, negotiation, query booleans and filters."""

from __future__ import annotations

import json

import pytest

from ketch.common.errors import InvalidArgument
from ketch.spec.engine_api import (
    API_VERSION,
    MIN_API,
    Filters,
    check_version,
    compare_versions,
    negotiate,
    parse_bool,
    split_version,
)


def test_window() -> None:
    assert (MIN_API, API_VERSION) == ("1.24", "1.41")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1.41/containers/json", ("1.41", "/containers/json")),
        ("/v1.24/_ping", ("1.24", "/_ping")),
        ("/v1/version", ("1", "/version")),
        ("/v1.41.0/version", ("1.41.0", "/version")),
        ("/v1.41//x", ("1.41", "//x")),
        ("/_ping", (None, "/_ping")),
        ("/version", (None, "/version")),
        ("/v1.41", (None, "/v1.41")),  # no path after the version: not a prefix
        ("/vx/version", (None, "/vx/version")),
        ("/v1./version", (None, "/v1./version")),
        ("/volumes/v1.2/x", (None, "/volumes/v1.2/x")),
    ],
)
def test_split_version(path: str, expected: tuple[str | None, str]) -> None:
    assert split_version(path) == expected


@pytest.mark.parametrize(
    ("a", "b", "result"),
    [
        ("1.41", "1.41", 0),
        ("1.9", "1.10", -1),
        ("1.10", "1.9", 1),
        ("1.4", "1.4.0", 0),
        ("1.41", "1.24", 1),
        ("1.24", "1.41", -1),
        ("2", "1.99", 1),
        ("1.a", "1.0", 0),  # a component that is not a number counts as 0, as in moby
    ],
)
def test_compare_versions(a: str, b: str, result: int) -> None:
    assert compare_versions(a, b) == result


@pytest.mark.parametrize("version", ["1.24", "1.25", "1.40", "1.41", "1.41.0"])
def test_check_version_accepts_the_window(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.99", "client version 1.99 is too new. Maximum supported API version is 1.41"),
        ("1.42", "client version 1.42 is too new. Maximum supported API version is 1.41"),
        ("2", "client version 2 is too new. Maximum supported API version is 1.41"),
        (
            "1.12",
            "client version 1.12 is too old. Minimum supported API version is 1.24, "
            "please upgrade your client to a newer version",
        ),
        (
            "1.23",
            "client version 1.23 is too old. Minimum supported API version is 1.24, "
            "please upgrade your client to a newer version",
        ),
    ],
)
def test_check_version_rejects_with_dockers_words(version: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_version(version)
    assert str(caught.value) == message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("header", "client", "expected"),
    [
        ("1.41", "1.50", "1.41"),  # docker 28 against ketch: downgraded
        ("1.40", "1.41", "1.40"),
        ("1.45", "1.41", "1.41"),  # a newer daemon: the client keeps its own maximum
        ("1.41", "1.41", "1.41"),
        (None, "1.50", "1.24"),  # no Api-Version header: the CLIs' fallback
        ("", "1.41", "1.24"),
    ],
)
def test_negotiate(header: str | None, client: str, expected: str) -> None:
    assert negotiate(header, client) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("yes", True),
        ("anything", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("", False),
        ("no", False),
        ("none", False),
        (" 0 ", False),
    ],
)
def test_parse_bool(value: str, expected: bool) -> None:
    assert parse_bool(value) is expected


def test_filters_map_form_as_the_cli_sends_it() -> None:
    f = Filters.from_json('{"label":{"a=b":true,"c":true},"status":{"exited":true}}')
    assert f.keys() == list(f) == ["label", "status"]
    assert f.get("label") == ["a=b", "c"]
    assert f.get("missing") == []
    assert "status" in f and "name" not in f
    assert len(f) == 2


def test_filters_list_form_as_docker_py_sends_it() -> None:
    assert Filters.from_json('{"label":["a=b","c"],"dangling":["true"]}') == Filters(
        {"label": ["c", "a=b"], "dangling": ["true"]}
    )


def test_filters_edge_forms() -> None:
    assert len(Filters.from_json("")) == 0
    assert Filters.from_json("{}") == Filters()
    assert Filters.from_json('{"label":null}').get("label") == []
    assert "label" in Filters.from_json('{"label":null}')
    # Go keeps a map-form value whatever its boolean says
    assert Filters.from_json('{"label":{"a":false}}').get("label") == ["a"]


@pytest.mark.parametrize(
    "text",
    ['{"label":', "[]", '"label"', '{"label":"a"}', '{"label":{"a":"yes"}}', '{"label":[1]}', "null"],
)
def test_filters_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid filter$"):
        Filters.from_json(text)


def test_filters_to_json_round_trip() -> None:
    f = Filters({"label": ["b", "a"], "name": ["x"]})
    assert f.to_json() == '{"label":{"a":true,"b":true},"name":{"x":true}}'
    assert Filters.from_json(f.to_json()) == f
    assert Filters().to_json() == ""
    assert json.loads(f.to_json())  # valid JSON


def test_filters_validate() -> None:
    f = Filters({"label": ["a"], "bogus": ["x"], "zzz": ["y"]})
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'bogus'$"):
        f.validate({"label", "status"})
    Filters({"label": ["a"]}).validate(["label", "status"])


def test_filters_matching() -> None:
    f = Filters({"name": ["web"], "label": ["env=prod", "tier"]})
    assert f.exact_match("name", "web") and not f.exact_match("name", "web1")
    assert f.exact_match("id", "anything")  # not filtered on
    assert f.fuzzy_match("name", "web1") and not f.fuzzy_match("name", "api")
    assert f.match_kv_list("label", {"env": "prod", "tier": "", "x": "y"})
    assert not f.match_kv_list("label", {"env": "dev", "tier": ""})
    assert not f.match_kv_list("label", {"env": "prod"})
    assert Filters().match_kv_list("label", {})


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["true"], True), (["1"], True), (["false"], False), (["0"], False), (["1", "true"], True)],
)
def test_filters_get_bool(values: list[str], expected: bool) -> None:
    assert Filters({"dangling": values}).get_bool("dangling", not expected) is expected


def test_filters_get_bool_invalid() -> None:
    assert Filters().get_bool("dangling", True) is True
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'dangling=\[0 1\]'$"):
        Filters({"dangling": ["1", "0"]}).get_bool("dangling", False)
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'dangling'$"):
        Filters({"dangling": []}).get_bool("dangling", False)
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'dangling=\[maybe\]'$"):
        Filters({"dangling": ["maybe"]}).get_bool("dangling", False)
