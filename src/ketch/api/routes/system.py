"""System routes: ``/_ping`` and ``/version`` (``/info`` comes with the engine, which has the counts).

``/_ping`` answers as dockerd does, headers included: both docker CLIs start every command with
``HEAD /_ping`` and take the API version to use from its ``Api-Version`` header. It sends no
``Builder-Version``: with ``2`` the 20.10 CLI would build through BuildKit's gRPC session, which ketch does not
serve (see docker-api-traces/negotiation/log-bk2.txt).
"""

from __future__ import annotations

from typing import Any, Protocol

from ketch.api.http import Request, Response
from ketch.api.router import Router
from ketch.api.version import EngineVersion

__all__ = ["SystemBackend", "register", "version_json"]

_NO_CACHE = [("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache")]


class SystemBackend(Protocol):
    def version(self) -> EngineVersion: ...


def version_json(v: EngineVersion) -> dict[str, Any]:
    """Docker's ``types.Version``: the engine as a component, and the same facts at the top level."""
    details = {
        "ApiVersion": v.api_version,
        "Arch": v.arch,
        "BuildTime": v.build_time,
        "Experimental": "false",
        "GitCommit": v.git_commit,
        "GoVersion": v.runtime,
        "KernelVersion": v.kernel_version,
        "MinAPIVersion": v.min_api_version,
        "Os": v.os,
    }
    return {
        "Platform": {"Name": v.platform_name},
        "Components": [{"Name": "Engine", "Version": v.version, "Details": details}],
        "Version": v.version,
        "ApiVersion": v.api_version,
        "MinAPIVersion": v.min_api_version,
        "GitCommit": v.git_commit,
        "GoVersion": v.runtime,
        "Os": v.os,
        "Arch": v.arch,
        "KernelVersion": v.kernel_version,
        "BuildTime": v.build_time,
    }


def register(router: Router, backend: SystemBackend) -> None:
    async def ping(request: Request) -> Response:
        if request.method == "HEAD":
            # dockerd states an empty body's length for HEAD, not the "OK" a GET gets.
            return Response(200, b"", "text/plain; charset=utf-8", [*_NO_CACHE, ("Content-Length", "0")])
        return Response(200, b"OK", "text/plain; charset=utf-8", list(_NO_CACHE))

    async def version(request: Request) -> Response:
        return Response.json(version_json(backend.version()))

    router.add(("GET", "HEAD"), "/_ping", ping)
    router.add("GET", "/version", version)
