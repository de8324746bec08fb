"""An in-memory OCI distribution registry behind ``httpx.MockTransport``, with a token server and faults.

Enough of the API for the client's flows: ``/v2/``, manifests and blobs (HEAD, GET with Range), uploads
(POST with mount, PATCH chunks, PUT), manifest PUT, and auth as ``none``, ``basic`` or ``bearer`` (the token
server at ``https://auth.test/token`` grants exactly the scopes asked for). Every request is logged. Faults are
queued per blob digest and taken one per GET: ``"500"``, ``("truncate", n)`` (send n bytes, then drop the
connection), ``"connect"`` (connection refused).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TOKEN_REALM = "https://auth.test/token"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def errors_body(code: str, message: str, detail: Any = None) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()


class _Truncated(httpx.SyncByteStream):
    """A body that stops after ``n`` bytes with a dropped connection."""

    def __init__(self, data: bytes, n: int) -> None:
        self.data, self.n = data, n

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.n]
        raise httpx.ReadError("connection reset by peer")


@dataclass
class Image:
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: list[bytes]
    layer_digests: list[str]


def image_blobs(layers: list[bytes], *, arch: str = "amd64", media_type: str = OCI_MANIFEST) -> Image:
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(b"diff-" + layer) for layer in layers]},
        }
    ).encode()
    layer_media = (
        OCI_LAYER_GZIP if media_type == OCI_MANIFEST else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    config_media = (
        OCI_CONFIG if media_type == OCI_MANIFEST else "application/vnd.docker.container.image.v1+json"
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_media, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": layer_media, "digest": sha256(x), "size": len(x)} for x in layers],
        }
    ).encode()
    return Image(manifest, sha256(manifest), config, sha256(config), layers, [sha256(x) for x in layers])


@dataclass
class FakeRegistry:
    host: str = "registry.test"
    auth: Literal["none", "basic", "bearer"] = "none"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    anonymous_pull: bool = True  # bearer: may a token without credentials pull?
    challenge_on_ping: bool = True
    ignore_range: bool = False
    serve_head_digest: bool = True
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    repo_blobs: dict[str, set[str]] = field(default_factory=dict)
    uploads: dict[str, tuple[str, bytearray]] = field(default_factory=dict)
    faults: dict[str, list[Any]] = field(default_factory=dict)
    status_faults: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    log: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    external: dict[str, bytes] = field(default_factory=dict)  # URL -> body, for foreign layers

    # -- content

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        digest = sha256(data)
        self.manifests[(repo, digest)] = (data, media_type)
        self.manifests[(repo, reference)] = (data, media_type)
        return digest

    def add_image(self, repo: str, tag: str, image: Image) -> Image:
        for blob in [image.config, *image.layers]:
            self.put_blob(repo, blob)
        media_type = json.loads(image.manifest)["mediaType"]
        self.put_manifest(repo, tag, image.manifest, media_type)
        return image

    def add_index(self, repo: str, tag: str, images: dict[str, Image]) -> str:
        entries = []
        for arch, image in images.items():
            for blob in [image.config, *image.layers]:
                self.put_blob(repo, blob)
            self.put_manifest(repo, image.manifest_digest, image.manifest, OCI_MANIFEST)
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return self.put_manifest(repo, tag, index, OCI_INDEX)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def requests(self, method: str | None = None) -> list[str]:
        """``METHOD path`` of each logged request to the registry (not the token server)."""
        return [
            f"{r.method} {r.url.path}"
            for r in self.log
            if r.url.host != "auth.test" and (method is None or r.method == method)
        ]

    # -- auth

    def _challenge(self, scope: str = "", error: str = "") -> dict[str, str]:
        if self.auth == "basic":
            return {"WWW-Authenticate": 'Basic realm="fake"'}
        value = f'Bearer realm="{TOKEN_REALM}",service="{self.host}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return {"WWW-Authenticate": value}

    def _basic_user(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        user = None
        if "authorization" in request.headers:
            user = self._basic_user(request)
            if user is None:
                return httpx.Response(401, json={"details": "incorrect username or password"})
        scopes = set(request.url.params.get_list("scope"))
        if request.method == "POST":  # the OAuth2 form: scopes space-separated
            form = httpx.QueryParams(request.content.decode())
            scopes = set(form.get("scope", "").split()) if form.get("refresh_token") else set()
        if user is None and not self.anonymous_pull:
            scopes = set()
        token = f"tok-{len(self.tokens) + 1}"
        self.tokens[token] = scopes
        return httpx.Response(200, json={"token": token, "expires_in": 300})

    def _authorized(self, request: httpx.Request, repo: str, action: str) -> httpx.Response | None:
        if self.auth == "none":
            return None
        scope = f"repository:{repo}:{'pull,push' if action == 'push' else 'pull'}"
        if self.auth == "basic":
            if self._basic_user(request) is None:
                body = errors_body("UNAUTHORIZED", "authentication required", [])
                return httpx.Response(401, headers=self._challenge(), content=body)
            return None
        header = request.headers.get("authorization", "")
        granted = (
            self.tokens.get(header.removeprefix("Bearer "), set()) if header.startswith("Bearer ") else set()
        )
        allowed = any(
            s.split(":")[1] == repo and action in s.split(":")[2].split(",")
            for s in granted
            if s.count(":") == 2
        )
        if not allowed:
            body = errors_body(
                "UNAUTHORIZED", "authentication required", [{"Type": "repository", "Name": repo}]
            )
            return httpx.Response(401, headers=self._challenge(scope), content=body)
        return None

    # -- routing

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        if request.url.host == "auth.test":
            return self._token(request)
        if request.url.netloc.decode() != self.host:
            data = self.external.get(str(request.url))
            return httpx.Response(404) if data is None else httpx.Response(200, content=data)
        path = request.url.path
        queued = self.status_faults.get(path)
        if queued:
            return httpx.Response(queued.pop(0))
        if path == "/v2/":
            if self.auth != "none" and self.challenge_on_ping:
                if self.auth == "basic" and self._basic_user(request) is not None:
                    return httpx.Response(200, json={})
                return httpx.Response(
                    401, headers=self._challenge(), content=errors_body("UNAUTHORIZED", "x")
                )
            return httpx.Response(200, json={})
        rest = path.removeprefix("/v2/")
        for marker, kind in (("/manifests/", "manifest"), ("/blobs/uploads/", "upload"), ("/blobs/", "blob")):
            if marker in rest:
                repo, _, target = rest.partition(marker)
                action = "pull" if request.method in ("GET", "HEAD") else "push"
                if kind == "upload" and "mount" in request.url.params:
                    source = request.url.params["from"]
                    denied = self._authorized(request, source, "pull")
                    if denied is not None:
                        return denied
                denied = self._authorized(request, repo, action)
                if denied is not None:
                    return denied
                route = {"manifest": self._manifest, "upload": self._upload, "blob": self._blob}[kind]
                return route(request, repo, target)
        return httpx.Response(
            404, content=errors_body("NAME_UNKNOWN", "repository name not known to registry")
        )

    def _manifest(self, request: httpx.Request, repo: str, target: str) -> httpx.Response:
        if request.method == "PUT":
            media_type = request.headers["content-type"]
            digest = self.put_manifest(repo, target, request.content, media_type)
            return httpx.Response(
                201, headers={"Docker-Content-Digest": digest, "Location": request.url.path}
            )
        found = self.manifests.get((repo, target))
        if found is None:
            if request.method == "HEAD":
                return httpx.Response(404)
            return httpx.Response(
                404, content=errors_body("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": target})
            )
        data, media_type = found
        headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
        if self.serve_head_digest or request.method == "GET":
            headers["Docker-Content-Digest"] = sha256(data)
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=data)

    def _blob(self, request: httpx.Request, repo: str, digest: str) -> httpx.Response:
        data = self.blobs.get(digest) if digest in self.repo_blobs.get(repo, set()) else None
        if data is None:
            return httpx.Response(
                404, content=errors_body("BLOB_UNKNOWN", "blob unknown to registry", digest)
            )
        if request.method == "HEAD":
            return httpx.Response(
                200, headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest}
            )
        fault = self.faults.get(digest, [None]).pop(0) if self.faults.get(digest) else None
        if fault == "500":
            return httpx.Response(500)
        if fault == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused") from ConnectionRefusedError(
                111, "refused"
            )
        start = 0
        ranged = request.headers.get("range", "")
        if ranged.startswith("bytes=") and not self.ignore_range:
            start = int(ranged[6:].split("-")[0])
        body = data[start:]
        status = 206 if start else 200
        headers = {"Content-Length": str(len(body))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if isinstance(fault, tuple) and fault[0] == "truncate":
            return httpx.Response(status, headers=headers, stream=_Truncated(body, fault[1]))
        if isinstance(fault, tuple) and fault[0] == "replace":
            body = fault[1]
        return httpx.Response(status, headers=headers, content=body)

    def _upload(self, request: httpx.Request, repo: str, session: str) -> httpx.Response:
        if request.method == "POST":
            mount, source = request.url.params.get("mount"), request.url.params.get("from")
            if mount and source and mount in self.repo_blobs.get(source, set()):
                self.repo_blobs.setdefault(repo, set()).add(mount)
                return httpx.Response(201, headers={"Location": f"/v2/{repo}/blobs/{mount}"})
            new = uuid.uuid4().hex
            self.uploads[new] = (repo, bytearray())
            return httpx.Response(
                202, headers={"Location": f"/v2/{repo}/blobs/uploads/{new}?_state=s", "Range": "0-0"}
            )
        repo_of, data = self.uploads[session]
        if request.method == "PATCH":
            first = int(request.headers["content-range"].split("-")[0])
            if first != len(data):
                return httpx.Response(416, content=errors_body("BLOB_UPLOAD_INVALID", "blob upload invalid"))
            data += request.content
            return httpx.Response(
                202,
                headers={
                    "Location": f"/v2/{repo}/blobs/uploads/{session}?_state=n{len(data)}",
                    "Range": f"0-{len(data) - 1}",
                },
            )
        # PUT: close the session, with a last piece in the body if any
        data += request.content
        digest = request.url.params["digest"]
        if sha256(bytes(data)) != digest:
            return httpx.Response(
                400, content=errors_body("DIGEST_INVALID", "provided digest did not match uploaded content")
            )
        del self.uploads[session]
        self.put_blob(repo_of, bytes(data))
        return httpx.Response(
            201, headers={"Location": f"/v2/{repo}/blobs/{digest}", "Docker-Content-Digest": digest}
        )
