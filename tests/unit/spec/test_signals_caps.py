import signal

import pytest

from ketch.spec.capabilities import CAPABILITIES, cap_mask, cap_number
from ketch.spec.signals import SIGNALS, parse_signal, signal_name


@pytest.mark.parametrize(
    "text,number",
    [
        ("KILL", 9),
        ("SIGKILL", 9),
        ("kill", 9),
        ("9", 9),
        ("TERM", 15),
        ("sigusr1", 10),
        ("SIGRTMIN", 34),
        ("RTMIN+3", 37),
        ("SIGRTMAX", 64),
        ("SIGRTMAX-2", 62),
        ("WINCH", 28),
        ("64", 64),
        (" HUP ", 1),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["", "0", "65", "SIGFOO", "RTMIN-1", "RTMAX+1", "-9", "9x"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_signal(text)


def test_signal_table_matches_the_host() -> None:
    for name, number in SIGNALS.items():
        if hasattr(signal, name):
            assert getattr(signal, name) == number, name
    assert signal_name(9) == "SIGKILL" and signal_name(36) == "SIGRTMIN+2"


def test_capability_numbers_match_linux_headers() -> None:
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_NET_ADMIN"] == 12
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_AUDIT_READ"] == 37
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(CAPABILITIES) == 41
    assert cap_number("net_admin") == 12 and cap_number("CAP_KILL") == 5
    with pytest.raises(ValueError):
        cap_number("CAP_FLY")


def test_cap_mask_drops_caps_the_kernel_lacks() -> None:
    assert cap_mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert cap_mask(["CAP_BPF", "CAP_CHOWN"], last_cap=38) == 1
