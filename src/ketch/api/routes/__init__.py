"""The API's routes, grouped by resource; each group takes the narrow backend it needs (fakes in tests)."""

from __future__ import annotations

from ketch.api.router import Router
from ketch.api.routes import system as system_routes
from ketch.api.routes.system import SystemBackend

__all__ = ["build_router"]


def build_router(*, system: SystemBackend) -> Router:
    router = Router()
    system_routes.register(router, system)
    return router
