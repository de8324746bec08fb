"""Docker's reference grammar, table-driven; cases follow the behaviour distribution/reference's tests pin down."""

import pytest

from ketch.common.errors import InvalidArgument
from ketch.spec.reference import Reference, parse, parse_digest, split_domain, with_default_tag

SHA = "sha256:" + "f" * 64
SHA512 = "sha512:" + "f" * 128
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
LONG_PATH = "a/" * 127 + "a"  # 255 characters: the longest path allowed

# input, what str() gives (fully qualified), what familiar() gives (what docker prints)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:musl", "docker.io/library/busybox:musl", "busybox:musl"),
    ("index.docker.io/fooo/bar", "docker.io/fooo/bar:latest", "fooo/bar:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("store/foo/bar", "docker.io/store/foo/bar:latest", "store/foo/bar:latest"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app:dev", "localhost:5000/app:dev", "localhost:5000/app:dev"),
    ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest", "localhost:5000/a/b/c:latest"),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000/docker/docker:latest", "127.0.0.1:5000/docker/docker:latest"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase:latest", "127.0.0.1:8000/privatebase:latest"),
    ("192.168.1.1/repo", "192.168.1.1/repo:latest", "192.168.1.1/repo:latest"),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"),
    # One element is always a repository on Docker Hub, even when it looks like a host or a host:port.
    ("192.168.1.1", "docker.io/library/192.168.1.1:latest", "192.168.1.1:latest"),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
    ("test.com:5000", "docker.io/library/test.com:5000", "test.com:5000"),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "foo_bar.com:8080"),
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "foo/foo_bar.com:8080"),
    ("test_com/foo", "docker.io/test_com/foo:latest", "test_com/foo:latest"),
    ("test:5000/repo", "test:5000/repo:latest", "test:5000/repo:latest"),
    ("test-com:8080/foo", "test-com:8080/foo:latest", "test-com:8080/foo:latest"),
    ("example.com/private/moonbase", "example.com/private/moonbase:latest", "example.com/private/moonbase:latest"),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee:latest", "example.com:8000/privatebasee:latest"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app:test.example.com",
     "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo:latest", "[2001:db8::1]/repo:latest"),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag"),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo:tag"),
    ("[::1]:5000/repo", "[::1]:5000/repo:latest", "[::1]:5000/repo:latest"),
    # An upper-case first element can only be a host name, so it is taken as the domain.
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
    ("FOO/bar:tag", "FOO/bar:tag", "FOO/bar:tag"),
    ("dock__er/docker", "docker.io/dock__er/docker:latest", "dock__er/docker:latest"),
    ("docker---rules/docker", "docker.io/docker---rules/docker:latest", "docker---rules/docker:latest"),
    ("d/docker", "docker.io/d/docker:latest", "d/docker:latest"),
    ("jess/t", "docker.io/jess/t:latest", "jess/t:latest"),
    ("a.b-c_d__e/f", "a.b-c_d__e/f:latest", "a.b-c_d__e/f:latest"),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"),
    ("busybox:_private", "docker.io/library/busybox:_private", "busybox:_private"),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox:" + "t" * 128),
    # A digest means no default tag; tag and digest may both be given.
    (f"busybox@{SHA}", f"docker.io/library/busybox@{SHA}", f"busybox@{SHA}"),
    (f"busybox:latest@{SHA}", f"docker.io/library/busybox:latest@{SHA}", f"busybox:latest@{SHA}"),
    (f"test:5000/repo:tag@{SHA}", f"test:5000/repo:tag@{SHA}", f"test:5000/repo:tag@{SHA}"),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}",
     f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}"),
    # 64 hex characters are an image ID, not a name, unless a domain makes the intent plain.
    (f"docker.io/{HEX64}", f"docker.io/library/{HEX64}:latest", f"{HEX64}:latest"),
    (HEX64[:63], f"docker.io/library/{HEX64[:63]}:latest", f"{HEX64[:63]}:latest"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
     "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
     "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
    # "sha256:<hex>" reads as repository "sha256" with a 64-character tag, as in Docker.
    ("sha256:" + "a" * 64, "docker.io/library/sha256:" + "a" * 64, "sha256:" + "a" * 64),
    (LONG_PATH, f"docker.io/{LONG_PATH}:latest", f"{LONG_PATH}:latest"),
]  # fmt: skip

FORMAT = "invalid reference format"
# input, the message InvalidArgument carries (Docker 28's wording)
INVALID = [
    ("", "repository name must have at least one component"),
    (":justtag", FORMAT),
    (f"@{SHA}", FORMAT),
    ("Uppercase:tag", "invalid reference format: repository name (library/Uppercase) must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag",
     "invalid reference format: repository name (Uppercase/lowercase) must be lowercase"),
    ("docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
    ("docker.io/docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
    ("localhost:5000/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
    # go-digest's algorithm check sees "SHA256"; the lowercase check runs first and sees it in the "name".
    ("busybox@SHA256:" + "f" * 64,
     "invalid reference format: repository name (library/busybox@SHA256) must be lowercase"),
    ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ("x" * 256, "repository name must not be more than 255 characters"),
    ("aa/asdf$$^/aa", FORMAT),
    ("[2001:db8::1]", FORMAT),
    ("[2001:db8::1]:5000", FORMAT),
    ("[2001:db8::1]:tag", FORMAT),
    ("[fe80::1%eth0]:5000/repo", FORMAT),
    ("[fe80::1%@invalidzone]:5000/repo", FORMAT),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", FORMAT),
    ("fc00::1:5000/debian", FORMAT),
    ("https://github.com/docker/docker", FORMAT),
    ("-docker", FORMAT),
    ("-docker/docker", FORMAT),
    ("-docker.io/docker/docker", FORMAT),
    ("docker-/docker", FORMAT),
    ("-docker-/docker", FORMAT),
    ("____/____", FORMAT),
    ("_docker/_docker", FORMAT),
    ("dock..er/docker", FORMAT),
    ("dock_.er/docker", FORMAT),
    ("dock-.er/docker", FORMAT),
    ("docker/", FORMAT),
    ("docker///docker", FORMAT),
    ("docker.io/docker///docker", FORMAT),
    ("bus box", FORMAT),
    ("busybox\n", FORMAT),
    ("b\u00fcsybox", FORMAT),
    ("busybox:-tag", FORMAT),
    ("busybox:.tag", FORMAT),
    ("busybox:" + "t" * 129, FORMAT),
    ("busybox:tag:extra", FORMAT),
    ("busybox@sha256:abc", FORMAT),
    ("busybox@sha256:" + "a" * 64 + "xyz", FORMAT),
    (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("busybox:tag@sha256:" + "a" * 63, "invalid checksum digest length"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    ("busybox@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4) + "/docker",
     "repository name must not be more than 255 characters"),
]  # fmt: skip


def test_table_is_large_enough() -> None:
    assert len(VALID) + len(INVALID) >= 60


@pytest.mark.parametrize("text,full,familiar", VALID, ids=[case[0][:60] or "<empty>" for case in VALID])
def test_valid(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    # The fully qualified form is a fixed point, and so is the familiar one.
    assert parse(full) == ref
    assert parse(familiar) == ref


@pytest.mark.parametrize("text,message", INVALID, ids=[case[0][:60] or "<empty>" for case in INVALID])
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "text,domain,path",
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("index.docker.io/foo/bar", "docker.io", "foo/bar"),
        ("Foo/bar", "Foo", "bar"),
    ],
)
def test_domain_and_path(text: str, domain: str, path: str) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.name) == (domain, path, f"{domain}/{path}")
    assert split_domain(text) == (domain, path)


def test_names_and_familiar_names() -> None:
    assert parse("busybox").familiar_name == "busybox"
    assert parse("docker.io/library/busybox").name == "docker.io/library/busybox"
    assert parse("user/app").familiar_name == "user/app"
    assert parse("library/a/b").familiar_name == "library/a/b"
    assert parse("localhost:5000/x").familiar_name == "localhost:5000/x"
    assert parse("example.com/library/x").familiar_name == "example.com/library/x"


def test_default_tag_is_optional() -> None:
    bare = parse("busybox", default_tag=False)
    assert bare == Reference("docker.io", "library/busybox") and str(bare) == "docker.io/library/busybox"
    assert bare.familiar() == "busybox"
    assert with_default_tag(bare).tag == "latest"
    pinned = parse(f"busybox@{SHA}", default_tag=False)
    assert with_default_tag(pinned) == pinned and pinned.tag is None
    assert parse("busybox:1", default_tag=False).tag == "1"


def test_with_tag_and_digest() -> None:
    ref = parse("localhost:5000/app:1")
    assert str(ref.with_tag("TAG5")) == "localhost:5000/app:TAG5"
    assert str(ref.with_digest(SHA)) == f"localhost:5000/app:1@{SHA}"
    assert str(ref.with_digest(SHA).without_tag()) == f"localhost:5000/app@{SHA}"
    assert ref.with_digest(SHA).name_only() == Reference("localhost:5000", "app")
    with pytest.raises(InvalidArgument, match=r"^invalid tag format$"):
        ref.with_tag("-foo")
    with pytest.raises(InvalidArgument, match=r"^invalid tag format$"):
        ref.with_tag("")
    with pytest.raises(InvalidArgument, match="invalid checksum digest format"):
        ref.with_digest("foo")


def test_references_are_values() -> None:
    ref = parse("busybox")
    assert ref == Reference("docker.io", "library/busybox", "latest", None)
    assert len({ref, parse("docker.io/library/busybox:latest")}) == 1
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text,message",
    [
        ("sha256:" + "a" * 64, None),
        ("sha384:" + "b" * 96, None),
        ("sha512:" + "c" * 128, None),
        ("sha256:" + "a" * 63, "invalid checksum digest length"),
        ("sha512:" + "a" * 64, "invalid checksum digest length"),
        ("sha256:" + "A" * 64, "invalid checksum digest format"),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("sha256", "invalid checksum digest format"),
        (":" + "a" * 64, "invalid checksum digest format"),
        ("sha256:", "invalid checksum digest format"),
        ("md5:" + "a" * 32, "unsupported digest algorithm"),
        ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported digest algorithm"),
        ("SHA256:" + "a" * 64, "invalid checksum digest format"),
        ("sha256+:" + "a" * 64, "invalid checksum digest format"),
    ],
)
def test_parse_digest(text: str, message: str | None) -> None:
    if message is None:
        assert parse_digest(text) == text
    else:
        with pytest.raises(InvalidArgument) as info:
            parse_digest(text)
        assert str(info.value) == message
