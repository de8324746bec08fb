"""Manifests over the wire: resolve a reference to a descriptor (HEAD before GET) and fetch manifest bytes.

Invariants: the digest of a manifest is always computed over the bytes received; a body that does not match
the digest it was asked for, or the ``Docker-Content-Digest`` the registry announced, raises InvalidArgument.
A manifest larger than ``MAX_MANIFEST_SIZE`` is refused before it is read whole. The media type comes from
the document itself first (:func:`ketch.spec.oci_image.detect`), so schema 1 and unknown types are rejected
there with its message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ketch.common.errors import InvalidArgument, NotFound, Unsupported
from ketch.image.remote.transport import Session
from ketch.spec.oci_image import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    detect,
    digest_of,
)
from ketch.spec.reference import Reference

__all__ = ["FetchedManifest", "fetch_manifest", "head_manifest", "manifest_path", "resolve"]

_HEADERS = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    descriptor: Descriptor
    data: bytes


def manifest_path(ref: Reference, target: str) -> str:
    return f"/v2/{ref.path}/manifests/{target}"


def _target(ref: Reference) -> str:
    target = ref.digest or ref.tag
    if not target:
        raise InvalidArgument(f"reference {ref} has neither a tag nor a digest")
    return target


def _header_digest(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def head_manifest(
    session: Session, ref: Reference, scopes: tuple[str, ...], target: str | None = None
) -> Descriptor | None:
    """HEAD the manifest; its descriptor when the answer names digest, type and size, else None (then GET)."""
    target = target or _target(ref)
    response = session.request(
        "HEAD",
        manifest_path(ref, target),
        scopes=scopes,
        operation="manifest",
        reference=ref,
        headers=_HEADERS,
    )
    digest = _header_digest(response.headers.get("docker-content-digest"))
    media_type = (response.headers.get("content-type") or "").partition(";")[0].strip()
    length = response.headers.get("content-length", "")
    if ":" in target and digest is None:
        digest = target  # HEAD by digest: the digest is the one asked for
    if digest is None or media_type not in INDEX_TYPES | MANIFEST_TYPES or not length.isdigit():
        return None
    if ref.digest and digest.partition(":")[0] == ref.digest.partition(":")[0] and digest != ref.digest:
        raise InvalidArgument(
            f"manifest verification failed for {ref}: registry {session.registry} announced {digest}, "
            "which does not match"
        )
    return Descriptor(media_type=media_type, digest=digest, size=int(length))


def fetch_manifest(
    session: Session,
    ref: Reference,
    scopes: tuple[str, ...],
    target: str | None = None,
    *,
    size: int | None = None,
) -> FetchedManifest:
    """GET a manifest or index by tag or digest and check what came back."""
    target = target or _target(ref)
    response = session.request(
        "GET",
        manifest_path(ref, target),
        scopes=scopes,
        operation="manifest",
        reference=ref,
        headers=_HEADERS,
        stream=True,
    )
    try:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
            raise InvalidArgument(
                f"manifest {ref.name}:{target} is {length} bytes, over the {MAX_MANIFEST_SIZE}-byte limit"
            )
        body = bytearray()
        for chunk in session.iter_body(response, "manifest"):
            body += chunk
            if len(body) > MAX_MANIFEST_SIZE:
                raise InvalidArgument(
                    f"manifest {ref.name}:{target} is over the {MAX_MANIFEST_SIZE}-byte limit"
                )
    finally:
        response.close()
    data = bytes(body)
    announced = _header_digest(response.headers.get("docker-content-digest"))
    is_digest = ":" in target
    expected = target if is_digest else announced
    if expected is not None:
        algorithm = expected.partition(":")[0]
        actual = digest_of(data, algorithm)
        if actual != expected:
            what = "requested" if is_digest else "announced by the registry"
            raise InvalidArgument(
                f"manifest verification failed for {ref.name}@{expected}: the {what} digest does not match the "
                f"content received ({actual})"
            )
    if size is not None and len(data) != size:
        raise InvalidArgument(f"manifest {ref.name}@{target}: expected {size} bytes, got {len(data)}")
    media_type = detect(data, response.headers.get("content-type"))
    return FetchedManifest(Descriptor(media_type=media_type, digest=digest_of(data), size=len(data)), data)


def resolve(session: Session, ref: Reference, scopes: tuple[str, ...]) -> Descriptor:
    """The descriptor a tag or digest names now: HEAD, then GET when HEAD does not tell enough."""
    try:
        found = head_manifest(session, ref, scopes)
    except (Unsupported, NotFound):
        # 405: the registry does not allow HEAD; 404: the GET's error body says why, as dockerd reports it.
        found = None
    if found is not None:
        return found
    fetched = fetch_manifest(session, ref, scopes)
    if ref.digest and fetched.descriptor.digest != ref.digest:
        # A sha512 reference: keep the digest the user named.
        return Descriptor(
            media_type=fetched.descriptor.media_type, digest=ref.digest, size=fetched.descriptor.size
        )
    return fetched.descriptor
