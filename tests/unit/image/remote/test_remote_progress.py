"""Progress: Docker's JSON messages byte for byte, the text bar, throttling, and rich rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from ketch.image.remote import JSONProgress, RichProgress, finish_pull
from ketch.image.remote.progress import Meter, human_size, progress_bar, short_id
from ketch.spec.reference import parse

# What dockerd streamed, recorded in shared/ beside the repository.
_REPO = Path(__file__).resolve().parents[4]
TRACES = next(
    (
        p
        for p in (
            _REPO.parent / "shared/docker-api-traces/cli-20.10",
            Path("/work/shared/docker-api-traces/cli-20.10"),
        )
        if p.is_dir()
    ),
    Path("/nonexistent"),
)
DIGEST = "sha256:8867476083fb7029e097ce007cd9e568027abe5c37202e50256da67cec9ef760"


def collect() -> tuple[JSONProgress, list[bytes]]:
    lines: list[bytes] = []
    return JSONProgress(lines.append), lines


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (32768, "32.77kB"), (760770, "760.8kB"), (1036006, "1.036MB"),
     (999_999, "1000kB"), (5 * 10**9, "5GB")],
)  # fmt: skip
def test_human_size_is_go_units(size: int, text: str) -> None:
    assert human_size(size) == text


def test_progress_bar_as_dockerd_renders_it() -> None:
    assert progress_bar(0, 0) == ""
    assert progress_bar(32768, 760770) == "[==>" + " " * 48 + "]  32.77kB/760.8kB"
    assert progress_bar(760770, 760770) == "[" + "=" * 50 + ">]  760.8kB/760.8kB"
    assert progress_bar(5, 0) == "      5B"
    assert progress_bar(10, 5) == "[" + "=" * 50 + ">]      10B"


def test_json_lines_exactly() -> None:
    progress, lines = collect()
    progress.message("Pulling from library/busybox", id="latest")
    progress.update("a3ed95caeb02", "Pulling fs layer")
    progress.update("a3ed95caeb02", "Downloading", current=32768, total=760770)
    progress.update("a3ed95caeb02", "Download complete")
    progress.message(f"Digest: {DIGEST}")
    progress.aux({"Tag": "t1", "Digest": DIGEST, "Size": 527})
    progress.error("manifest unknown")
    bar = "[==\\u003e" + " " * 48 + "]  32.77kB/760.8kB"
    assert lines == [
        b'{"status":"Pulling from library/busybox","id":"latest"}\r\n',
        b'{"status":"Pulling fs layer","progressDetail":{},"id":"a3ed95caeb02"}\r\n',
        b'{"status":"Downloading","progressDetail":{"current":32768,"total":760770},"progress":"'
        + bar.encode()
        + b'","id":"a3ed95caeb02"}\r\n',
        b'{"status":"Download complete","progressDetail":{},"id":"a3ed95caeb02"}\r\n',
        b'{"status":"Digest: ' + DIGEST.encode() + b'"}\r\n',
        b'{"progressDetail":{},"aux":{"Tag":"t1","Digest":"' + DIGEST.encode() + b'","Size":527}}\r\n',
        b'{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\r\n',
    ]


def _streamed(trace: str) -> list[str]:
    for line in (TRACES / trace / "docker.calls.jsonl").read_text().splitlines():
        call = json.loads(line)
        body = call.get("resp_body")
        if isinstance(body, dict) and "json_stream_lines" in body:
            return [text.rstrip("\r") for text in body["json_stream_lines"]]
    raise AssertionError(f"no JSON stream in {trace}")


@pytest.mark.skipif(not TRACES.is_dir(), reason="the recorded docker traces are not here")
def test_push_and_pull_lines_match_the_recorded_dockerd_stream() -> None:
    progress, lines = collect()
    progress.message("The push refers to repository [127.0.0.1:5000/ketch/v20-bb]")
    progress.update("0d2bfb51764a", "Preparing")
    progress.update("0d2bfb51764a", "Layer already exists")
    progress.message(f"t1: digest: {DIGEST} size: 527")
    progress.aux({"Tag": "t1", "Digest": DIGEST, "Size": 527})
    assert [line.decode().rstrip("\r\n") for line in lines] == _streamed("05-push")
    progress, lines = collect()
    progress.message("Pulling from ketch/v20-bb", id="t1")
    finish_pull(progress, parse(f"127.0.0.1:5000/ketch/v20-bb:t1@{DIGEST}"), DIGEST, updated=True)
    assert [line.decode().rstrip("\r\n") for line in lines] == _streamed("07-pull")


def test_finish_pull_wording() -> None:
    progress, lines = collect()
    finish_pull(progress, parse("busybox"), DIGEST, updated=False)
    assert lines[-1] == b'{"status":"Status: Image is up to date for busybox:latest"}\r\n'
    finish_pull(progress, parse(f"busybox@{DIGEST}"), DIGEST, updated=True)
    assert json.loads(lines[-1])["status"] == f"Status: Downloaded newer image for busybox@{DIGEST}"


def test_meter_throttles_like_the_progress_reader() -> None:
    progress, lines = collect()
    now = [0.0]
    meter = Meter(progress, "abc", "Downloading", 2_000_000, clock=lambda: now[0])
    for _ in range(10):
        meter.advance(100_000)  # 1 MB within the same instant: one report after 512 KiB
    now[0] = 0.05
    meter.advance(600_000)  # enough bytes but too soon
    now[0] = 0.2
    meter.advance(100_000)
    meter.advance(300_000)  # the last byte is always reported
    reported = [json.loads(line)["progressDetail"]["current"] for line in lines]
    assert reported == [600_000, 1_700_000, 2_000_000]


def test_short_id() -> None:
    assert short_id(DIGEST) == "8867476083fb"


def test_rich_progress_rows() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with RichProgress(console) as progress:
        progress.message("Pulling from library/busybox", id="latest")
        progress.update("a3ed95caeb02", "Downloading", current=500, total=1000)
        progress.update("a3ed95caeb02", "Pull complete")
        progress.update("0d2bfb51764a", "Already exists")
        progress.aux({"ignored": True})
    text = out.getvalue()
    assert "latest: Pulling from library/busybox" in text
    assert "a3ed95caeb02: Pull complete" in text
    assert "0d2bfb51764a: Already exists" in text
