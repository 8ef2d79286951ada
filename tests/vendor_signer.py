"""The vendor's canonical request, written again from its SDKs for the tests (not exporter.signing).

Read from wangsu-sdk-go `common/auth/aksk_auth.go` (getSignature, getQueryString,
getCanonicalHeaders, getSignedHeaders) and wangsu-sdk-python `AkSkAuth.get_signature`; the two
agree except where noted. The algorithm name is this API's `WS3-HMAC-SHA256` (the SDKs sign
the sibling scheme `CNC-HMAC-SHA256` the same way). The simulator used by the test suite verifies
with `verify` below, so a mistake shared by the exporter's signer and its own verifier cannot
hide.

- SignedHeaders: the names lower-cased and sorted.
- Canonical headers: `name:value\n` per signed header, the value looked up by case-insensitive
  name and lower-cased (both SDKs). Values are what the server receives: HTTP drops the
  whitespace around a field value on the way, which `on_the_wire` models.
- Query: "" for POST; otherwise the part after "?" through Go's url.QueryUnescape ("+" is a
  space; a malformed escape gives ""). The Python SDK uses urllib's unquote (keeps "+"); the two
  agree on queries without "+", which is all the exporter sends.
- Payload: SHA-256 of the body, of "" for GET or an empty body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

ALGORITHM = "WS3-HMAC-SHA256"

_AUTHORIZATION = re.compile(
    re.escape(ALGORITHM) + r" Credential=(?P<ak>[^,]*), SignedHeaders=(?P<sh>[^,]*), "
    r"Signature=(?P<sig>[0-9a-f]*)"
)


def on_the_wire(value: str) -> str:
    """A header value as an HTTP server hands it over: surrounding spaces and tabs removed."""
    return value.strip(" \t")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signed_header_names(signed_headers: str) -> list[str]:
    """getSignedHeaders: lower-case, split on ";", sort."""
    if not signed_headers:
        return ["content-type", "host"]
    return sorted(signed_headers.lower().split(";"))


def query_string(method: str, uri: str) -> bytes:
    """getQueryString (Go SDK), as bytes."""
    if method == "POST" or "?" not in uri:
        return b""
    raw = uri.split("?", 1)[1]
    if re.search(r"%(?![0-9a-fA-F]{2})", raw):
        return b""  # url.QueryUnescape returns an error and the SDK signs ""
    return unquote_to_bytes(raw.replace("+", " "))


def canonical_request(
    method: str, uri: str, headers: Mapping[str, str], signed_headers: str, body: bytes
) -> bytes:
    """The canonical request for a request line `method uri` with these received headers."""
    names = signed_header_names(signed_headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{n}:{lowered.get(n, '').lower()}\n" for n in names)
    payload = b"" if method == "GET" or not body else body
    return b"\n".join(
        [
            method.encode(),
            uri.split("?", 1)[0].encode(),
            query_string(method, uri),
            canonical_headers.encode(),
            ";".join(names).encode(),
            _sha256_hex(payload).encode(),
        ]
    )


def signature(secret: str, timestamp: str, canonical: bytes) -> str:
    """hmac256(secretKey, algorithm + "\n" + timestamp + "\n" + sha256hex(canonical))."""
    to_sign = f"{ALGORITHM}\n{timestamp}\n{_sha256_hex(canonical)}".encode()
    return hmac.new(secret.encode(), to_sign, hashlib.sha256).hexdigest()


def sign(
    *,
    access_key: str,
    secret: str,
    timestamp: int,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: str = "content-type;host",
) -> str:
    """The Authorization value the vendor's SDK would send for these (received) headers."""
    canonical = canonical_request(method, uri, headers, signed_headers, body)
    sig = signature(secret, str(timestamp), canonical)
    names = ";".join(signed_header_names(signed_headers))
    return f"{ALGORITHM} Credential={access_key}, SignedHeaders={names}, Signature={sig}"


def verify(
    headers: Mapping[str, str],
    *,
    secret_for: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> str | None:
    """The simulator's check, done the vendor's way; None when the signature is right."""
    match = _AUTHORIZATION.fullmatch(headers.get("Authorization", ""))
    if match is None:
        return "missing or malformed Authorization header"
    access_key = match["ak"]
    if headers.get("X-WS-AccessKey", access_key) != access_key:
        return "X-WS-AccessKey does not match the credential"
    secret = secret_for.get(access_key)
    if secret is None:
        return "unknown access key"
    uri = f"{path}?{query}" if query else path
    canonical = canonical_request(method, uri, headers, match["sh"], body)
    expected = signature(secret, headers.get("X-WS-Timestamp", ""), canonical)
    if not hmac.compare_digest(expected, match["sig"]):
        return "signature mismatch"
    return None
