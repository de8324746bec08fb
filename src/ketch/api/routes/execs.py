"""Exec routes: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (hijacked unless Detach),
``POST /exec/{id}/resize``, ``GET /exec/{id}/json``.

The exec runs under the container's monitor (it is the monitor's child, so its exit status is caught even
when the client has gone); the exit code is asked of the monitor once the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib

from ketch.api.http import Hijack, RawStream, Reply, Request, Response
from ketch.api.router import Router
from ketch.api.routes.streams import bridge, open_monitor, parse_detach_keys
from ketch.common.errors import InvalidArgument, KetchError
from ketch.engine.execs import ExecInstance, ExecService
from ketch.shim.client import ShimClient

__all__ = ["register"]

_RAW = "application/vnd.docker.raw-stream"
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def register(router: Router, execs: ExecService) -> None:
    async def create(request: Request) -> Reply:
        body = await request.json()
        exec_id = await asyncio.to_thread(execs.create, request.params["id"], body)
        return Response.json({"Id": exec_id}, 201)

    async def _collect_exit(instance: ExecInstance, state_dir: str) -> None:
        def job() -> None:
            try:
                answer = ShimClient(state_dir).call("wait", exec=instance.id)
                code = int(str(answer.get("exit_code", 126)))
            except (OSError, KetchError):
                code = 126 if instance.pid == 0 else 137
            execs.finished(instance, code)

        await asyncio.to_thread(job)

    async def start(request: Request) -> Reply:
        body = await request.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("json: cannot unmarshal into Go value of type types.ExecStartCheck")
        detach = bool(body.get("Detach"))
        tty = body.get("Tty")
        instance, state_dir, shim_request = await asyncio.to_thread(
            execs.prepare, request.params["id"], detach=detach, tty=tty if isinstance(tty, bool) else None
        )
        keys = parse_detach_keys(instance.detach_keys)
        if detach:
            try:
                reader, writer, answer = await open_monitor(state_dir, shim_request)
            except KetchError:
                execs.finished(instance, 126)
                raise
            writer.close()
            execs.started(instance, int(str(answer.get("pid", 0))))
            asyncio.ensure_future(_collect_exit(instance, state_dir))
            return Response.empty(200)

        async def go(client: RawStream) -> None:
            try:
                reader, writer, answer = await open_monitor(state_dir, shim_request)
            except KetchError as exc:
                execs.finished(instance, 126)
                message = f"OCI runtime exec failed: {exc}\r\n".encode()
                from ketch.spec import stdcopy

                await client.write(message if instance.tty else stdcopy.encode(stdcopy.STDOUT, message))
                return
            execs.started(instance, int(str(answer.get("pid", 0))))
            try:
                await bridge(client, reader, writer, stdin=instance.attach_stdin, detach_keys=keys)
            finally:
                with contextlib.suppress(Exception):
                    await _collect_exit(instance, state_dir)

        return Hijack(go, content_type=_RAW if instance.tty else _MULTIPLEXED)

    async def resize(request: Request) -> Reply:
        instance = execs.get(request.params["id"])
        try:
            h, w = int(request.query.get("h") or 0), int(request.query.get("w") or 0)
        except ValueError:
            raise InvalidArgument("invalid resize height or width") from None
        state_dir = execs.containers.paths(instance.container_id).state_dir
        await asyncio.to_thread(ShimClient(state_dir, timeout=5).call, "resize", width=w, height=h, exec=instance.id)
        return Response.empty(201)

    async def inspect(request: Request) -> Reply:
        return Response.json(execs.get(request.params["id"]).to_api())

    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", resize)
    router.add("GET", "/exec/{id}/json", inspect)
