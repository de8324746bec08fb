"""Container names: Docker's rule, and the adjective_surname generator."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from ketch.common.errors import InvalidArgument
from ketch.engine import names
from ketch.engine.names import ADJECTIVES, SURNAMES, candidates, canonical_name, is_valid_name, random_name


@pytest.mark.parametrize("name", ["ab", "/ab", "web-1", "a.b_c-d", "0abc", "A9", "x" * 200])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)
    assert canonical_name(name) == "/" + name.lstrip("/")


@pytest.mark.parametrize(
    "name",
    ["", "a", "/a", "/", "//ab", "-ab", "_ab", ".ab", "a b", "ab/", "ab\n", "\nab", "ábc", "ab:c", "ab!"],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(InvalidArgument) as info:
        canonical_name(name)
    assert str(info.value) == f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"


def test_word_lists() -> None:
    for words in (ADJECTIVES, SURNAMES):
        assert len(words) == len(set(words)) >= 100
        assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    # the rule below means something only while both words are in the lists
    assert "boring" in ADJECTIVES and "wozniak" in SURNAMES


def test_random_names_have_the_right_shape() -> None:
    rng = random.Random(7)
    for _ in range(500):
        adjective, surname = random_name(0, rng).split("_")
        assert adjective in ADJECTIVES and surname in SURNAMES
        assert is_valid_name(adjective + "_" + surname)
    retried = random_name(3, rng)
    assert retried[-1].isdigit() and retried[:-1].split("_")[1] in SURNAMES


class Scripted(random.Random):
    """choice() and randrange() answer from scripts, so a test can force a name."""

    def __init__(self, choices: Sequence[str], digits: Sequence[int] = (0,)) -> None:
        super().__init__(0)
        self.choices = list(choices)
        self.digits = list(digits)

    def choice(self, seq: Sequence[Any]) -> Any:
        word = self.choices.pop(0)
        assert word in seq
        return word

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return self.digits.pop(0)


def test_boring_wozniak_is_never_generated() -> None:
    rng = Scripted(["boring", "wozniak", "boring", "wozniak", "boring", "turing"])
    assert random_name(0, rng) == "boring_turing"
    assert rng.choices == []


def test_other_boring_and_wozniak_names_are_fine() -> None:
    assert random_name(0, Scripted(["boring", "curie"])) == "boring_curie"
    assert random_name(0, Scripted(["serene", "wozniak"])) == "serene_wozniak"
    assert random_name(1, Scripted(["serene", "wozniak"], [7])) == "serene_wozniak7"


def test_candidates_follow_dockers_order() -> None:
    container_id = "c0ffee" + "0" * 58
    rng = Scripted(["calm", "curie"] * names.NAME_ATTEMPTS, [1, 2, 3, 4, 5])
    assert list(candidates(container_id, rng)) == [
        "/calm_curie", "/calm_curie1", "/calm_curie2", "/calm_curie3", "/calm_curie4", "/calm_curie5",
        "/c0ffee000000",
    ]  # fmt: skip
