"""ketchd's composition root: configuration, pidfile, services, router, listeners, and a clean shutdown.

Start-up: parse the configuration, refuse to start when the pidfile names a live process, write the pidfile,
create the data and exec roots, build the image service and the router, then listen on every host. SIGTERM
or SIGINT closes the listeners and connections, closes the services and removes the pidfile (ApiServer
removes its sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from ketch.api.routes import EngineRoutes, build_router
from ketch.api.server import ApiServer
from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, KetchError, SystemFailure
from ketch.daemon.config import DaemonConfig, load_config
from ketch.engine.containers import ContainerService
from ketch.engine.events import EventBus
from ketch.engine.execs import ExecService
from ketch.engine.layout import EngineSettings
from ketch.engine.networks import NetworkService
from ketch.image.archive import Loaded
from ketch.image.remote import AuthConfig, Credentials, RegistryClient
from ketch.image.remote.progress import Progress
from ketch.image.service import ImageService, Registry
from ketch.shim.monitor import MonitorConfig
from ketch.shim.spawn import Spawned
from ketch.spec import reference

__all__ = ["DaemonImages", "claim_pidfile", "main", "release_pidfile", "serve"]

log = logging.getLogger("ketch.daemon")


class DaemonImages:
    """ImageService as the image routes' backend, with registry credentials per request.

    Anonymous pulls and pushes share the service's registry client; a request that brings credentials gets a
    client of its own for the reference's registry (closed when it is done), over the same stores.
    """

    def __init__(
        self,
        service: ImageService,
        *,
        registry_for: Callable[[str, Credentials], Registry] | None = None,
        insecure_registries: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.insecure_registries = tuple(insecure_registries)
        self._registry_for = registry_for or self._client_for
        self.events: EventBus | None = None  # the engine's, once it exists

    def _client_for(self, registry: str, creds: Credentials) -> Registry:
        return RegistryClient(
            auth=AuthConfig({registry: creds}), insecure_registries=self.insecure_registries
        )

    @contextlib.contextmanager
    def _with_auth(self, ref: str, auth: Credentials | None) -> Any:
        if auth is None:
            yield self.service
            return
        registry = self._registry_for(reference.parse(ref).domain, auth)
        service = ImageService(
            self.service.root, snapshotter=self.service.snapshotter, registry=registry,
            platform=self.service.platform,
        )  # fmt: skip
        try:
            yield service
        finally:
            close = getattr(registry, "close", None)
            if close is not None:
                close()

    def images(self, filters: Mapping[str, list[str]], all: bool, shared_size: bool) -> list[dict[str, Any]]:
        return self.service.images(filters, all, shared_size=shared_size)

    def inspect(self, name: str) -> dict[str, Any]:
        return self.service.inspect(name)

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.service.history(name)

    def _event(self, action: str, actor: str, name: str = "") -> None:
        """Docker's image events (pull, push, tag, untag, delete, load, import, save) on the engine's bus."""
        if self.events is not None:
            self.events.publish("image", action, actor, {"name": name or actor})

    def _image_id(self, name: str) -> str:
        try:
            return str(self.service.store.find(name).id)
        except KetchError:
            return name

    def tag(self, source: str, target: str) -> None:
        self.service.tag(source, target)
        self._event("tag", self._image_id(target), target)

    def remove(self, name: str, force: bool, prune: bool) -> list[dict[str, str]]:
        removed = self.service.remove(name, force, prune)
        for entry in removed:
            for action, actor in (("untag", entry.get("Untagged")), ("delete", entry.get("Deleted"))):
                if actor:
                    self._event(action, actor)
        return removed

    def prune(self, filters: Mapping[str, list[str]]) -> dict[str, Any]:
        return self.service.prune(True, filters)

    def save(self, names: Sequence[str], out: BinaryIO) -> None:
        self.service.save(names, out)
        for name in names:
            self._event("save", self._image_id(name), name)

    def load(self, stream: BinaryIO) -> Loaded:
        loaded = self.service.load(stream)
        for image in loaded.images:
            self._event("load", image.id, image.tags[0] if image.tags else image.id)
        return loaded

    def pull(self, ref: str, platform: str | None, progress: Progress, auth: Credentials | None) -> None:
        with self._with_auth(ref, auth) as service:
            service.pull(ref, platform, progress)
        self._event("pull", ref)

    def push(self, ref: str, progress: Progress, auth: Credentials | None) -> str:
        with self._with_auth(ref, auth) as service:
            digest: str = service.push(ref, progress)
        self._event("push", ref)
        return digest

    def login(self, server: str, username: str, password: str) -> None:
        with RegistryClient(insecure_registries=self.insecure_registries) as client:
            client.login(server, username, password)

    def import_tarball(
        self, stream: BinaryIO, ref: str | None, changes: Sequence[str], message: str, platform: str | None
    ) -> str:
        image_id = self.service.import_tarball(stream, ref, changes, message, platform=platform)
        self._event("import", image_id, ref or image_id)
        return image_id

    def close(self) -> None:
        self.service.close()


@dataclass(frozen=True, slots=True)
class Engine:
    containers: ContainerService
    execs: ExecService
    networks: NetworkService


def start_engine(
    config: DaemonConfig, images: DaemonImages, spawner: Callable[[MonitorConfig], Spawned]
) -> Engine:
    """Open ketch.db, build the container and exec services, and reconcile with the monitors."""
    from ketch.engine.db import Database
    from ketch.engine.events import EventBus
    from ketch.engine.reconcile import reconcile

    settings = EngineSettings(
        data_root=config.data_root, exec_root=config.exec_root, runtimes=dict(config.runtimes),
        default_runtime=config.default_runtime, init_path=config.init_path, log_driver=config.log_driver,
    )  # fmt: skip
    db = Database.open(os.path.join(config.data_root, "ketch.db"))
    containers = ContainerService(settings, db, images.service, EventBus(), spawner)
    images.service.set_container_hooks(containers.containers_using, containers.is_running)
    images.events = containers.events
    # Networks before reconcile: it takes exited containers off their networks and restarts others.
    networks = NetworkService(config.data_root, config.exec_root, containers, events=containers.events)
    networks.start()
    containers.networking = networks
    counts = reconcile(containers)
    log.info("containers: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))
    return Engine(containers, ExecService(containers), networks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def claim_pidfile(path: str) -> None:
    """Write our pid to ``path``; Conflict if it names another live process (a stale one is replaced)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise SystemFailure.from_oserror(f"read pidfile {path}", exc) from exc
    if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):
        raise Conflict(f"pidfile {path} names process {text}, which is running: is another ketchd running?")
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, f"{os.getpid()}\n".encode(), mode=0o644)
    except OSError as exc:
        raise SystemFailure.from_oserror(f"write pidfile {path}", exc) from exc


def release_pidfile(path: str) -> None:
    """Remove ``path`` if it still holds our pid (a later daemon may own it by now)."""
    with contextlib.suppress(OSError), open(path, encoding="ascii") as f:
        if f.read().strip() == str(os.getpid()):
            os.unlink(path)


def _make_dirs(config: DaemonConfig) -> None:
    for path, mode in ((config.data_root, 0o711), (config.exec_root, 0o700)):
        try:
            os.makedirs(path, mode=mode, exist_ok=True)
        except OSError as exc:
            raise SystemFailure.from_oserror(f"create directory {path}", exc) from exc
        if not os.path.isdir(path):
            raise InvalidArgument(f"{path} is not a directory")


async def serve(
    config: DaemonConfig,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run the daemon until ``stop`` is set (by default, until SIGTERM or SIGINT)."""
    from ketch.api.version import HostSystem

    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    claim_pidfile(config.pidfile)
    images: DaemonImages | None = None
    server: ApiServer | None = None
    closers: list[Callable[[], None]] = []
    from concurrent.futures import ThreadPoolExecutor

    # Blocking verbs (stop waits its grace period) run in threads: more of them than the default few.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="api"))
    try:
        _make_dirs(config)
        anonymous = RegistryClient(insecure_registries=config.insecure_registries)
        images = DaemonImages(
            ImageService(config.data_root, registry=anonymous), insecure_registries=config.insecure_registries
        )
        system = HostSystem()
        await asyncio.to_thread(system.version)  # gathered once before serving: it runs git
        from ketch.shim.forkserver import start_forkserver

        # Started from the main thread before any worker exists: it dies with ketchd (PR_SET_PDEATHSIG
        # follows the starting thread), the monitors it forks do not.
        forkserver = start_forkserver(os.path.join(config.exec_root, "forkserver.sock"))
        closers.append(forkserver.stop)
        engine = await asyncio.to_thread(start_engine, config, images, forkserver.client().spawn)
        closers.append(engine.containers.close)
        closers.append(engine.containers.db.close)
        closers.append(engine.networks.close)
        server = ApiServer(build_router(system=system, images=images, engine=EngineRoutes(
            containers=engine.containers, execs=engine.execs, version=system.version().version,
            insecure=list(config.insecure_registries), debug=config.log_level == "debug",
            image_list=lambda: images.images({}, False, False) if images else [], networks=engine.networks,
        )))  # fmt: skip
        for host in config.hosts:
            log.info("API listening on %s", await server.listen(host, tls=config.tls))
        log.info("ketchd started (data-root %s, exec-root %s)", config.data_root, config.exec_root)
        if ready is not None:
            ready()
        await stop.wait()
        log.info("ketchd shutting down")
    finally:
        if server is not None:
            await server.close()
        for close in reversed(closers):
            close()
        if images is not None:
            images.close()
            anonymous.close()
        release_pidfile(config.pidfile)


def _run(main: Any) -> None:
    """uvloop's event loop when it is installed: accepting a connection and a request's round trip cost about
    half of what the standard loop takes, and every docker command is a few round trips."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except KetchError as exc:
        print(f"ketchd: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.logging_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _run(serve(config))
    except KetchError as exc:
        print(f"ketchd: {exc}", file=sys.stderr)
        return 1
    return 0
