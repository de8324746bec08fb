"""Typed calls for the container, exec and system endpoints, shaped as the docker client sends them.

Query parameters follow docker's client package: the same names, ``1`` for true, keys sorted (Go's
``url.Values``), and empty values sent where docker sends them (``commit``, ``import``). Inspecting or
removing a container that does not exist raises :class:`ObjectNotFound` ("Error: No such container: x"), as
the docker client words those two itself; other refusals keep the daemon's message.
"""

from __future__ import annotations

from ketch.client.http import Connection, Keep, ObjectNotFound, Pending, Response, quote_path
from ketch.common.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Any

    from ketch.client.hijack import Hijacked
    from ketch.client.http import Query
    from ketch.spec.engine_api import Filters

__all__ = ["ContainerCalls"]


def _filters(filters: Filters | None) -> str | None:
    return filters.to_json() if filters else None


class ContainerCalls:
    conn: Connection

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def create_container(self, body: dict[str, Any], *, name: str = "", platform: str = "") -> dict[str, Any]:
        query = {"name": name, "platform": platform}
        result: dict[str, Any] = self.conn.request(
            "POST", "/containers/create", query=query, json_body=body
        ).json()
        return result

    def start_container(self, container: str) -> None:
        self.conn.request("POST", f"/containers/{quote_path(container)}/start").read()

    def stop_container(self, container: str, *, timeout: int | None = None, signal: str = "") -> None:
        query = {"t": timeout, "signal": signal}
        self.conn.request("POST", f"/containers/{quote_path(container)}/stop", query=query).read()

    def restart_container(self, container: str, *, timeout: int | None = None, signal: str = "") -> None:
        query = {"t": timeout, "signal": signal}
        self.conn.request("POST", f"/containers/{quote_path(container)}/restart", query=query).read()

    def kill_container(self, container: str, signal: str = "") -> None:
        self.conn.request(
            "POST", f"/containers/{quote_path(container)}/kill", query={"signal": signal}
        ).read()

    def pause_container(self, container: str) -> None:
        self.conn.request("POST", f"/containers/{quote_path(container)}/pause").read()

    def unpause_container(self, container: str) -> None:
        self.conn.request("POST", f"/containers/{quote_path(container)}/unpause").read()

    def begin_wait(self, container: str, condition: str = "") -> Pending:
        """Send ``wait`` now; the answer (headers at once, the body when the condition is met) comes later."""
        return self.conn.begin(
            "POST", f"/containers/{quote_path(container)}/wait", query={"condition": condition}
        )

    def wait_container(self, container: str, condition: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.begin_wait(container, condition).result().json() or {}
        return result

    def remove_container(
        self, container: str, *, force: bool = False, volumes: bool = False, link: bool = False
    ) -> None:
        query = {"v": volumes, "link": link, "force": force}
        try:
            self.conn.request("DELETE", f"/containers/{quote_path(container)}", query=query).read()
        except NotFound:
            raise ObjectNotFound("container", container) from None

    def rename_container(self, container: str, name: str) -> None:
        self.conn.request("POST", f"/containers/{quote_path(container)}/rename", query={"name": name}).read()

    def update_container(self, container: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (
            self.conn.request("POST", f"/containers/{quote_path(container)}/update", json_body=body).json()
            or {}
        )
        return result

    # ---- queries ------------------------------------------------------------------------------------------

    def containers(
        self, *, all: bool = False, limit: int = -1, size: bool = False, filters: Filters | None = None
    ) -> list[dict[str, Any]]:
        query: Query = {
            "all": all,
            "limit": limit if limit != -1 else None,
            "size": size,
            "filters": _filters(filters),
        }
        result: list[dict[str, Any]] = self.conn.request("GET", "/containers/json", query=query).json() or []
        return result

    def inspect_container(self, container: str, *, size: bool = False) -> dict[str, Any]:
        try:
            response = self.conn.request(
                "GET", f"/containers/{quote_path(container)}/json", query={"size": size}
            )
        except NotFound:
            raise ObjectNotFound("container", container) from None
        result: dict[str, Any] = response.json()
        return result

    def logs(
        self,
        container: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: str = "",
        until: str = "",
        timestamps: bool = False,
        follow: bool = False,
        tail: str = "all",
        details: bool = False,
    ) -> Response:
        """The log stream (frames unless the container has a tty); read it with :meth:`Response.chunks`."""
        query: Query = {
            "stdout": stdout,
            "stderr": stderr,
            "since": since,
            "until": until,
            "timestamps": timestamps,
            "details": details,
            "follow": follow,
            "tail": Keep(tail),
        }
        return self.conn.request("GET", f"/containers/{quote_path(container)}/logs", query=query)

    def top(self, container: str, ps_args: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request(
            "GET", f"/containers/{quote_path(container)}/top", query={"ps_args": ps_args}
        ).json()
        return result

    def stats(self, container: str, *, stream: bool = False) -> Response:
        """``stream=0`` answers one JSON object; ``stream=1`` one per second (read with ``json_stream``)."""
        return self.conn.request(
            "GET", f"/containers/{quote_path(container)}/stats", query={"stream": "1" if stream else "0"}
        )

    def export_container(self, container: str) -> Response:
        return self.conn.request("GET", f"/containers/{quote_path(container)}/export")

    # ---- streams ------------------------------------------------------------------------------------------

    def attach(
        self,
        container: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        detach_keys: str = "",
        logs: bool = False,
    ) -> Hijacked:
        query: Query = {
            "stream": True,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "detachKeys": detach_keys,
            "logs": logs,
        }
        return self.conn.hijack("POST", f"/containers/{quote_path(container)}/attach", query=query)

    def resize_container(self, container: str, height: int, width: int) -> None:
        self.conn.request(
            "POST", f"/containers/{quote_path(container)}/resize", query={"h": height, "w": width}
        ).read()

    # ---- exec ---------------------------------------------------------------------------------------------

    def exec_create(self, container: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request(
            "POST", f"/containers/{quote_path(container)}/exec", json_body=body
        ).json()
        return result

    def exec_start_detached(self, exec_id: str, *, tty: bool = False) -> None:
        self.conn.request(
            "POST", f"/exec/{quote_path(exec_id)}/start", json_body={"Detach": True, "Tty": tty}
        ).read()

    def exec_attach(self, exec_id: str, *, tty: bool = False) -> Hijacked:
        return self.conn.hijack(
            "POST", f"/exec/{quote_path(exec_id)}/start", json_body={"Detach": False, "Tty": tty}
        )

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", f"/exec/{quote_path(exec_id)}/json").json()
        return result

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.conn.request(
            "POST", f"/exec/{quote_path(exec_id)}/resize", query={"h": height, "w": width}
        ).read()

    # ---- images from containers -----------------------------------------------------------------------------

    def commit(
        self,
        container: str,
        *,
        repo: str = "",
        tag: str = "",
        comment: str = "",
        author: str = "",
        changes: list[str] | None = None,
        pause: bool = True,
    ) -> dict[str, Any]:
        query: Query = {
            "container": container,
            "repo": Keep(repo),
            "tag": Keep(tag),
            "comment": Keep(comment),
            "author": Keep(author),
            "changes": list(changes or []),
            "pause": None if pause else "0",
        }
        result: dict[str, Any] = self.conn.request("POST", "/commit", query=query).json()
        return result

    def import_image(
        self,
        source: IO[bytes] | None,
        *,
        source_name: str = "-",
        repo: str = "",
        tag: str = "",
        message: str = "",
        changes: list[str] | None = None,
        platform: str = "",
    ) -> Iterator[dict[str, Any]]:
        query: Query = {
            "fromSrc": Keep(source_name),
            "repo": Keep(repo),
            "tag": Keep(tag),
            "message": Keep(message),
            "platform": platform.lower(),
            "changes": list(changes or []),
        }
        return self.conn.request("POST", "/images/create", query=query, body=source).json_stream()

    # ---- pruning --------------------------------------------------------------------------------------------

    def _prune(self, path: str, filters: Filters | None) -> dict[str, Any]:
        result: dict[str, Any] = (
            self.conn.request("POST", path, query={"filters": _filters(filters)}).json() or {}
        )
        return result

    def prune_containers(self, filters: Filters | None = None) -> dict[str, Any]:
        return self._prune("/containers/prune", filters)

    def prune_networks(self, filters: Filters | None = None) -> dict[str, Any]:
        return self._prune("/networks/prune", filters)

    def prune_volumes(self, filters: Filters | None = None) -> dict[str, Any]:
        return self._prune("/volumes/prune", filters)

    def prune_build_cache(self, filters: Filters | None = None, *, all: bool = False) -> dict[str, Any]:
        query = {"filters": _filters(filters), "all": all}
        result: dict[str, Any] = self.conn.request("POST", "/build/prune", query=query).json() or {}
        return result

    # ---- system ---------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", "/info").json()
        return result

    def events(
        self, *, since: str = "", until: str = "", filters: Filters | None = None
    ) -> Iterator[dict[str, Any]]:
        query = {"since": since, "until": until, "filters": _filters(filters)}
        return self.conn.request("GET", "/events", query=query).json_stream()

    def disk_usage(self) -> dict[str, Any]:
        result: dict[str, Any] = self.conn.request("GET", "/system/df").json()
        return result
