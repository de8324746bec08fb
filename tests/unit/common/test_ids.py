"""Container IDs: generation, the short form, and lookup by unique prefix."""

from __future__ import annotations

import pytest

from ketch.common.errors import InvalidArgument, NotFound
from ketch.common.ids import AmbiguousPrefix, generate_id, is_full_id, lookup_prefix, truncate_id


def test_generated_ids_are_64_hex_and_distinct() -> None:
    ids = {generate_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(is_full_id(i) and i == i.lower() for i in ids)
    assert not any(i[:12].isdigit() for i in ids)


def test_an_all_digit_short_id_is_drawn_again() -> None:
    draws = iter([bytes.fromhex("0123456789" + "01" + "ab" * 26), bytes.fromhex("ab" * 32)])
    calls: list[int] = []

    def fake_urandom(n: int) -> bytes:
        calls.append(n)
        return next(draws)

    assert generate_id(fake_urandom) == "ab" * 32
    assert calls == [32, 32]


def test_digits_after_the_short_id_are_fine() -> None:
    value = bytes.fromhex("0123456789a0" + "11" * 26)
    assert generate_id(lambda n: value) == value.hex()


@pytest.mark.parametrize(
    ("value", "short"),
    [("a" * 64, "a" * 12), ("sha256:" + "b" * 64, "b" * 12), ("abc", "abc"), ("sha256:abc", "abc"), ("", "")],
)
def test_truncate(value: str, short: str) -> None:
    assert truncate_id(value) == short


@pytest.mark.parametrize(
    ("value", "full"),
    [("a" * 64, True), ("A" * 64, False), ("a" * 63, False), ("g" * 64, False), ("", False)],
)
def test_is_full_id(value: str, full: bool) -> None:
    assert is_full_id(value) is full


IDS = ["abc1" + "0" * 60, "abc2" + "0" * 60, "def0" + "0" * 60]


def test_unique_prefix_names_one_id() -> None:
    assert lookup_prefix("abc1", IDS) == IDS[0]
    assert lookup_prefix("d", IDS) == IDS[2]
    assert lookup_prefix(IDS[1], IDS) == IDS[1]
    assert lookup_prefix("abc1", [IDS[0], IDS[0]]) == IDS[0]  # the same ID twice is not ambiguous


def test_ambiguous_prefix() -> None:
    with pytest.raises(AmbiguousPrefix, match=r"^Multiple IDs found with provided prefix: abc$") as info:
        lookup_prefix("abc", IDS)
    assert isinstance(info.value, InvalidArgument) and info.value.status == 400


def test_unknown_prefix_is_not_found() -> None:
    with pytest.raises(NotFound, match=r"^No such container: abd$"):
        lookup_prefix("abd", IDS)
    with pytest.raises(NotFound, match=r"^No such exec instance: f$"):
        lookup_prefix("f", IDS, kind="exec instance")


@pytest.mark.parametrize(
    ("prefix", "message"), [("", "Prefix can't be empty"), ("ab c", "illegal character: ' '")]
)
def test_bad_prefixes(prefix: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        lookup_prefix(prefix, IDS)
    assert str(info.value) == message
