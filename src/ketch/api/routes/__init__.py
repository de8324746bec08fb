"""The API's routes, grouped by resource; each group takes the narrow backend it needs (fakes in tests)."""

from __future__ import annotations

from ketch.api.router import Router
from ketch.api.routes import images as image_routes
from ketch.api.routes import system as system_routes
from ketch.api.routes.images import ImageBackend
from ketch.api.routes.system import SystemBackend

__all__ = ["build_router"]


def build_router(*, system: SystemBackend, images: ImageBackend | None = None) -> Router:
    router = Router()
    system_routes.register(router, system)
    if images is not None:
        image_routes.register(router, images)
    return router
