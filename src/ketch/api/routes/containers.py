"""Container routes: create, list, inspect, start/stop/restart/kill/pause/unpause, wait, remove, rename, update,
logs, attach, resize, top, stats, prune.

Verbs that block (they wait on runtimes and monitors) run in worker threads. Waiting for an exit does not park
a thread: the engine calls back after every recorded exit and the route re-checks. ``wait`` answers its 200
headers at once and its body when the container has exited, as dockerd does (the docker CLI sends ``wait``
before ``start`` and relies on that).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from ketch.api.http import Hijack, RawStream, Reply, Request, Response, StreamingResponse
from ketch.api.router import Router
from ketch.api.routes.streams import adopt_socket, bridge, open_monitor, parse_detach_keys
from ketch.common.errors import Conflict, InvalidArgument, KetchError, NotFound, SystemFailure
from ketch.engine import lifecycle
from ketch.engine.containers import ContainerService
from ketch.engine.db import ContainerFilters
from ketch.engine.execs import ExecService
from ketch.engine.lifecycle import Event
from ketch.engine.model import HostLimits, RestartPolicy, Status, parse_create_body, parse_time
from ketch.engine.render import graph_driver, inspect_container, list_item
from ketch.engine.stats import docker_stats
from ketch.shim import logfile
from ketch.shim.client import ShimClient
from ketch.spec import stdcopy

__all__ = ["register"]

_RAW = "application/vnd.docker.raw-stream"
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def _time_param(text: str | None) -> int:
    """``since``/``until``: unix seconds with an optional fraction (what docker clients send), or RFC 3339."""
    if not text:
        return 0
    try:
        seconds, _, fraction = text.partition(".")
        return int(seconds) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])
    except ValueError:
        try:
            return parse_time(text)
        except InvalidArgument:
            raise InvalidArgument(f"invalid time value {text!r}") from None


class ExitWatch:
    """Wakes an async waiter after each exit or removal the engine records."""

    def __init__(self, service: ContainerService) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self._remove = service.add_exit_listener(self._wake)

    def _wake(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def next(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()

    def close(self) -> None:
        self._remove()


def register(router: Router, service: ContainerService, execs: ExecService) -> None:
    async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ---- create, list, inspect ------------------------------------------------------------------------

    async def create(request: Request) -> Reply:
        body = await request.json()
        if body is None:
            raise InvalidArgument("Config cannot be empty in order to create a container")
        config, host_config = parse_create_body(body, host=HostLimits.current())
        name = request.query.get("name") or ""
        if name:
            from ketch.engine.names import is_valid_name

            if not is_valid_name(name.lstrip("/")):
                raise InvalidArgument(
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )
        cid, warnings = await run(service.create, name, config, host_config)
        raw_host = body.get("HostConfig") if isinstance(body, dict) else None
        warnings = _kernel_memory_warning(raw_host if isinstance(raw_host, dict) else {}) + warnings
        return Response.json({"Id": cid, "Warnings": warnings or []}, 201)

    def _image_name(record: Any) -> str:
        return str(record.config.image or record.image_id)

    async def list_containers(request: Request) -> Reply:
        q = request.query
        filters = q.filters()

        def images_for(ref: str) -> list[str]:
            try:
                return [str(service.images.store.find(ref).id)]
            except KetchError:
                return []

        raw = {k: filters.get(k) for k in filters}
        wanted_networks = set(raw.pop("network", None) or ())  # matched below, on the network settings
        f = ContainerFilters.from_api(raw, all=q.boolean("all"), limit=q.integer("limit", -1),
                                      image_ids=images_for)  # fmt: skip
        size = q.boolean("size")

        def on_network(c: Any) -> bool:
            networks = list_item(c, image_name="", networks=service.networking)["NetworkSettings"]["Networks"]
            return any(name in wanted_networks or settings.get("NetworkID") in wanted_networks
                       for name, settings in networks.items())  # fmt: skip

        def job() -> list[dict[str, Any]]:
            with service._lock:
                found = service.db.list_containers(f)
            if wanted_networks:
                found = [c for c in found if on_network(c)]
            return [
                list_item(c, image_name=_image_name(c.record),
                          sizes=(service.size_rw(c.record.id), service.size_root_fs(c)) if size else None,
                          networks=service.networking)
                for c in found
            ]  # fmt: skip

        # Without sizes the listing is a few SQLite reads: answered on the loop, a thread hop costs more.
        return Response.json(await run(job) if size else job())

    async def inspect(request: Request) -> Reply:
        size = request.query.boolean("size")

        def job() -> dict[str, Any]:
            container = service.get(request.params["id"])
            paths = service.paths(container.record.id)
            try:
                mounts = service.images.snapshotter.mounts(container.record.id)
            except KetchError:
                mounts = []
            sizes = (service.size_rw(container.record.id), service.size_root_fs(container)) if size else None
            return inspect_container(container, paths, graph=graph_driver(mounts, paths.rootfs),
                                     exec_ids=execs.ids_for(container.record.id), sizes=sizes,
                                     networks=service.networking)  # fmt: skip

        return Response.json(await run(job))

    # ---- lifecycle verbs --------------------------------------------------------------------------------

    async def start(request: Request) -> Reply:
        if request.query.get("checkpoint"):
            raise InvalidArgument("checkpoints are not supported")
        await run(service.start, request.params["id"])
        return Response.empty(204)

    def _timeout(request: Request) -> int | None:
        text = request.query.get("t")
        if text in (None, ""):
            return None
        try:
            return int(text)
        except ValueError:
            raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax') from None

    async def stop(request: Request) -> Reply:
        await run(service.stop, request.params["id"], _timeout(request), request.query.get("signal") or "")
        return Response.empty(204)

    async def restart(request: Request) -> Reply:
        await run(service.restart, request.params["id"], _timeout(request), request.query.get("signal") or "")
        return Response.empty(204)

    async def kill(request: Request) -> Reply:
        ref, text = request.params["id"], (request.query.get("signal") or "").strip()
        try:
            await run(service.kill, ref, text)
        except KetchError as exc:
            # dockerd's kill route prefixes what the daemon refused with the reference it was given; a signal
            # name it cannot parse is refused before that, a number out of range by the daemon
            message = str(exc)
            if message.startswith("Invalid signal"):
                if not text.isdigit() or int(text) == 0:
                    raise
                message = f"The linux daemon does not support signal {text}"
            raise type(exc)(f"Cannot kill container: {ref}: {message}") from None
        return Response.empty(204)

    async def pause(request: Request) -> Reply:
        await run(service.pause, request.params["id"])
        return Response.empty(204)

    async def unpause(request: Request) -> Reply:
        await run(service.unpause, request.params["id"])
        return Response.empty(204)

    async def remove(request: Request) -> Reply:
        if request.query.boolean("link"):
            raise InvalidArgument("links are not supported")
        await run(service.remove, request.params["id"], force=request.query.boolean("force"),
                  volumes=request.query.boolean("v"))  # fmt: skip
        return Response.empty(204)

    async def rename(request: Request) -> Reply:
        await run(service.rename, request.params["id"], request.query.get("name") or "")
        return Response.empty(204)

    async def update(request: Request) -> Reply:
        from ketch.engine.model import HostConfig

        body = await request.json()
        if not isinstance(body, dict):
            raise InvalidArgument("json: cannot unmarshal into Go value of type container.UpdateConfig")
        host = HostConfig.from_api({k: v for k, v in body.items() if k != "RestartPolicy"}, host=HostLimits.current(),
                                   where="UpdateConfig")  # fmt: skip
        policy = None
        if body.get("RestartPolicy") is not None:
            raw = body["RestartPolicy"]
            policy = RestartPolicy(name=str(raw.get("Name", "")),
                                   maximum_retry_count=int(raw.get("MaximumRetryCount", 0)))  # fmt: skip
            policy.validate()
        cid = (await run(service.get, request.params["id"])).record.id
        try:
            warnings = await run(service.update, cid, host.resources, policy)
        except (Conflict, SystemFailure, InvalidArgument) as exc:
            # dockerd names the container for what fails past validation: applying the change or the
            # AutoRemove rule
            if isinstance(exc, InvalidArgument) and "AutoRemove" not in str(exc):
                raise
            raise type(exc)(f"Cannot update container {cid}: {exc}") from None
        return Response.json({"Warnings": _kernel_memory_warning(body) + warnings})

    async def prune(request: Request) -> Reply:
        filters = request.query.filters()
        raw = {k: filters.get(k) for k in filters}
        for key in raw:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        until = 0
        for value in raw.get("until", []):
            until = _until(value)
        labels = tuple(raw.get("label", []))
        removed, reclaimed = await run(service.prune, until, labels)
        return Response.json({"ContainersDeleted": removed or None, "SpaceReclaimed": reclaimed})

    # ---- wait -------------------------------------------------------------------------------------------

    async def wait(request: Request) -> Reply:
        condition = request.query.get("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        container = await run(service.get, request.params["id"])
        cid = container.record.id
        watch = ExitWatch(service)
        generation = service.exit_generation(cid)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b""  # headers now: the client sends start only after it has them
                code = await _wait_for(cid, condition, generation, watch)
                yield (Response.json({"Error": None, "StatusCode": code}).body)
            finally:
                watch.close()

        return StreamingResponse(body())

    async def _wait_for(cid: str, condition: str, generation: int, watch: ExitWatch) -> int:
        while True:
            try:
                state = await run(service._state, cid)
            except NotFound:
                if condition == "removed":
                    return service.last_exit_codes.get(cid, 0)
                raise
            if (condition == "not-running" and not lifecycle.is_running(state.status)) or \
                    (condition == "next-exit" and service.exit_generation(cid) != generation and \
                    state.status is not Status.RESTARTING):  # fmt: skip
                return int(state.exit_code)
            await watch.next(1.0)

    # ---- logs -------------------------------------------------------------------------------------------

    async def logs(request: Request) -> Reply:
        q = request.query
        stdout, stderr = q.boolean("stdout"), q.boolean("stderr")
        if not stdout and not stderr:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        container = await run(service.get, request.params["id"])
        record = container.record
        if record.host_config.log_config.type != "json-file":
            driver = record.host_config.log_config.type
            raise InvalidArgument(f'configured logging driver does not support reading: "{driver}"')
        tail = _tail(q.get("tail") or "all")
        details = q.boolean("details")
        since, until = _time_param(q.get("since")), _time_param(q.get("until"))
        timestamps, follow = q.boolean("timestamps"), q.boolean("follow")
        tty = record.config.tty
        path = service.paths(record.id).log_path
        opts = record.host_config.log_config.config or {}
        max_file = int(opts.get("max-file", "1") or 1)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[logfile.LogEntry | None] = asyncio.Queue(maxsize=1024)
        cancelled = threading.Event()

        def running() -> bool:
            try:
                return lifecycle.is_running(service._state(record.id).status)
            except NotFound:
                return False

        follow = follow and running()

        def produce() -> None:
            try:
                for entry in logfile.read_logs(path, max_file=max_file, stdout=stdout, stderr=stderr,
                                               since_ns=since, until_ns=until, tail=tail, follow=follow,
                                               stop=lambda: cancelled.is_set() or not running()):  # fmt: skip
                    if cancelled.is_set():
                        return
                    asyncio.run_coroutine_threadsafe(queue.put(entry), loop).result()
            except Exception:
                pass
            finally:
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(queue.put(None), loop)

        async def body() -> AsyncIterator[bytes]:
            thread = threading.Thread(target=produce, daemon=True, name="logs")
            thread.start()
            try:
                while (entry := await queue.get()) is not None:
                    data = entry.data
                    if details:  # the entry's attributes (ketch's log records none), then a space
                        data = b" " + data
                    if timestamps:
                        data = _fixed_time(entry.time_ns) + b" " + data
                    if tty:
                        yield data
                    else:
                        yield stdcopy.encode(
                            stdcopy.STDERR if entry.stream == "stderr" else stdcopy.STDOUT, data
                        )
            finally:
                cancelled.set()
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()

        return StreamingResponse(body(), content_type=_RAW if tty else _MULTIPLEXED)

    # ---- attach, resize ---------------------------------------------------------------------------------

    async def attach(request: Request) -> Reply:
        q = request.query
        want_stdin, want_stdout, want_stderr = q.boolean("stdin"), q.boolean("stdout"), q.boolean("stderr")
        stream, replay = q.boolean("stream"), q.boolean("logs")
        keys = parse_detach_keys(q.get("detachKeys") or "")
        container = await run(service.get, request.params["id"])
        cid = container.record.id
        lifecycle.transition(container.state.status, Event.ATTACH, cid)
        service.publish(container.record, "attach")  # dockerd logs it for every attach, before any start
        tty = container.record.config.tty
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[socket.socket] | None = None
        hook = None
        # a container that is not running yet (created, or exited: ``start -a`` attaches, then starts it) is
        # joined by its next start
        waiting = (Status.CREATED, Status.EXITED) if stream else ()
        if container.state.status in waiting or container.state.status is Status.RESTARTING:
            pending = loop.create_future()

            def hook(state_dir: str, _tty: bool) -> None:
                sock = ShimClient(state_dir, timeout=10).attach(stdin=want_stdin, stdout=want_stdout,
                                                                stderr=want_stderr)  # fmt: skip
                sock.settimeout(None)
                loop.call_soon_threadsafe(_resolve, pending, sock)

            service.add_start_hook(cid, hook)

        async def go(client: RawStream) -> None:
            try:
                if replay:
                    await _replay_logs(client, container, want_stdout, want_stderr)
                if not stream:
                    return
                if pending is not None:
                    sock = await pending
                    reader, writer = await adopt_socket(sock)
                else:
                    state = await run(service._state, cid)
                    if state.status not in (Status.RUNNING, Status.PAUSED):
                        return
                    reader, writer, _ = await open_monitor(
                        service.paths(cid).state_dir,
                        {"op": "attach", "stdin": want_stdin, "stdout": want_stdout, "stderr": want_stderr},
                    )
                await bridge(client, reader, writer, stdin=want_stdin, detach_keys=keys)
            finally:
                if hook is not None:
                    service.remove_start_hook(cid, hook)
                    if pending is not None and not pending.done():
                        pending.cancel()

        return Hijack(go, content_type=_RAW if tty else _MULTIPLEXED)

    async def _replay_logs(client: RawStream, container: Any, out: bool, err: bool) -> None:
        path = service.paths(container.record.id).log_path

        def read() -> list[logfile.LogEntry]:
            return list(logfile.read_logs(path, stdout=out, stderr=err))

        for entry in await run(read):
            if container.record.config.tty:
                await client.write(entry.data)
            else:
                stream = stdcopy.STDERR if entry.stream == "stderr" else stdcopy.STDOUT
                await client.write(stdcopy.encode(stream, entry.data))

    async def resize(request: Request) -> Reply:
        container = await run(service.get, request.params["id"])
        if container.state.status is not Status.RUNNING:
            raise Conflict(f"Container {container.record.id} is not running")
        h, w = _int(request.query.get("h") or "0", "h"), _int(request.query.get("w") or "0", "w")
        await run(ShimClient(service.paths(container.record.id).state_dir, timeout=5).call,
                  "resize", width=w, height=h)  # fmt: skip
        return Response.empty(200)

    # ---- top, stats -------------------------------------------------------------------------------------

    async def top(request: Request) -> Reply:
        ps_args = request.query.get("ps_args") or "-ef"

        def job() -> dict[str, Any]:
            _, pids = service.running_pids(request.params["id"])
            return _ps(ps_args, set(pids))

        return Response.json(await run(job))

    async def stats(request: Request) -> Reply:
        stream = request.query.boolean("stream", True)
        one_shot = request.query.boolean("one-shot")
        container = await run(service.get, request.params["id"])
        cid = container.record.id
        name = container.record.name

        async def sample(previous: dict[str, Any] | None) -> dict[str, Any]:
            raw = await run(service.stats, cid)
            return docker_stats(cid, name, raw, previous, container.record.host_config)

        async def body() -> AsyncIterator[bytes]:
            previous = None
            if not stream and not one_shot:
                previous = await sample(None)
                await asyncio.sleep(1.0)
            while True:
                current = await sample(previous)
                yield Response.json(current).body
                if not stream:
                    return
                previous = current
                await asyncio.sleep(1.0)
                state = await run(service._state, cid)
                if state.status not in (Status.RUNNING, Status.PAUSED):
                    return

        return StreamingResponse(body())

    for method, pattern, handler in (
        ("POST", "/containers/create", create),
        ("GET", "/containers/json", list_containers),
        ("POST", "/containers/prune", prune),
        ("GET", "/containers/{id}/json", inspect),
        ("POST", "/containers/{id}/start", start),
        ("POST", "/containers/{id}/stop", stop),
        ("POST", "/containers/{id}/restart", restart),
        ("POST", "/containers/{id}/kill", kill),
        ("POST", "/containers/{id}/pause", pause),
        ("POST", "/containers/{id}/unpause", unpause),
        ("POST", "/containers/{id}/wait", wait),
        ("DELETE", "/containers/{id}", remove),
        ("POST", "/containers/{id}/rename", rename),
        ("POST", "/containers/{id}/update", update),
        ("GET", "/containers/{id}/logs", logs),
        ("POST", "/containers/{id}/attach", attach),
        ("POST", "/containers/{id}/resize", resize),
        ("GET", "/containers/{id}/top", top),
        ("GET", "/containers/{id}/stats", stats),
    ):
        router.add(method, pattern, handler)


def _resolve(fut: asyncio.Future[socket.socket], sock: socket.socket) -> None:
    if fut.done():
        sock.close()
    else:
        fut.set_result(sock)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax ({what})') from None


def _kernel_memory_warning(host_config: dict[str, Any]) -> list[str]:
    """dockerd accepts KernelMemory and warns: kmem limits are deprecated (and ketch applies none)."""
    if host_config.get("KernelMemory"):
        return ["Specifying a kernel memory limit is deprecated and will be removed in a future release."]
    return []


def _fixed_time(time_ns: int) -> bytes:
    """RFC3339NanoFixed, as ``logs -t`` prints it: always nine digits of nanoseconds."""
    seconds, nanos = divmod(time_ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % nanos


def _tail(text: str) -> int:
    """moby reads ``tail`` with Atoi and takes anything else ("all", "abc") as every line."""
    try:
        return int(text)
    except ValueError:
        return -1


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def _go_duration(text: str) -> int | None:
    """Go's time.ParseDuration (``90s``, ``1h30m``, ``1.5h``) in nanoseconds; None when ``text`` is not one."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or _DURATION_PART.sub("", body):
        return None
    total = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(body))
    return int(-total if text.startswith("-") else total)


def _until(value: str) -> int:
    """A prune ``until``: a duration back from now, a unix time or an RFC 3339 date (moby's GetTimestamp)."""
    duration = _go_duration(value)
    if duration is not None:
        return time.time_ns() - duration
    try:
        return _time_param(value)
    except InvalidArgument:
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"') from None


def _ps(ps_args: str, pids: set[int]) -> dict[str, Any]:
    """moby's top: run ``ps`` on the host, keep the container's processes by the PID column."""
    try:
        done = subprocess.run(["ps", *ps_args.split()], capture_output=True, timeout=30, check=False)
    except OSError as exc:
        raise SystemFailure.from_oserror("ps", exc) from None
    if done.returncode != 0:  # moby keeps the first line of ps's complaint
        first = done.stderr.decode(errors="replace").strip().split("\n", 1)[0]
        raise SystemFailure(f"ps: {first or f'exit status {done.returncode}'}")
    lines = done.stdout.decode(errors="replace").splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    column = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}
