"""Container names: Docker's validity rule and the random ``adjective_surname`` names of unnamed containers.

Vocabulary:

- a *name* is stored and shown by the Engine API with a leading slash (``/web``); users may type it with or
  without one. :func:`canonical_name` validates and adds the slash.
- a *generated name* joins an adjective and the surname of a notable scientist or engineer
  (``serene_noether``), as moby's pkg/namesgenerator does with lists of its own. ``boring_wozniak`` is never
  produced: Steve Wozniak is not boring. Retries after a name turned out to be taken append one random digit.

Which names are taken is the database's business (engine/db.py reserves them through a UNIQUE column);
:func:`candidates` only proposes them in the order Docker tries them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from ketch.common.errors import InvalidArgument
from ketch.common.ids import truncate_id

__all__ = [
    "ADJECTIVES",
    "NAME_ATTEMPTS",
    "SURNAMES",
    "VALID_NAME_CHARS",
    "candidates",
    "canonical_name",
    "is_valid_name",
    "random_name",
]

VALID_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
# Docker's RestrictedNamePattern: note the ``+``, so a valid name has at least two characters.
_VALID_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
NAME_ATTEMPTS = 6  # random names tried before falling back to the short ID (moby daemon/names.go)

ADJECTIVES = (
    "adept", "agile", "airy", "amiable", "ardent", "astute", "atomic", "balmy", "blithe", "bold", "boring",
    "brave", "breezy", "bright", "brisk", "bubbly", "buoyant", "calm", "candid", "capable", "careful",
    "charming", "cheerful", "civil", "clever", "cosmic", "cozy", "crafty", "crisp", "curious", "daring",
    "dapper", "deft", "devoted", "diligent", "dreamy", "dynamic", "eager", "earnest", "easy", "elated",
    "elegant", "eloquent", "fearless", "fervent", "festive", "fluent", "fond", "frank", "gallant", "genial",
    "gentle", "gifted", "gleeful", "glowing", "graceful", "grateful", "hardy", "hearty", "helpful", "honest",
    "hopeful", "humble", "jaunty", "jolly", "jovial", "joyful", "keen", "kindly", "lively", "loyal", "lucid",
    "lucky", "mellow", "merry", "mighty", "mindful", "modest", "nimble", "noble", "placid", "playful",
    "plucky", "polite", "prudent", "quick", "quiet", "radiant", "rapid", "resolute", "robust", "rustic",
    "savvy", "serene", "sharp", "sincere", "sleek", "smooth", "snappy", "snug", "spry", "stately", "steady",
    "stellar", "sturdy", "sunny", "superb", "swift", "tactful", "tender", "thrifty", "tidy", "tranquil",
    "trusty", "upbeat", "valiant", "verdant", "vibrant", "vigilant", "vivid", "warm", "wistful", "witty",
    "zany", "zesty",
)  # fmt: skip

SURNAMES = (
    "agnesi", "alhazen", "ampere", "archimedes", "avogadro", "babbage", "banneker", "bardeen", "bernoulli",
    "blackwell", "bohr", "boltzmann", "boole", "bose", "brahe", "cannon", "cantor", "carver", "cavendish",
    "chandrasekhar", "copernicus", "cori", "coulomb", "curie", "darwin", "democritus", "dijkstra", "dirac",
    "doppler", "elion", "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "fibonacci", "fourier",
    "franklin", "galileo", "galois", "gauss", "germain", "gibbs", "goodall", "hamilton", "hawking",
    "heisenberg", "herschel", "hertz", "hilbert", "hodgkin", "hooke", "hopper", "hubble", "huygens",
    "hypatia", "jemison", "joule", "kelvin", "kepler", "khwarizmi", "knuth", "kovalevskaya", "lagrange",
    "lamarr", "laplace", "lavoisier", "leavitt", "leibniz", "linnaeus", "lovelace", "lyell", "maxwell",
    "mcclintock", "meitner", "mendel", "mendeleev", "mirzakhani", "napier", "newton", "noether", "ohm",
    "pascal", "pasteur", "pauli", "pauling", "payne", "planck", "poincare", "ptolemy", "raman", "ramanujan",
    "riemann", "ritchie", "rutherford", "sagan", "salk", "sanger", "shannon", "somerville", "stevin",
    "tesla", "thales", "turing", "volta", "wallace", "watt", "wiles", "wozniak", "yalow", "yonath", "zuse",
)  # fmt: skip


def is_valid_name(name: str) -> bool:
    return _VALID_NAME.fullmatch(name) is not None


def canonical_name(name: str) -> str:
    """``web`` or ``/web`` to ``/web``; InvalidArgument with Docker's message for anything else."""
    if not is_valid_name(name):
        raise InvalidArgument(f"Invalid container name ({name}), only {VALID_NAME_CHARS} are allowed")
    return name if name.startswith("/") else "/" + name


def random_name(retry: int = 0, rng: random.Random | None = None) -> str:
    """``adjective_surname``; with ``retry`` > 0 a random digit follows (``serene_noether7``)."""
    pick = rng or random.SystemRandom()
    while True:
        name = f"{pick.choice(ADJECTIVES)}_{pick.choice(SURNAMES)}"
        if name != "boring_wozniak":
            break
    return f"{name}{pick.randrange(10)}" if retry > 0 else name


def candidates(container_id: str, rng: random.Random | None = None) -> Iterator[str]:
    """Canonical names to try in turn for an unnamed container: six random ones, then its short ID."""
    for attempt in range(NAME_ATTEMPTS):
        yield "/" + random_name(attempt, rng)
    yield "/" + truncate_id(container_id)
