"""The public names of the api package and of the spec modules it brings (httpx tests/test_exported_members.py)."""

from __future__ import annotations

import ketch.api
import ketch.api.server
from ketch.spec import engine_api, stdcopy


def test_api_exports() -> None:
    assert sorted(ketch.api.__all__) == [
        "Handler",
        "Hijack",
        "JSON",
        "Query",
        "RAW_STREAM",
        "RawStream",
        "Reply",
        "Request",
        "Response",
        "Router",
        "StreamingResponse",
        "error_response",
        "page_not_found",
        "status_for",
    ]
    for name in ketch.api.__all__:
        assert getattr(ketch.api, name) is not None


def test_server_exports() -> None:
    assert sorted(ketch.api.server.__all__) == [
        "ApiServer",
        "DEFAULT_HOST",
        "Host",
        "TLSFiles",
        "main",
        "parse_host",
        "tls_context",
    ]


def test_spec_exports() -> None:
    assert sorted(engine_api.__all__) == [
        "API_VERSION",
        "FALLBACK_API",
        "Filters",
        "MIN_API",
        "check_version",
        "compare_versions",
        "negotiate",
        "parse_bool",
        "split_version",
    ]
    assert sorted(stdcopy.__all__) == [
        "Decoder",
        "Frame",
        "HEADER_SIZE",
        "MAX_PAYLOAD",
        "STDERR",
        "STDIN",
        "STDOUT",
        "SYSTEMERR",
        "encode",
    ]
    for module in (engine_api, stdcopy):
        for name in module.__all__:
            assert hasattr(module, name)
