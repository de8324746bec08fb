"""Exec routes: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (hijacked unless Detach),
``POST /exec/{id}/resize``, ``GET /exec/{id}/json``.

The exec runs under the container's monitor (it is the monitor's child, so its exit status is caught even
when the client has gone); the exit code is asked of the monitor once the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from ketch.api.http import Hijack, RawStream, Reply, Request, Response
from ketch.api.router import Router
from ketch.api.routes.streams import bridge, open_monitor, parse_detach_keys
from ketch.common.errors import InvalidArgument, KetchError, SystemFailure
from ketch.engine.execs import ExecInstance, ExecService
from ketch.shim.client import ShimClient
from ketch.spec import stdcopy

__all__ = ["register", "runtime_message"]

_RAW = "application/vnd.docker.raw-stream"
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_LAUNCH_WAIT = 10.0  # moby waits as long for an exec to be ready before resizing it
_REPORT_DELAY = 0.05  # between the 101 head and a start failure's message (see report())
_LOGRUS_MSG = re.compile(r'\bmsg="((?:[^"\\]|\\.)*)"')


def runtime_message(text: str) -> str:
    """The runtime's own error out of a failed runtime call's report: the ``msg`` of its last logrus-style
    line, as containerd's shim reads it from runc, else the text as it is."""
    found = _LOGRUS_MSG.findall(text)
    if not found:
        return text
    return re.sub(r"\\(.)", r"\1", found[-1])


def register(router: Router, execs: ExecService) -> None:
    collectors: set[asyncio.Future[None]] = set()

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
        tty = body.get("Tty") if isinstance(body.get("Tty"), bool) else None
        exec_id = request.params["id"]
        # moby answers these with a status; what goes wrong past them is written on the hijacked stream
        instance = await asyncio.to_thread(execs.startable, exec_id)
        if detach:
            instance, state_dir, shim_request = await asyncio.to_thread(
                execs.prepare, exec_id, detach=True, tty=tty
            )
            try:
                _, writer, answer = await open_monitor(state_dir, shim_request)
            except KetchError as exc:
                execs.failed(instance)
                raise SystemFailure(f"OCI runtime exec failed: {runtime_message(str(exc))}") from None
            writer.close()
            execs.started(instance, int(str(answer.get("pid", 0))))
            collector = asyncio.ensure_future(_collect_exit(instance, state_dir))
            collectors.add(collector)  # held until done: the loop keeps only weak references to tasks
            collector.add_done_callback(collectors.discard)
            return Response.empty(200)
        framed = not (instance.tty if tty is None else tty)

        async def go(client: RawStream) -> None:
            async def report(message: str) -> None:
                # docker-py reads the stream from the raw socket, behind http.client's buffered reader of the
                # 101 head: bytes that come in with the head are lost to it. Real output is never that early.
                await asyncio.sleep(_REPORT_DELAY)
                data = f"{message}\r\n".encode()
                await client.write(stdcopy.encode(stdcopy.STDOUT, data) if framed else data)

            try:
                prepared, state_dir, shim_request = await asyncio.to_thread(
                    execs.prepare, exec_id, detach=False, tty=tty
                )
            except KetchError as exc:
                await report(str(exc))
                return
            try:
                reader, writer, answer = await open_monitor(state_dir, shim_request)
            except KetchError as exc:
                execs.failed(prepared)
                await report(f"OCI runtime exec failed: {runtime_message(str(exc))}")
                return
            execs.started(prepared, int(str(answer.get("pid", 0))))
            try:
                await bridge(client, reader, writer, stdin=prepared.attach_stdin,
                             detach_keys=parse_detach_keys(prepared.detach_keys))  # fmt: skip
            finally:
                with contextlib.suppress(Exception):
                    await _collect_exit(prepared, state_dir)

        return Hijack(go, content_type=_MULTIPLEXED if framed else _RAW)

    async def resize(request: Request) -> Reply:
        instance = execs.get(request.params["id"])
        try:
            h, w = int(request.query.get("h") or 0), int(request.query.get("w") or 0)
        except ValueError:
            raise InvalidArgument("invalid resize height or width") from None
        # the docker CLI resizes as soon as its start request is answered, which can be before the process runs
        if not await asyncio.to_thread(instance.launched.wait, _LAUNCH_WAIT):
            raise SystemFailure("timeout waiting for exec session ready")
        state_dir = execs.containers.paths(instance.container_id).state_dir
        await asyncio.to_thread(
            ShimClient(state_dir, timeout=5).call, "resize", width=w, height=h, exec=instance.id
        )
        return Response.empty(200)  # what dockerd answers (the API reference says 201)

    async def inspect(request: Request) -> Reply:
        return Response.json(execs.get(request.params["id"]).to_api())

    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", resize)
    router.add("GET", "/exec/{id}/json", inspect)
