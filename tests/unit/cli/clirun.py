"""Run the ketch CLI in-process against a fake daemon and capture what it prints."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ketch.cli.main import main


class _Out(io.TextIOWrapper):
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", newline="\n", write_through=True)

    def isatty(self) -> bool:
        return False

    def value(self) -> bytes:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


@dataclass
class Result:
    status: int
    out: str
    err: str
    raw_out: bytes


def run(socket: Path, *argv: str, stdin: str = "", stdin_stream: Any = None) -> Result:
    out, err = _Out(), _Out()
    source = stdin_stream if stdin_stream is not None else io.StringIO(stdin)
    status = main(["-H", f"unix://{socket}", *argv], stdin=source, stdout=out, stderr=err)
    raw = out.value()
    return Result(status, raw.decode(errors="replace"), err.value().decode(), raw)
