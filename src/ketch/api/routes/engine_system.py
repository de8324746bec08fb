"""``/info``, ``/system/df`` and ``/events`` (streamed, with filters and since/until), served by the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ketch.api.http import Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.api.routes.containers import _time_param
from ketch.common.errors import InvalidArgument
from ketch.engine.containers import ContainerService
from ketch.engine.events import Event, EventFilter
from ketch.engine.info import disk_usage, system_info

__all__ = ["register"]


def register(
    router: Router,
    service: ContainerService,
    *,
    version: str,
    insecure: list[str],
    debug: bool,
    image_list: Callable[[], list[dict[str, Any]]],
) -> None:
    async def info(request: Request) -> Reply:
        return Response.json(await asyncio.to_thread(system_info, service, version=version, insecure=insecure,
                                                     debug=debug))  # fmt: skip

    async def df(request: Request) -> Reply:
        def job() -> dict[str, Any]:
            return disk_usage(service, image_list())

        return Response.json(await asyncio.to_thread(job))

    async def events(request: Request) -> Reply:
        q = request.query
        raw = q.filters()
        flt = EventFilter.from_api({k: raw.get(k) for k in raw})
        since = _time_param(q.get("since")) if q.get("since") else None
        until = _time_param(q.get("until")) if q.get("until") else None
        if since is not None and until is not None and until < since:
            raise InvalidArgument(
                f"`since` time ({q.get('since')}) cannot be after `until` time ({q.get('until')})"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def deliver(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        token, past = service.events.subscribe(deliver, since_ns=since)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b""
                for event in past:
                    if until is not None and event.time_ns > until:
                        return
                    if flt.match(event):
                        yield Response.json(event.to_api()).body
                while True:
                    timeout = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        return
                    if event in past:
                        continue
                    if until is not None and event.time_ns > until:
                        return
                    if flt.match(event):
                        yield Response.json(event.to_api()).body
            finally:
                service.events.unsubscribe(token)

        return StreamingResponse(body())

    router.add("GET", "/info", info)
    router.add("GET", "/system/df", df)
    router.add("GET", "/events", events)
