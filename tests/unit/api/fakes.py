"""Fake backends for the route tests."""

from __future__ import annotations

from ketch.api.version import EngineVersion

FAKE_VERSION = EngineVersion(
    version="9.9.9-test",
    api_version="1.41",
    min_api_version="1.24",
    git_commit="abcdef0",
    runtime="python3.99.0",
    os="linux",
    arch="amd64",
    kernel_version="6.0.0-test",
    build_time="2026-01-02T03:04:05.000000000+00:00",
)


class FakeSystem:
    def version(self) -> EngineVersion:
        return FAKE_VERSION
