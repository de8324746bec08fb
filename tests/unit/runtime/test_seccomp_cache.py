"""The compiled seccomp program is cached by profile: the second compile reads the first one's program."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.runtime import seccomp
from ketch.spec.seccomp_profile import DEFAULT_CAPABILITIES, default_profile

try:
    from ketch.sys import seccomp as libseccomp

    libseccomp.version()
except Exception:
    pytest.skip("libseccomp is not available", allow_module_level=True)


def test_program_is_cached_per_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    first = seccomp.compile_program(profile, cache_dir=str(tmp_path))
    assert first is not None and len(list(tmp_path.iterdir())) == 1
    monkeypatch.setattr(
        seccomp, "_build", lambda *a: pytest.fail("compiled again instead of reading the cache")
    )
    assert seccomp.compile_program(profile, cache_dir=str(tmp_path)) == first
    other = default_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    monkeypatch.undo()
    second = seccomp.compile_program(other, cache_dir=str(tmp_path))
    assert second is not None and second != first and len(list(tmp_path.iterdir())) == 2
    assert seccomp.compile_program(profile) == first  # no cache: the same program
