"""Auth: challenge parsing, the bearer flow and its token cache, basic auth, login."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from tests.unit.image.remote.fakeregistry import TOKEN_REALM, FakeRegistry, image_blobs

from ketch.common.errors import Unauthorized
from ketch.image.content import ContentStore
from ketch.image.remote import AuthConfig, Credentials, RegistryClient
from ketch.image.remote.auth import Authenticator, Challenge, Token, parse_challenges, parse_token_response
from ketch.spec.reference import parse

LAYERS = [b"layer one", b"layer two", b"layer three"]
ALICE = AuthConfig({"registry.test": Credentials("alice", "secret")})


def client(fake: FakeRegistry, auth: AuthConfig | None = None) -> RegistryClient:
    return RegistryClient(transport=fake.transport(), backoff=0, auth=auth)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "root"))


def test_parse_challenges() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"'
    assert parse_challenges([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:a/b:pull,push",
            },
        )
    ]
    both = 'Basic realm="r1", Bearer realm="https://t/x",error="insufficient_scope"'
    assert parse_challenges([both]) == [
        Challenge("basic", {"realm": "r1"}),
        Challenge("bearer", {"realm": "https://t/x", "error": "insufficient_scope"}),
    ]
    assert parse_challenges(['Basic realm="a \\"quoted\\" name"']) == [
        Challenge("basic", {"realm": 'a "quoted" name'})
    ]
    assert parse_challenges(["", ",,,"]) == []


def test_token_response_forms() -> None:
    assert parse_token_response(b'{"token": "t", "expires_in": 300}', 100.0) == Token("t", 395.0)
    assert parse_token_response(b'{"access_token": "a"}', 0.0) == Token("a", 55.0)  # 60 s minimum
    assert parse_token_response(b'{"token": "t", "expires_in": 5}', 0.0).value == "t"


def test_authenticator_caches_per_scope_and_refreshes_on_expiry() -> None:
    fetched: list[tuple[str, ...]] = []
    now = [0.0]

    def fetch(challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None) -> Token:
        fetched.append(scopes)
        return Token(f"t{len(fetched)}", now[0] + 60)

    auth = Authenticator(lambda: None, fetch, clock=lambda: now[0])
    assert auth.header(("repository:a:pull",)) is None  # no challenge yet: anonymous
    assert auth.learn(['Bearer realm="https://auth.test/token",service="s"'])
    assert auth.header(("repository:a:pull",)) == "Bearer t1"
    assert auth.header(("repository:a:pull",)) == "Bearer t1"
    assert auth.header(("repository:b:pull",)) == "Bearer t2"
    assert auth.header(("repository:b:pull", "repository:a:pull")) == "Bearer t3"
    assert auth.header(("repository:a:pull", "repository:b:pull")) == "Bearer t3"  # order does not matter
    now[0] = 61
    assert auth.header(("repository:a:pull",)) == "Bearer t4"
    auth.forget(("repository:a:pull",))
    assert auth.header(("repository:a:pull",)) == "Bearer t5"


def test_bearer_flow_anonymous_pull(store: ContentStore) -> None:
    fake = FakeRegistry(auth="bearer")
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    reg = client(fake)
    reg.pull(parse("registry.test/lib/app:1.0"), store)
    # One token for the whole pull, asked for the repository's pull scope only, without credentials.
    assert len(fake.token_requests) == 1
    token_request = fake.token_requests[0]
    assert str(token_request.url.copy_with(query=None)) == TOKEN_REALM
    assert token_request.url.params.get_list("scope") == ["repository:lib/app:pull"]
    assert token_request.url.params["service"] == "registry.test"
    assert "authorization" not in token_request.headers
    after_ping = [r for r in fake.log if r.url.host == "registry.test"][1:]
    assert after_ping and all(r.headers["authorization"] == "Bearer tok-1" for r in after_ping)
    # The cached token serves the next pull as well.
    reg.pull(parse("registry.test/lib/app:1.0"), store)
    assert len(fake.token_requests) == 1


def test_bearer_with_credentials(store: ContentStore) -> None:
    fake = FakeRegistry(auth="bearer", anonymous_pull=False)
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    with pytest.raises(Unauthorized, match="unauthorized: authentication required"):
        client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    fake.token_requests.clear()
    client(fake, ALICE).pull(parse("registry.test/lib/app:1.0"), store)
    request = fake.token_requests[0]
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"alice:secret").decode()
    assert request.url.params["account"] == "alice"


def test_bearer_wrong_password_is_unauthorized(store: ContentStore) -> None:
    fake = FakeRegistry(auth="bearer")
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    wrong = AuthConfig({"registry.test": Credentials("alice", "nope")})
    with pytest.raises(Unauthorized, match="unauthorized: incorrect username or password"):
        client(fake, wrong).pull(parse("registry.test/lib/app:1.0"), store)


def test_challenge_only_on_the_repository(store: ContentStore) -> None:
    """A registry whose /v2/ answers 200 but whose repositories want a token: learn from the 401, retry."""
    fake = FakeRegistry(auth="bearer", challenge_on_ping=False)
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert fake.requests()[:3] == [
        "GET /v2/",
        "HEAD /v2/lib/app/manifests/1.0",
        "HEAD /v2/lib/app/manifests/1.0",
    ]
    assert [r.headers.get("authorization") for r in fake.log if r.method == "HEAD"] == [None, "Bearer tok-1"]
    assert len(fake.token_requests) == 1


def test_basic_auth(store: ContentStore) -> None:
    fake = FakeRegistry(auth="basic")
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    with pytest.raises(Unauthorized) as info:
        client(fake).pull(parse("registry.test/lib/app:1.0"), store)
    assert str(info.value) == (
        'Head "https://registry.test/v2/lib/app/manifests/1.0": unauthorized: authentication required'
    )
    client(fake, ALICE).pull(parse("registry.test/lib/app:1.0"), store)
    expected = "Basic " + base64.b64encode(b"alice:secret").decode()
    assert all(r.headers.get("authorization") == expected for r in fake.log[-5:])
    assert fake.token_requests == []


def test_login_basic() -> None:
    fake = FakeRegistry(auth="basic")
    reg = client(fake)
    with pytest.raises(
        Unauthorized, match=r"login attempt to https://registry.test/v2/ failed with status: 401"
    ):
        reg.login("registry.test", "alice", "wrong")
    assert reg.auth.get("registry.test") is None
    reg.login("registry.test", "alice", "secret")
    assert reg.auth.get("registry.test") == Credentials("alice", "secret")


def test_login_bearer_checks_the_token_server() -> None:
    fake = FakeRegistry(auth="bearer")
    reg = client(fake)
    with pytest.raises(Unauthorized, match="incorrect username or password"):
        reg.login("registry.test", "alice", "wrong")
    reg.login("registry.test", "alice", "secret")
    assert fake.token_requests[-1].url.params.get_list("scope") == []
    assert reg.auth.get("registry.test") == Credentials("alice", "secret")


def test_login_to_an_open_registry_succeeds() -> None:
    reg = client(FakeRegistry())
    reg.login("registry.test", "anyone", "anything")
    assert reg.auth.get("registry.test") == Credentials("anyone", "anything")


def test_identity_token_uses_the_oauth2_refresh_grant(store: ContentStore) -> None:
    fake = FakeRegistry(auth="bearer")
    fake.add_image("lib/app", "1.0", image_blobs(LAYERS))
    auth = AuthConfig({"registry.test": Credentials(identity_token="refresh-me")})
    client(fake, auth).pull(parse("registry.test/lib/app:1.0"), store)
    request = fake.token_requests[0]
    assert request.method == "POST"
    form = httpx.QueryParams(request.content.decode())
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-me"
    assert form["service"] == "registry.test"
    assert form["scope"] == "repository:lib/app:pull"
