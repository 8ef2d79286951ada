"""WS3-HMAC-SHA256 request signing, shared by the API client and the simulator."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

ALGORITHM = "WS3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def hashed_payload(body: bytes) -> str:
    """Lower-case hex SHA-256 of the exact body bytes."""
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, path: str, query: str, content_type: str, host: str, body: bytes
) -> str:
    """The canonical request: method, path, query, signed headers and payload hash."""
    canonical_headers = f"content-type:{content_type}\nhost:{host}\n"
    return "\n".join(
        [method.upper(), path, query, canonical_headers, SIGNED_HEADERS, hashed_payload(body)]
    )


def string_to_sign(timestamp: str, canonical: str) -> str:
    """The string the HMAC is computed over."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{digest}"


def signature(secret: str, timestamp: str, canonical: str) -> str:
    """Lower-case hex HMAC-SHA256 of the string to sign, keyed by the secret."""
    message = string_to_sign(timestamp, canonical).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def authorization(access_key_id: str, sig: str) -> str:
    """The value of the Authorization header."""
    return (
        f"{ALGORITHM} Credential={access_key_id}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )


def signed_headers(
    *,
    access_key_id: str,
    secret: str,
    timestamp: int,
    method: str,
    path: str,
    host: str,
    content_type: str,
    body: bytes,
    query: str = "",
) -> dict[str, str]:
    """Every header a signed request carries (Host included, exactly as it was signed)."""
    ts = str(timestamp)
    canonical = canonical_request(method, path, query, content_type, host, body)
    return {
        "Host": host,
        "Content-Type": content_type,
        "X-WS-AccessKey": access_key_id,
        "X-WS-Timestamp": ts,
        "Authorization": authorization(access_key_id, signature(secret, ts, canonical)),
    }


@dataclass(frozen=True)
class ParsedAuthorization:
    """The parts of an Authorization header."""

    access_key_id: str
    signed_headers: str
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split `WS3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`; None if malformed."""
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for item in value[len(prefix) :].split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    try:
        return ParsedAuthorization(parts["Credential"], parts["SignedHeaders"], parts["Signature"])
    except KeyError:
        return None


def verify(
    headers: Mapping[str, str],
    *,
    secret_for: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> str | None:
    """Check a request's signature; return None when valid, else the reason it is not."""
    auth = parse_authorization(headers.get("Authorization", ""))
    if auth is None:
        return "missing or malformed Authorization header"
    if auth.signed_headers != SIGNED_HEADERS:
        return f"unsupported SignedHeaders {auth.signed_headers!r}"
    if headers.get("X-WS-AccessKey", auth.access_key_id) != auth.access_key_id:
        return "X-WS-AccessKey does not match the credential"
    secret = secret_for.get(auth.access_key_id)
    if secret is None:
        return "unknown access key"
    timestamp = headers.get("X-WS-Timestamp", "")
    canonical = canonical_request(
        method, path, query, headers.get("Content-Type", ""), headers.get("Host", ""), body
    )
    expected = signature(secret, timestamp, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        return "signature mismatch"
    return None
