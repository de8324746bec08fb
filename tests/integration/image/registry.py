"""A private Debian ``docker-registry`` (distribution 2.8) for tests, and tiny images to put in it.

:class:`Registry` serves on 127.0.0.1 at a free port from its own temporary storage (filesystem driver),
optionally behind htpasswd auth, and is stopped by its pid. :func:`make_oci_layout` writes an OCI layout
directory (one gzip layer made from a rootfs, a config, a manifest, and optionally a two-platform index) that
``skopeo copy oci:<dir>:<tag> docker://...`` pushes into the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


def missing_tools() -> str | None:
    """Why the registry tests cannot run here, or None."""
    for tool in (REGISTRY_BIN, SKOPEO):
        if not os.path.exists(tool):
            return f"{tool} is not installed (Debian packages docker-registry and skopeo)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str | None:
    """A bcrypt htpasswd entry (the only kind the registry takes), from whichever tool this host has."""
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    try:
        import bcrypt  # type: ignore[import-not-found]

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # libxcrypt does bcrypt ($2b$)
        except ImportError:
            return None
    salt = "$2b$05$" + "".join(
        "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[b % 64] for b in os.urandom(22)
    )
    hashed = crypt.crypt(password, salt)
    return f"{user}:{hashed}" if hashed and hashed.startswith("$2b$") else None


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_tls(directory: Path) -> TLSFiles:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
             "-subj", "/CN=ketch test CA")  # fmt: skip
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(extension + "\n")
        _openssl("req", *key, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN=ketch test {name}")  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
                 str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{name}.crt"), "-days", "2",
                 "-extfile", str(d / f"{name}.ext"))  # fmt: skip
    return TLSFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


@dataclass
class Registry:
    """``docker-registry serve`` on 127.0.0.1; ``users`` turns on htpasswd auth, ``tls`` serves HTTPS and
    asks for a client certificate signed by the same CA."""

    root: Path
    users: dict[str, str] | None = None
    tls: TLSFiles | None = None
    port: int = 0
    pid: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: ketch-test-secret",
        ]
        if self.tls is not None:
            config += [
                "  tls:",
                f"    certificate: {self.tls.server_cert}",
                f"    key: {self.tls.server_key}",
                "    clientcas:",
                f"      - {self.tls.ca}",
            ]
        if self.users is not None:
            lines = [htpasswd_line(user, password) for user, password in self.users.items()]
            if any(line is None for line in lines):
                raise RuntimeError("no way to make a bcrypt htpasswd entry (htpasswd, bcrypt or crypt)")
            (self.root / "htpasswd").write_text("\n".join(str(line) for line in lines) + "\n")
            config += ["auth:", "  htpasswd:", "    realm: ketch-test", f"    path: {self.root / 'htpasswd'}"]
        (self.root / "config.yml").write_text("\n".join(config) + "\n")
        with open(self.root / "registry.log", "wb") as log:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = proc.pid
        self._proc = proc
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()}")
            try:
                if self.tls is not None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                else:
                    urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # 401 from an auth-protected registry: it is up
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not answer within 20 s")

    def stop(self) -> None:
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self.pid = 0


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_from_rootfs(rootfs: Path) -> tuple[bytes, str]:
    """A gzip layer of ``rootfs`` (owned by root, sorted, mtimes kept) and its diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), _sha256(tar_bytes)


def host_arch() -> str:
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


@dataclass(frozen=True)
class LayoutImage:
    manifest_digest: str
    config_digest: str
    layer_digest: str
    index_digest: str | None  # when the layout tag names a two-platform index


def write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = _sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def make_oci_layout(layout: Path, rootfs: Path, tag: str, *, multi_arch: bool = False) -> LayoutImage:
    """Write (or extend) an OCI layout with ``tag`` naming the image, or an index of it and an arm64 twin."""
    layer, diff_id = layer_from_rootfs(rootfs)
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **write_blob(layout, layer)}
    manifests = []
    for arch in [host_arch()] + (["arm64" if host_arch() != "arm64" else "amd64"] if multi_arch else []):
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "ketch test", "created": "2024-01-01T00:00:00Z"}],
            "created": "2024-01-01T00:00:00Z",
        }
        config_desc = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **write_blob(layout, json.dumps(config, sort_keys=True).encode()),
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **write_blob(layout, json.dumps(manifest).encode()),
            "platform": {"architecture": arch, "os": "linux"},
        }
        manifests.append((manifest_desc, config_desc))
    index_digest = None
    if multi_arch:
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [m for m, _ in manifests],
        }
        top = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            **write_blob(layout, json.dumps(index).encode()),
        }
        index_digest = top["digest"]
    else:
        top = {k: v for k, v in manifests[0][0].items() if k != "platform"}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    existing = json.loads(index_path.read_text())["manifests"] if index_path.exists() else []
    existing = [
        m for m in existing if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [*existing, top]}))
    return LayoutImage(
        manifest_digest=manifests[0][0]["digest"],
        config_digest=manifests[0][1]["digest"],
        layer_digest=layer_desc["digest"],
        index_digest=index_digest,
    )


def skopeo(*args: str, policy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SKOPEO, "--policy", str(policy), *args], capture_output=True, text=True, timeout=120, check=False
    )


def write_policy(path: Path) -> Path:
    path.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    return path
