"""System routes: /version's JSON from a backend, and the host's real version data."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from tests.unit.api.fakes import FAKE_VERSION, FakeSystem
from tests.unit.api.wire import run

import ketch
from ketch.api.http import Request, Response
from ketch.api.router import Router
from ketch.api.routes import build_router
from ketch.api.routes.system import register, version_json
from ketch.api.version import HostSystem, collect_version


def test_version_json_is_dockers_shape() -> None:
    assert version_json(FAKE_VERSION) == {
        "Platform": {"Name": "ketch"},
        "Components": [
            {
                "Name": "Engine",
                "Version": "9.9.9-test",
                "Details": {
                    "ApiVersion": "1.41",
                    "Arch": "amd64",
                    "BuildTime": "2026-01-02T03:04:05.000000000+00:00",
                    "Experimental": "false",
                    "GitCommit": "abcdef0",
                    "GoVersion": "python3.99.0",
                    "KernelVersion": "6.0.0-test",
                    "MinAPIVersion": "1.24",
                    "Os": "linux",
                },
            }
        ],
        "Version": "9.9.9-test",
        "ApiVersion": "1.41",
        "MinAPIVersion": "1.24",
        "GitCommit": "abcdef0",
        "GoVersion": "python3.99.0",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.0.0-test",
        "BuildTime": "2026-01-02T03:04:05.000000000+00:00",
    }


def test_routes_call_the_backend_directly() -> None:
    async def main() -> None:
        router = Router()
        register(router, FakeSystem())
        found = router.match("GET", "/version")
        assert found is not None
        response = await found[0](Request.make("GET", "/version"))
        assert isinstance(response, Response)
        assert response.body.startswith(b'{"Platform":{"Name":"ketch"}')

    run(main())


def test_build_router_has_exactly_the_system_routes() -> None:
    routes = build_router(system=FakeSystem()).routes
    assert [(sorted(r.methods), r.pattern) for r in routes] == [
        (["GET", "HEAD"], "/_ping"),
        (["GET"], "/version"),
    ]


def test_host_version_is_real() -> None:
    version = collect_version()
    uname = os.uname()
    go_arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
    assert version.version == ketch.__version__
    assert (version.api_version, version.min_api_version) == ("1.41", "1.24")
    assert version.runtime == "python" + platform.python_version()
    assert version.kernel_version == uname.release
    assert version.os == "linux"
    assert version.arch == go_arch.get(uname.machine, uname.machine)
    assert version.build_time == "" or re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00", version.build_time
    )
    source = Path(ketch.__file__).resolve().parent
    git = shutil.which("git")
    expected = ""
    if git:
        done = subprocess.run(
            [git, "-C", str(source), "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True
        )
        expected = done.stdout.strip() if done.returncode == 0 else ""
    assert version.git_commit == expected
    assert HostSystem().version() == version
