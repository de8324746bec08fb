"""Registry authentication: ``WWW-Authenticate`` challenges, scopes, and a per-registry token cache.

Vocabulary (distribution's token spec): a *challenge* is what a 401 answer offers (``Basic realm=...`` or
``Bearer realm=...,service=...,scope=...``). A *scope* names a resource and actions,
``repository:library/busybox:pull`` or ``repository:x:pull,push``. A bearer *token* is fetched from the realm
for a set of scopes and is good until it expires; tokens are cached per (realm, service, scopes).

No I/O here: the :class:`Authenticator` asks a ``fetch_token`` callable (the transport) for tokens, so the flow
is tested with plain values.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ketch.common.errors import InvalidArgument
from ketch.image.remote.credentials import Credentials

__all__ = [
    "Authenticator",
    "Challenge",
    "Token",
    "basic_header",
    "parse_challenges",
    "parse_token_response",
    "repository_scope",
]

_TOKEN_MIN_LIFETIME = 60.0  # distribution's token spec: a missing or shorter expires_in means 60 s
_EARLY_REFRESH = 5.0  # seconds: do not send a token that expires while the request is in flight
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # on the monotonic clock


def repository_scope(path: str, actions: Iterable[str]) -> str:
    return f"repository:{path}:{','.join(actions)}"


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class _Scanner:
    """RFC 7235 ``challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``, several per header."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, chars: str = " \t") -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def quoted(self) -> str:
        self.pos += 1  # opening quote
        out = []
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        self.pos += 1  # closing quote (or end)
        return "".join(out)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values; malformed parts are skipped."""
    out: list[Challenge] = []
    for header in headers:
        scan = _Scanner(header)
        current: Challenge | None = None
        while scan.pos < len(scan.text):
            scan.skip(" \t,")
            name = scan.token()
            if not name:
                scan.pos += 1  # a character no grammar rule allows here
                continue
            scan.skip()
            if scan.peek() == "=" and current is not None:
                scan.pos += 1
                scan.skip()
                value = scan.quoted() if scan.peek() == '"' else scan.token()
                current.params[name.lower()] = value
            else:
                current = Challenge(name.lower(), {})
                out.append(current)
    return out


def parse_token_response(body: bytes, now: float) -> Token:
    """A token server's JSON answer: ``token`` or ``access_token``, ``expires_in`` seconds."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("token server answered with malformed JSON") from None
    if not isinstance(obj, dict):
        raise InvalidArgument("token server answered with something other than a JSON object")
    value = obj.get("token") or obj.get("access_token")
    if not isinstance(value, str) or not value:
        raise InvalidArgument("token server answered without a token")
    expires_in = obj.get("expires_in")
    lifetime = (
        float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) else 0
    )
    return Token(value, now + max(lifetime, _TOKEN_MIN_LIFETIME) - _EARLY_REFRESH)


TokenFetcher = Callable[[Challenge, tuple[str, ...], Credentials | None], Token]


class Authenticator:
    """The ``Authorization`` header for one registry's requests.

    It starts anonymous. A challenge learned from ``GET /v2/`` or a 401 decides the scheme: Bearer (preferred)
    or Basic. Basic sends the credentials as they are; Bearer fetches a token for the request's scopes through
    ``fetch_token`` and caches it. Safe to use from several download threads at once.
    """

    def __init__(
        self,
        credentials: Callable[[], Credentials | None],
        fetch_token: TokenFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._fetch = fetch_token
        self._clock = clock
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], Token] = {}

    @property
    def challenge(self) -> Challenge | None:
        return self._challenge

    def learn(self, www_authenticate: Iterable[str]) -> bool:
        """Take the best challenge offered; False when none is usable."""
        challenges = {c.scheme: c for c in parse_challenges(www_authenticate)}
        chosen = challenges.get("bearer") or challenges.get("basic")
        if chosen is None or (chosen.scheme == "bearer" and not chosen.realm):
            return False
        with self._lock:
            self._challenge = chosen
        return True

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """What to send for a request that needs ``scopes``; None to go anonymous."""
        challenge = self._challenge
        if challenge is None:
            return None
        creds = self._credentials()
        if challenge.scheme == "basic":
            if creds is None or not creds.username:
                return None
            return basic_header(creds.username, creds.password)
        key = (challenge.realm, challenge.params.get("service", ""), tuple(sorted(set(scopes))))
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at <= self._clock():
                token = self._fetch(challenge, key[2], creds)
                self._tokens[key] = token
        return f"Bearer {token.value}"

    def forget(self, scopes: tuple[str, ...]) -> None:
        """Drop the cached token for ``scopes`` (the registry refused it)."""
        challenge = self._challenge
        if challenge is None:
            return
        key = (challenge.realm, challenge.params.get("service", ""), tuple(sorted(set(scopes))))
        with self._lock:
            self._tokens.pop(key, None)
