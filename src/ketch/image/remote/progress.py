"""Progress of pulls and pushes: the callback interface, Docker's JSON messages, and rich bars for terminals.

Vocabulary (moby pkg/progress): a *message* is a line of status text (``Pulling from library/busybox``,
``Digest: sha256:...``); an *update* is the state of one blob, named by a 12-hex *id* (a layer's compressed
digest when pulling, its diff ID when pushing, as dockerd shows them), with an *action* and, while bytes move,
``current``/``total``; *aux* is out-of-band data (the pushed tag, digest and size).

What a pull reports, in order: ``Pulling from <path>`` (id: tag or digest); per layer ``Already exists`` or
``Pulling fs layer``; ``Waiting`` for layers queued behind the parallel downloads; ``Downloading`` (bytes),
``Verifying Checksum``, ``Download complete``. The caller that unpacks reports ``Extracting`` (bytes) and
``Pull complete`` per layer, then :func:`finish_pull` writes ``Digest:`` and ``Status:`` lines, so the order
matches dockerd's stream. A push reports ``The push refers to repository [<name>]``, per layer ``Preparing``,
``Waiting``, ``Pushing`` (bytes), ``Pushed`` / ``Layer already exists`` / ``Mounted from <path>``, then
``<tag>: digest: <digest> size: <n>`` and the aux ``{"Tag", "Digest", "Size"}``.

:class:`JSONProgress` writes these exactly as dockerd streams them for ``/images/create`` and
``/images/{name}/push`` (moby's streamformatter and jsonmessage): key order, Go's ``\\u003e`` escaping,
``progressDetail`` ``{}`` on updates and absent on messages, and the 200-column text bar.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ketch.common import units
from ketch.spec.oci_image import canonical_json
from ketch.spec.reference import Reference

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Task, TaskID

__all__ = [
    "ALREADY_EXISTS",
    "DOWNLOADING",
    "DOWNLOAD_COMPLETE",
    "EXTRACTING",
    "LAYER_ALREADY_EXISTS",
    "PREPARING",
    "PULLING_FS_LAYER",
    "PULL_COMPLETE",
    "PUSHED",
    "PUSHING",
    "VERIFYING_CHECKSUM",
    "WAITING",
    "JSONProgress",
    "Meter",
    "NullProgress",
    "Progress",
    "RichProgress",
    "finish_pull",
    "human_size",
    "json_message",
    "progress_bar",
    "short_id",
]

PULLING_FS_LAYER = "Pulling fs layer"
ALREADY_EXISTS = "Already exists"
WAITING = "Waiting"
DOWNLOADING = "Downloading"
VERIFYING_CHECKSUM = "Verifying Checksum"
DOWNLOAD_COMPLETE = "Download complete"
EXTRACTING = "Extracting"
PULL_COMPLETE = "Pull complete"
PREPARING = "Preparing"
PUSHING = "Pushing"
PUSHED = "Pushed"
LAYER_ALREADY_EXISTS = "Layer already exists"

_BAR_WIDTH = 50
_UPDATE_BYTES = 512 * 1024  # moby's ProgressReader: report after this many bytes...
_UPDATE_SECONDS = 0.1  # ...and at most this often, and always at the end


class Progress(Protocol):
    """Receives pull and push events; called from several download threads at once."""

    def message(self, text: str, *, id: str = "") -> None: ...

    def update(
        self, id: str, action: str, *, current: int | None = None, total: int | None = None
    ) -> None: ...

    def aux(self, data: Mapping[str, Any]) -> None: ...


def short_id(digest: str) -> str:
    """dockerd's id for a blob: the first 12 hex digits."""
    return digest.partition(":")[2][:12] or digest[:12]


def human_size(size: float) -> str:
    """go-units ``HumanSize``: decimal units, 4 significant digits (``32.77kB``, ``1MB``)."""
    return units.human_size(size, 4)


def progress_bar(current: int, total: int) -> str:
    """jsonmessage ``JSONProgress.String()`` as dockerd renders it (200 columns, no start time)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, _BAR_WIDTH)
    bar = f"[{'=' * percentage}>{' ' * (_BAR_WIDTH - percentage)}] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def json_message(
    *,
    status: str = "",
    id: str = "",
    current: int | None = None,
    total: int | None = None,
    detail: bool = False,
    aux: Mapping[str, Any] | None = None,
    error: str = "",
) -> bytes:
    """One JSONMessage line (with ``\\r\\n``), keys in moby's struct order, empty fields left out."""
    obj: dict[str, Any] = {}
    if status:
        obj["status"] = status
    if detail:
        numbers = {"current": current or 0, "total": total or 0}
        obj["progressDetail"] = {k: v for k, v in numbers.items() if v}
        text = progress_bar(current or 0, total or 0)
        if text:
            obj["progress"] = text
    if id:
        obj["id"] = id
    if error:
        obj["errorDetail"] = {"message": error}
        obj["error"] = error
    if aux is not None:
        obj["aux"] = dict(aux)
    return canonical_json(obj) + b"\r\n"


class NullProgress:
    def message(self, text: str, *, id: str = "") -> None:
        pass

    def update(self, id: str, action: str, *, current: int | None = None, total: int | None = None) -> None:
        pass

    def aux(self, data: Mapping[str, Any]) -> None:
        pass


class JSONProgress:
    """Docker's JSON progress stream; ``write`` gets one complete line per call (a file's ``write`` will do)."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._lock = threading.Lock()

    def _emit(self, line: bytes) -> None:
        with self._lock:
            self._write(line)

    def message(self, text: str, *, id: str = "") -> None:
        self._emit(json_message(status=text, id=id))

    def update(self, id: str, action: str, *, current: int | None = None, total: int | None = None) -> None:
        self._emit(json_message(status=action, id=id, current=current, total=total, detail=True))

    def aux(self, data: Mapping[str, Any]) -> None:
        self._emit(json_message(detail=True, aux=data))

    def error(self, message: str) -> None:
        """The last line of a failed pull or push: ``{"errorDetail":{"message":...},"error":...}``."""
        self._emit(json_message(error=message))


class RichProgress:
    """Per-blob rows with bars on a terminal, as the docker CLI draws them; use it as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.progress import BarColumn, DownloadColumn, ProgressColumn, TextColumn
        from rich.progress import Progress as Bars
        from rich.text import Text

        class _Shown(ProgressColumn):
            """A bar and byte counts while bytes move; nothing for rows that only have a status."""

            def __init__(self, column: ProgressColumn) -> None:
                super().__init__()
                self.column = column

            def render(self, task: Task) -> RenderableType:
                return self.column.render(task) if task.fields.get("bar") else Text("")

        self._bars = Bars(
            TextColumn("{task.fields[blob]}:"),
            TextColumn("{task.description}"),
            _Shown(BarColumn(bar_width=50)),
            _Shown(DownloadColumn()),
            console=console,
            auto_refresh=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bars.stop()

    def message(self, text: str, *, id: str = "") -> None:
        self._bars.console.print(f"{id}: {text}" if id else text, highlight=False, markup=False)

    def update(self, id: str, action: str, *, current: int | None = None, total: int | None = None) -> None:
        with self._lock:
            task = self._tasks.get(id)
            if task is None:
                task = self._tasks[id] = self._bars.add_task(action, blob=id, bar=False, total=None)
        moving = current is not None and bool(total)
        self._bars.update(
            task, description=action, bar=moving, total=total if moving else None, completed=current or 0
        )

    def aux(self, data: Mapping[str, Any]) -> None:
        pass  # for programs, not people


class Meter:
    """Byte progress of one blob, throttled as moby's ProgressReader: every 512 KiB at most every 100 ms, and
    always when the last byte arrives."""

    def __init__(
        self,
        progress: Progress,
        id: str,
        action: str,
        total: int,
        *,
        start: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress, self._id, self._action, self.total = progress, id, action, total
        self.current = self._reported = start
        self._clock = clock
        self._last = float("-inf")

    def reset(self, current: int) -> None:
        self.current = self._reported = current

    def advance(self, n: int) -> None:
        self.current += n
        now = self._clock()
        done = self.current >= self.total
        if done or (self.current - self._reported >= _UPDATE_BYTES and now - self._last >= _UPDATE_SECONDS):
            self._reported, self._last = self.current, now
            self._progress.update(self._id, self._action, current=self.current, total=self.total)


def finish_pull(progress: Progress, reference: Reference, digest: str, *, updated: bool) -> None:
    """dockerd's closing lines of a pull: ``Digest: ...`` and ``Status: Downloaded newer image for busybox:latest``
    (or ``Status: Image is up to date for ...`` when the tag already pointed at ``digest``)."""
    progress.message(f"Digest: {digest}")
    shown = reference.familiar()
    if reference.digest and reference.tag:
        shown = Reference(reference.domain, reference.path, reference.tag).familiar()
    state = "Downloaded newer image for" if updated else "Image is up to date for"
    progress.message(f"Status: {state} {shown}")
