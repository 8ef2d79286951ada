"""WS3-HMAC-SHA256: the worked example of cloudvod-api.md, byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from exporter import signing

SECRET = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
TIMESTAMP = "1564645579"
PATH = "/vod/videoManage/videoConcatQuery"
HOST = "api.cloudv.haplat.net"
CONTENT_TYPE = "application/json; charset=utf-8"
BODY = b'{"transNo":"0123456789"}'


def _canonical() -> str:
    return signing.canonical_request("POST", PATH, "", CONTENT_TYPE, HOST, BODY)


def _signed(secret: str = SECRET) -> dict[str, str]:
    return signing.signed_headers(
        access_key_id="AK1",
        secret=secret,
        timestamp=int(TIMESTAMP),
        method="POST",
        path=PATH,
        host=HOST,
        content_type=CONTENT_TYPE,
        body=BODY,
    )


def _verify(headers: dict[str, str], secrets: dict[str, str] | None = None) -> str | None:
    return signing.verify(
        headers,
        secret_for={"AK1": SECRET} if secrets is None else secrets,
        method="POST",
        path=PATH,
        query="",
        body=BODY,
    )


def test_worked_example_payload_hash() -> None:
    assert (
        signing.hashed_payload(BODY)
        == "d6d90f835d3e05d06b671ea93ba5cba2a17e85afe5cdcca9b707876e8b690e94"
    )


def test_worked_example_canonical_request_hash() -> None:
    digest = hashlib.sha256(_canonical().encode()).hexdigest()
    assert digest == "288a82e4d839eee63c86b92febc64381d38424850e7d7526bb0ec3dc3121b573"


def test_worked_example_signature() -> None:
    assert (
        signing.signature(SECRET, TIMESTAMP, _canonical())
        == "f046e2f918abdda7aa779bcca1901d789ec0beb4a6bcb3794d111a01cda397f0"
    )


def test_canonical_request_has_empty_line_between_headers_and_signed_headers() -> None:
    lines = _canonical().split("\n")
    assert lines[:5] == ["POST", PATH, "", f"content-type:{CONTENT_TYPE}", f"host:{HOST}"]
    assert lines[5] == ""
    assert lines[6] == "content-type;host"


def test_empty_body_hashes_the_empty_string() -> None:
    assert signing.hashed_payload(b"") == hashlib.sha256(b"").hexdigest()


def test_signed_headers_round_trip_through_verify() -> None:
    headers = _signed()
    assert headers["Authorization"] == (
        "WS3-HMAC-SHA256 Credential=AK1, SignedHeaders=content-type;host, "
        "Signature=f046e2f918abdda7aa779bcca1901d789ec0beb4a6bcb3794d111a01cda397f0"
    )
    assert headers["X-WS-Timestamp"] == TIMESTAMP
    assert _verify(headers) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Host": "api.cloudv.haplat.net:8443"}, "signature mismatch"),
        ({"Content-Type": "application/json"}, "signature mismatch"),
        ({"X-WS-Timestamp": "1564645580"}, "signature mismatch"),
        ({"Authorization": "Bearer x"}, "missing or malformed Authorization header"),
        ({"X-WS-AccessKey": "AK2"}, "X-WS-AccessKey does not match the credential"),
    ],
)
def test_verify_rejects_tampering(change: dict[str, str], reason: str) -> None:
    headers = _signed()
    headers.update(change)
    assert _verify(headers) == reason


def test_verify_rejects_wrong_secret_and_unknown_key() -> None:
    headers = _signed("not-the-secret")
    assert _verify(headers) == "signature mismatch"
    assert _verify(headers, {"AK9": SECRET}) == "unknown access key"


def test_verify_rejects_a_changed_body() -> None:
    headers = _signed()
    assert (
        signing.verify(
            headers,
            secret_for={"AK1": SECRET},
            method="POST",
            path=PATH,
            query="",
            body=b'{"transNo":"0123456780"}',
        )
        == "signature mismatch"
    )
