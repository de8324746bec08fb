"""Image references: Docker's grammar, normalisation and error wording (github.com/distribution/reference).

Grammar::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] path
    domain      := host [ ":" port ]          host: DNS-like labels, IPv4, or [IPv6] without a zone
    path        := component ( "/" component )*
    component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" hex          hex: at least 32 characters in the grammar, exact length below

Vocabulary, as in distribution/reference: the *domain* is the registry (``docker.io``, ``localhost:5000``), the
*path* is the repository inside it (``library/busybox``), the *name* is ``domain/path``, and the *familiar* form
is what the docker CLI prints (``busybox``, ``user/app``, ``localhost:5000/x``).

Normalisation (``ParseNormalizedNamed``): the first path element is a domain only when it is ``localhost``,
contains ``.`` or ``:``, or has an upper-case letter; otherwise the domain is ``docker.io``. ``index.docker.io``
becomes ``docker.io``, and a one-element path on ``docker.io`` gets ``library/``.

Error wording follows Docker 28 (distribution/reference v0.6, go-digest v1.0.0). The one message that changed
since Docker 20.10 is the upper-case one: 20.10 said ``invalid reference format: repository name must be
lowercase``; 28 names the repository: ``invalid reference format: repository name (library/Foo) must be
lowercase``. ketch uses the newer form. An empty string gives ``repository name must have at least one
component`` (reference.Parse's answer) rather than ParseNormalizedNamed's bare ``invalid reference format``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ketch.common.errors import InvalidArgument

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "NAME_MAX",
    "Reference",
    "parse",
    "parse_digest",
    "split_domain",
    "with_default_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255  # longest repository path (distribution/reference RepositoryNameTotalLengthMax)

# The patterns are spelled out from the grammar above; Python's \w would admit Unicode, so none is used.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(rf"((?:{_DOMAIN}/)?{_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?")
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_PATH})")
_TAG_RE = re.compile(_TAG)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
# go-digest's looser grammar, used only to tell "unsupported algorithm" from "malformed".
_ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference. Build it with :func:`parse`; ``domain`` is never empty after parsing."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        # Only one level under library/ is shortened: "library/a/b" stays as it is (familiarizeName).
        rest = self.path.removeprefix(OFFICIAL_PREFIX)
        if rest != self.path and "/" not in rest:
            return rest
        return self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """What docker shows: ``busybox:latest``, ``user/app@sha256:...``, ``localhost:5000/x:1``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument("invalid tag format")
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, parse_digest(digest))

    def without_tag(self) -> Reference:
        return Reference(self.domain, self.path, None, self.digest)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)


def parse_digest(text: str) -> str:
    """Check ``algorithm:hex`` as go-digest v1.0.0 does (sha256, sha384, sha512; lower-case hex of exact length)."""
    algorithm, sep, encoded = text.partition(":")
    if not algorithm or not sep or not encoded:
        raise InvalidArgument("invalid checksum digest format")
    length = _HEX_LENGTH.get(algorithm)
    if length is None:
        if not _ANY_DIGEST_RE.fullmatch(text):
            raise InvalidArgument("invalid checksum digest format")
        raise InvalidArgument("unsupported digest algorithm")
    if len(encoded) != length:
        raise InvalidArgument("invalid checksum digest length")
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidArgument("invalid checksum digest format")
    return text


def split_domain(name: str) -> tuple[str, str]:
    """Docker's choice of registry for a name (``splitDockerDomain``); the rest may still carry ``:tag@digest``."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == LEGACY_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        # Upper case is not allowed in a path, so an upper-case first element can only be a host name.
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_PREFIX + remote
    return domain, remote


def _parse_canonical(text: str) -> Reference:
    """reference.Parse on a name that already has its domain."""
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        lower = text.lower()
        if lower != text and _REFERENCE_RE.fullmatch(lower):
            raise InvalidArgument("invalid reference format: repository name must be lowercase")
        raise InvalidArgument("invalid reference format")
    name, tag, digest = match.groups()
    name_match = _NAME_RE.fullmatch(name)
    assert name_match is not None  # the reference pattern contains the name pattern
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > NAME_MAX:
        raise InvalidArgument(f"repository name must not be more than {NAME_MAX} characters")
    return Reference(domain, path, tag, parse_digest(digest) if digest else None)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse what a user typed (``busybox``, ``localhost:5000/a/b:1``, ``x@sha256:...``) into a full reference.

    With ``default_tag`` a reference that has neither tag nor digest gets ``latest`` (``TagNameOnly``); a
    reference with a digest never gets a default tag.
    """
    if not text:
        raise InvalidArgument("repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidArgument(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidArgument(f"invalid reference format: repository name ({remote}) must be lowercase")
    ref = _parse_canonical(f"{domain}/{remainder}")
    return with_default_tag(ref) if default_tag else ref


def with_default_tag(ref: Reference) -> Reference:
    """Add ``latest`` to a reference that has neither a tag nor a digest; return others unchanged."""
    if ref.tag is None and ref.digest is None:
        return Reference(ref.domain, ref.path, DEFAULT_TAG)
    return ref
