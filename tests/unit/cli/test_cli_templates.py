"""The Go text/template subset behind --format, the tab writer and go-units' human formats."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.cli.templates import (
    TemplateError,
    ellipsis,
    go_json,
    human_duration,
    human_size,
    parse,
    render,
    tabwrite,
)

DATA: dict[str, Any] = {
    "Id": "sha256:abc",
    "Config": {"Labels": {"k": "v", "a.b": "c"}, "Env": ["A=1", "B=2"], "Tty": False, "Cmd": None},
    "RepoTags": ["a:1", "a:2"],
    "Size": 1984162,
    "Empty": [],
    "Name": "MiXed",
}


class Ctx:
    go_type = "*formatter.imageContext"

    def __init__(self, repo: str) -> None:
        self.Repository = repo

    def ID(self) -> str:
        return "0123456789ab"

    def to_json(self) -> dict[str, str]:
        return {"ID": self.ID(), "Repository": self.Repository}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}}", "sha256:abc"),
        ("{{.Config.Labels.k}}", "v"),
        ('{{index .Config.Labels "a.b"}}', "c"),
        ("{{index .RepoTags 1}}", "a:2"),
        ('{{join .RepoTags ", "}}', "a:1, a:2"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ("{{json .Config.Env}}", '["A=1","B=2"]'),
        ("{{json .Config.Cmd}}", "null"),
        ("{{.Config.Cmd}}", "<nil>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Config.Tty}}", "false"),
        ("{{.Size}}", "1984162"),
        ("{{.RepoTags}}", "[a:1 a:2]"),
        ("{{.Config.Labels}}", "map[a.b:c k:v]"),
        ("{{lower .Name}} {{upper .Name}}", "mixed MIXED"),
        ("{{.Name | lower}}", "mixed"),
        ("{{if .Config.Tty}}tty{{else}}no tty{{end}}", "no tty"),
        ("{{if .RepoTags}}tagged{{end}}", "tagged"),
        ("{{if .Empty}}x{{else if .Name}}named{{else}}y{{end}}", "named"),
        ("{{range .RepoTags}}<{{.}}>{{end}}", "<a:1><a:2>"),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.Labels}}{{.}};{{end}}", "c;v;"),
        ("{{with .Config}}{{.Labels.k}}{{end}}", "v"),
        ("{{range .RepoTags}}{{$.Id}} {{end}}", "sha256:abc sha256:abc "),
        ("{{len .RepoTags}}", "2"),
        ('{{printf "%s=%d" .Name .Size}}', "MiXed=1984162"),
        ("a {{- .Name -}} b", "aMiXedb"),
        ("{{/* comment */}}x", "x"),
        ('{{eq .Name "MiXed"}} {{not .Empty}}', "true true"),
        ("{{(index .RepoTags 0) | upper}}", "A:1"),
        ('{{split "a,b" ","}}', "[a b]"),
        ("{{title .Name}}", "MiXed"),
        ("{{truncate .Id 6}}", "sha256"),
    ],
)
def test_template_on_maps(template: str, expected: str) -> None:
    assert parse(template).execute(DATA) == expected


def test_json_of_whole_value_keeps_order_and_escapes_like_go() -> None:
    assert parse("{{json .}}").execute({"b": 1, "a": "<&>"}) == '{"b":1,"a":"\\u003c\\u0026\\u003e"}'
    assert go_json("é") == '"é"'


def test_fields_of_contexts() -> None:
    ctx = Ctx("busybox")
    assert parse("{{.Repository}} {{.ID}}").execute(ctx) == "busybox 0123456789ab"
    assert parse("{{json .}}").execute(ctx) == '{"ID":"0123456789ab","Repository":"busybox"}'


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type '
                      "*formatter.imageContext"),
        ("ab {{.Repository.X}}", 'template: :1:5: executing "" at <.Repository.X>: can\'t evaluate field X in '
                                 "type string"),
        ("x\n  {{.Nope}}", 'template: :2:4: executing "" at <.Nope>: can\'t evaluate field Nope'),
        ("{{index .Repository 9}}", 'template: :1:2: executing "" at <index .Repository 9>: error calling index: '
                                    "index out of range: 9"),
    ],
)  # fmt: skip
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(template).execute(Ctx("r"))
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.A", "unclosed action"),
        ("{{nosuch .A}}", 'function "nosuch" not defined'),
        ("{{if .A}}x", "unexpected EOF"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{}}", "missing value for command"),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=r"^template: :1: ") as caught:
        parse(template)
    assert message in str(caught.value)


def test_render_table_with_headers_and_escapes() -> None:
    rows = [Ctx("busybox"), Ctx("a-much-longer-repository-name")]
    text = render("table {{.Repository}}\\t{{.ID}}", rows, {"Repository": "REPOSITORY", "ID": "IMAGE ID"})
    assert text == (
        "REPOSITORY                      IMAGE ID\n"
        "busybox                         0123456789ab\n"
        "a-much-longer-repository-name   0123456789ab\n"
    )
    assert render("{{.Repository}}\\n", rows[:1]) == "busybox\n\n"
    assert render("table", rows[:1], {"ID": "IMAGE ID"}, default_table="table {{.ID}}") == (
        "IMAGE ID\n0123456789ab\n"
    )
    with pytest.raises(TemplateError, match=r"^Template parsing error: template: :1:2: "):
        render("{{.Nope}}", rows)


def test_tabwriter_follows_go_column_blocks() -> None:
    # The minimum width is 10 and the padding 3; a line with fewer cells ends its column block.
    assert tabwrite("a\tb\tc\nlonger-cell\tb\n") == "a             b         c\nlonger-cell   b\n"
    assert tabwrite("x\ty\nno tabs here\nlong-first-cell\tz\n") == (
        "x         y\nno tabs here\nlong-first-cell   z\n"
    )
    assert tabwrite(" Version:\t1\n API version:\t2", minwidth=20, padding=1) == (
        " Version:           1\n API version:       2"
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (1913, "1.91kB"), (1984168, "1.98MB"), (4260000, "4.26MB"),
     (999999, "1e+03kB"), (1.5e9, "1.5GB"), (123456789012345, "123TB")],
)  # fmt: skip
def test_human_size(size: float, expected: str) -> None:
    assert human_size(size) == expected


def test_human_size_precision_four() -> None:
    assert human_size(1234567, 4) == "1.235MB"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
     (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"), (48 * 3600, "2 days"),
     (14 * 86400, "2 weeks"), (60 * 86400, "2 months"), (730 * 86400, "2 years")],
)  # fmt: skip
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_ellipsis() -> None:
    assert ellipsis("abcdef", 6) == "abcdef"
    assert ellipsis("abcdefg", 6) == "abcde…"
    assert ellipsis("abc", 1) == "a"
    assert ellipsis("abc", 0) == ""
