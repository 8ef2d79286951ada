"""WS3-HMAC-SHA256 request signing, shared by the API client and the simulator.

The canonical request follows the vendor's own signers (wangsu-sdk-python `AkSkAuth`,
wangsu-sdk-go `aksk_auth.go`), so any spelling of the endpoint signs the same:

- signed header values are trimmed and lower-cased (`Host: API.cloudv.haplat.net:8443` signs as
  `host:api.cloudv.haplat.net:8443`); the headers sent carry those same normalized values;
- the query string is empty for POST and percent-decoded for other methods (`+` is a space, as
  Go's `url.QueryUnescape`; a query with a malformed escape canonicalizes to "", as in the Go SDK);
- the payload of a GET is hashed as empty, whatever body it carries.
"""

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


_HEX = frozenset(b"0123456789abcdefABCDEF")


def header_value(value: str) -> str:
    """A signed header's value as the vendor canonicalizes it: trimmed and lower-cased."""
    return value.strip().lower()


def canonical_query(method: str, query: str) -> str:
    """The query string as signed: "" for POST, else percent-decoded as Go's QueryUnescape.

    Bytes that do not decode as UTF-8 are kept as surrogate escapes and hashed as the bytes.
    """
    if method.upper() == "POST":
        return ""
    raw = query.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # "%"
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(b in _HEX for b in pair):
                return ""  # QueryUnescape fails, and the Go SDK then signs an empty query
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(0x20 if byte == 0x2B else byte)  # "+" is a space
        i += 1
    return out.decode("utf-8", "surrogateescape")


def canonical_request(
    method: str, path: str, query: str, content_type: str, host: str, body: bytes
) -> str:
    """The canonical request: method, path, query, signed headers and payload hash.

    `query` is the raw query string of the URL and `body` the exact body bytes; the vendor's
    rules (see the module docstring) are applied here.
    """
    verb = method.upper()
    canonical_headers = f"content-type:{header_value(content_type)}\nhost:{header_value(host)}\n"
    payload = hashed_payload(b"" if verb == "GET" else body)
    return "\n".join(
        [verb, path, canonical_query(verb, query), canonical_headers, SIGNED_HEADERS, payload]
    )


def string_to_sign(timestamp: str, canonical: str) -> str:
    """The string the HMAC is computed over."""
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
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
    """Every header a signed request carries (Host included, exactly as it was signed).

    Host and Content-Type are sent in the normalized form they are signed in, so the request
    verifies whether or not the server normalizes them itself.
    """
    ts = str(timestamp)
    host, content_type = header_value(host), header_value(content_type)
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
    """Check a request's signature; return None when valid, else the reason it is not.

    `query` is the raw query string as received (it is dropped for POST and decoded otherwise).
    """
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
