"""Image routes against a real ImageService (temp root, naive snapshotter) and the fake registry, driven
through the router and over a socketpair: status codes, bodies, streamed progress and in-stream errors."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.unit.api.fakes import FakeSystem
from tests.unit.api.wire import run, serving
from tests.unit.image.test_service import APP, BASE, FakeRegistry, Users, build_image, make_service

from ketch.api.http import Request, Response, StreamingResponse
from ketch.api.routes import build_router
from ketch.api.routes.images import decode_registry_auth, pull_reference
from ketch.common.errors import InvalidArgument, NotFound
from ketch.daemon.main import DaemonImages
from ketch.image.content import ContentStore
from ketch.image.remote.credentials import Credentials
from ketch.image.service import Registry
from ketch.spec.reference import Reference


class FailingRegistry(FakeRegistry):
    """Reports progress, then fails: the error must come inside the stream."""

    def pull(self, ref: Reference, content: ContentStore, **kwargs: Any) -> Any:
        kwargs["progress"].message(f"Pulling from {ref.path}", id=ref.tag or "")
        raise NotFound(f"manifest unknown: {ref}")


class Env:
    def __init__(self, tmp_path: Path, registry: FakeRegistry | None = None) -> None:
        self.registry = registry or FakeRegistry()
        self.users = Users()
        self.service = make_service(tmp_path / "root", self.registry, self.users)
        self.auth_seen: list[tuple[str, Credentials]] = []

        def registry_for(domain: str, creds: Credentials) -> Registry:
            self.auth_seen.append((domain, creds))
            return self.registry

        self.backend = DaemonImages(self.service, registry_for=registry_for)
        self.router = build_router(system=FakeSystem(), images=self.backend)

    async def call(
        self,
        method: str,
        path: str,
        query: str = "",
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, bytes]:
        found = self.router.match(method, path)
        assert found is not None, f"no route for {method} {path}"
        handler, params = found
        request = Request.make(method, path, query=query, body=body, headers=headers or [])
        request.params = params
        try:
            reply = await handler(request)
        except Exception as exc:  # what the server does with a raised error
            from ketch.api.errors import error_response

            reply = error_response(exc)
        if isinstance(reply, StreamingResponse):
            return reply.status, b"".join([chunk async for chunk in reply.chunks])
        assert isinstance(reply, Response)
        return reply.status, reply.body


@pytest.fixture
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    env.registry.add("docker.io/library/busybox:latest", build_image([BASE, APP]))
    return env


def lines(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\r\n")
    return [json.loads(line) for line in body.split(b"\r\n") if line]


def test_pull_streams_progress_then_lists(env: Env) -> None:
    async def go() -> None:
        status, body = await env.call("POST", "/images/create", "fromImage=busybox&tag=latest")
        assert status == 200
        msgs = lines(body)
        assert msgs[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}
        assert msgs[-2]["status"].startswith("Digest: sha256:")
        status, body = await env.call("GET", "/images/json")
        listed = json.loads(body)
        assert status == 200 and [i["RepoTags"] for i in listed] == [["busybox:latest"]]
        # pulled again: up to date
        _, body = await env.call("POST", "/images/create", "fromImage=busybox&tag=latest")
        assert lines(body)[-1] == {"status": "Status: Image is up to date for busybox:latest"}

    run(go())


def test_pull_errors_before_and_inside_the_stream(tmp_path: Path) -> None:
    env = Env(tmp_path)

    async def go() -> None:
        status, body = await env.call("POST", "/images/create", "fromImage=nosuch&tag=latest")
        assert status == 404 and "manifest unknown" in json.loads(body)["message"]
        status, body = await env.call("POST", "/images/create", "fromImage=UPPER")
        assert status == 400
        failing = Env(tmp_path / "f", FailingRegistry())
        status, body = await failing.call("POST", "/images/create", "fromImage=busybox&tag=1")
        assert status == 200
        first, last = lines(body)
        assert first == {"status": "Pulling from library/busybox", "id": "1"}
        message = "manifest unknown: docker.io/library/busybox:1"
        assert last == {"errorDetail": {"message": message}, "error": message}

    run(go())


def test_inspect_history_tag_rmi(env: Env) -> None:
    async def go() -> None:
        await env.call("POST", "/images/create", "fromImage=busybox&tag=latest")
        status, body = await env.call("GET", "/images/busybox/json")
        image = json.loads(body)
        assert status == 200 and image["RepoTags"] == ["busybox:latest"]
        status, body = await env.call("GET", "/images/busybox:latest/history")
        assert status == 200 and len(json.loads(body)) == 2
        status, body = await env.call("POST", "/images/busybox/tag", "repo=127.0.0.1:5000/ketch/bb&tag=t1")
        assert (status, body) == (201, b"")
        status, body = await env.call("GET", "/images/127.0.0.1:5000/ketch/bb:t1/json")
        assert status == 200 and json.loads(body)["Id"] == image["Id"]
        status, body = await env.call("POST", "/images/busybox/tag", "repo=Bad Name")
        assert status == 400
        status, body = await env.call("DELETE", "/images/127.0.0.1:5000/ketch/bb:t1")
        assert (status, json.loads(body)) == (200, [{"Untagged": "127.0.0.1:5000/ketch/bb:t1"}])
        status, body = await env.call("DELETE", "/images/nosuch")
        assert (status, json.loads(body)) == (404, {"message": "No such image: nosuch:latest"})
        status, body = await env.call("GET", "/images/nosuch/json")
        assert status == 404 and json.loads(body)["message"] == "No such image: nosuch:latest"
        env.users.by_image[image["Id"]] = ["c1"]
        status, body = await env.call("DELETE", "/images/" + image["Id"])
        assert status == 409 and "conflict" in json.loads(body)["message"]
        env.users.by_image.clear()
        status, body = await env.call("DELETE", "/images/busybox:latest")
        deleted = json.loads(body)
        assert status == 200 and {"Deleted": image["Id"]} in deleted
        _, body = await env.call("GET", "/images/json")
        assert json.loads(body) == []

    run(go())


def test_save_then_load(env: Env) -> None:
    async def go() -> None:
        await env.call("POST", "/images/create", "fromImage=busybox&tag=latest")
        status, tar = await env.call("GET", "/images/get", "names=busybox")
        assert status == 200
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            assert "manifest.json" in archive.getnames()
        status, one = await env.call("GET", "/images/busybox/get")
        assert status == 200 and len(one) == len(tar)
        status, body = await env.call("GET", "/images/get", "names=nosuch")
        assert status == 404 and "No such image" in json.loads(body)["message"]
        await env.call("DELETE", "/images/busybox")
        status, body = await env.call("POST", "/images/load", "quiet=1", body=tar)
        assert status == 200
        assert lines(body) == [{"stream": "Loaded image: busybox:latest\n"}]
        status, body = await env.call("POST", "/images/load", "quiet=1", body=b"not a tar")
        assert status >= 400

    run(go())


def test_push_with_auth_and_prune(env: Env) -> None:
    async def go() -> None:
        await env.call("POST", "/images/create", "fromImage=busybox&tag=latest")
        await env.call("POST", "/images/busybox/tag", "repo=127.0.0.1:5000/ketch/bb&tag=t1")
        creds = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode()
        status, body = await env.call(
            "POST", "/images/127.0.0.1:5000/ketch/bb/push", "tag=t1", headers=[("x-registry-auth", creds)]
        )
        assert status == 200, body
        assert env.registry.pushed[0][0] == "127.0.0.1:5000/ketch/bb:t1"
        assert env.auth_seen == [("127.0.0.1:5000", Credentials("u", "p"))]
        status, body = await env.call(
            "POST",
            "/images/127.0.0.1:5000/ketch/nosuch/push",
            "tag=t1",
            headers=[("x-registry-auth", "e30=")],
        )
        assert status == 404 and "does not exist locally" in json.loads(body)["message"]
        # untag everything: the image is dangling and prune removes it
        await env.call("DELETE", "/images/127.0.0.1:5000/ketch/bb:t1")
        status, body = await env.call(
            "POST", "/images/prune", "filters=" + json.dumps({"dangling": ["true"]})
        )
        assert status == 200 and json.loads(body)["ImagesDeleted"] is None
        status, body = await env.call(
            "POST", "/images/prune", "filters=" + json.dumps({"dangling": ["false"]})
        )
        assert status == 200 and json.loads(body)["ImagesDeleted"]
        status, body = await env.call("POST", "/images/prune", "filters=" + json.dumps({"bogus": ["x"]}))
        assert status == 400

    run(go())


def test_over_a_socket(env: Env) -> None:
    async def go() -> None:
        async with serving(env.router) as (_, connect):
            wire = await connect()
            reply = await wire.call(
                "POST",
                "/v1.41/images/create?fromImage=busybox&tag=latest",
                body=b"",
                headers=[("X-Registry-Auth", "e30=")],
            )
            assert reply.status == 200 and reply.header("transfer-encoding") == "chunked"
            assert reply.header("content-type") == "application/json"
            assert lines(reply.body)[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}
            reply = await wire.call("POST", "/v1.41/images/busybox/tag?repo=x&tag=y", body=b"")
            assert reply.status == 201 and reply.header("content-type") is None
            reply = await wire.call("GET", "/v1.41/images/x:y/json")
            assert reply.status == 200 and reply.json()["RepoTags"] == ["busybox:latest", "x:y"]

    run(go())


def test_auth_route(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []
    monkeypatch.setattr(env.backend, "login", lambda s, u, p: calls.append((s, u, p)))

    async def go() -> None:
        body = json.dumps({"username": "u", "password": "p", "serveraddress": "127.0.0.1:5001"}).encode()
        headers = [("content-type", "application/json")]
        status, answer = await env.call("POST", "/auth", body=body, headers=headers)
        assert (status, json.loads(answer)) == (200, {"IdentityToken": "", "Status": "Login Succeeded"})
        assert calls == [("127.0.0.1:5001", "u", "p")]
        status, _ = await env.call("POST", "/auth", body=b"[1]", headers=headers)
        assert status == 400

    run(go())


def test_decode_registry_auth() -> None:
    def enc(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    assert decode_registry_auth("e30=") is None
    assert decode_registry_auth(None) is None
    assert decode_registry_auth("!!!") is None
    assert decode_registry_auth(enc({"username": "a", "password": "b"})) == Credentials("a", "b")
    legacy = base64.b64encode(b"a:b:c").decode()
    assert decode_registry_auth(enc({"auth": legacy})) == Credentials("a", "b:c")
    assert decode_registry_auth(enc({"identitytoken": "tok"})) == Credentials("", "", "tok")


def test_pull_reference() -> None:
    assert pull_reference("busybox", "") == "busybox"
    assert pull_reference("busybox", "1.36") == "busybox:1.36"
    assert pull_reference("busybox", "sha256:" + "a" * 64) == "busybox@sha256:" + "a" * 64
    with pytest.raises(InvalidArgument):
        pull_reference("", "x")
    with pytest.raises(InvalidArgument):
        pull_reference("busybox", "bad tag")
