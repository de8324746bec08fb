"""The API's routes, grouped by resource; each group takes the narrow backend it needs (fakes in tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ketch.api.router import Router
from ketch.api.routes import images as image_routes
from ketch.api.routes import system as system_routes
from ketch.api.routes.images import ImageBackend
from ketch.api.routes.system import SystemBackend

if TYPE_CHECKING:
    from ketch.engine.containers import ContainerService
    from ketch.engine.execs import ExecService

__all__ = ["EngineRoutes", "build_router"]


@dataclass(frozen=True, slots=True)
class EngineRoutes:
    """What the container, exec and engine-wide system routes need."""

    containers: ContainerService
    execs: ExecService
    version: str
    insecure: list[str] = field(default_factory=list)
    debug: bool = False
    image_list: Callable[[], list[dict[str, Any]]] = list
    networks: Any = None  # engine/networks.py NetworkService (routes/networks.py NetworkBackend)


def build_router(
    *, system: SystemBackend, images: ImageBackend | None = None, engine: EngineRoutes | None = None
) -> Router:
    router = Router()
    system_routes.register(router, system)
    if images is not None:
        image_routes.register(router, images)
    if engine is not None:
        from ketch.api.routes import container_fs, containers, engine_system, execs

        containers.register(router, engine.containers, engine.execs)
        container_fs.register(router, engine.containers)
        execs.register(router, engine.execs)
        engine_system.register(router, engine.containers, version=engine.version, insecure=engine.insecure,
                               debug=engine.debug, image_list=engine.image_list)  # fmt: skip
        if engine.networks is not None:
            from ketch.api.routes import networks

            networks.register(router, engine.networks)
    return router
