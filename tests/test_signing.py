"""WS3-HMAC-SHA256: the worked example of cloudvod-api.md byte for byte, and the vendor's rules."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import signing
from exporter.client import CloudVodClient
from exporter.simulator import SimulatorServer, documented_example
from tests import vendor_signer
from tests.helpers import ACCESS_KEY_ID
from tests.helpers import SECRET as CONFTEST_SECRET

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


# --- the vendor's canonicalization, checked against an independent implementation ----------


def test_worked_example_matches_the_independent_vendor_signer() -> None:
    auth = vendor_signer.sign(
        access_key="AK1",
        secret=SECRET,
        timestamp=int(TIMESTAMP),
        method="POST",
        uri=PATH,
        headers={"Content-Type": CONTENT_TYPE, "Host": HOST},
        body=BODY,
    )
    assert auth == _signed()["Authorization"]


@pytest.mark.parametrize(
    "host",
    ["API.cloudv.haplat.net", "Api.Cloudv.Haplat.Net:8443", " api.cloudv.haplat.net:443 "],
)
def test_any_spelling_of_the_host_signs_lower_cased_and_is_sent_so(host: str) -> None:
    headers = signing.signed_headers(
        access_key_id="AK1",
        secret=SECRET,
        timestamp=int(TIMESTAMP),
        method="POST",
        path=PATH,
        host=host,
        content_type=CONTENT_TYPE,
        body=BODY,
    )
    assert headers["Host"] == host.strip().lower()
    assert f"\nhost:{host.strip().lower()}\n" in signing.canonical_request(
        "POST", PATH, "", CONTENT_TYPE, host, BODY
    )
    assert _vendor_verify(headers, method="POST", uri=PATH, body=BODY) is None


def test_content_type_value_is_lower_cased_and_trimmed() -> None:
    canonical = signing.canonical_request(
        "POST", PATH, "", "  Application/JSON; Charset=UTF-8 ", HOST, BODY
    )
    assert "\ncontent-type:application/json; charset=utf-8\n" in canonical
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "288a82e4d839eee63c86b92febc64381d38424850e7d7526bb0ec3dc3121b573"
    )


def test_post_drops_the_query_string() -> None:
    assert signing.canonical_request("POST", PATH, "a=1", CONTENT_TYPE, HOST, BODY) == (
        signing.canonical_request("POST", PATH, "", CONTENT_TYPE, HOST, BODY)
    )


@pytest.mark.parametrize(
    ("raw", "signed"),
    [
        ("transNo=0123456789", "transNo=0123456789"),
        ("transNo=a%2Fb%20c", "transNo=a/b c"),
        ("q=%E4%BD%A0", "q=你"),
        ("q=a+b", "q=a b"),  # Go's QueryUnescape: "+" is a space
        ("q=%zz", ""),  # a malformed escape: the Go SDK signs an empty query
    ],
)
def test_get_query_string_is_url_decoded(raw: str, signed: str) -> None:
    lines = signing.canonical_request("GET", PATH, raw, CONTENT_TYPE, HOST, b"").split("\n")
    assert lines[2] == signed


def test_get_hashes_an_empty_payload_whatever_the_body() -> None:
    canonical = signing.canonical_request("GET", PATH, "", CONTENT_TYPE, HOST, BODY)
    assert canonical.endswith("\n" + hashlib.sha256(b"").hexdigest())


def _vendor_verify(
    headers: dict[str, str], *, method: str, uri: str, body: bytes, secret: str = SECRET
) -> str | None:
    """Send `headers` "over the wire" and check them with the vendor's rules."""
    received = {k: vendor_signer.on_the_wire(v) for k, v in headers.items()}
    path, _, query = uri.partition("?")
    return vendor_signer.verify(
        received, secret_for={"AK1": secret}, method=method, path=path, query=query, body=body
    )


_HOST_LABEL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith("-"))
_HOSTS = st.builds(
    lambda labels, port: ".".join(labels) + (f":{port}" if port is not None else ""),
    st.lists(_HOST_LABEL, min_size=1, max_size=4),
    st.none() | st.integers(min_value=1, max_value=65535),
)
_CONTENT_TYPES = st.builds(
    lambda base, charset, pad_l, pad_r: (
        pad_l + base + (f"; charset={charset}" if charset else "") + pad_r
    ),
    st.sampled_from(["application/json", "Application/JSON", "application/x-www-form-urlencoded"]),
    st.sampled_from(["", "utf-8", "UTF-8", "Utf-8"]),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["", " ", "\t"]),
)
_QUERY_PART = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8
).map(lambda s: quote(s, safe=""))
_QUERIES = st.lists(st.tuples(_QUERY_PART, _QUERY_PART), max_size=3).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
) | st.text(alphabet="ab=&+%20zZ", max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    host=_HOSTS,
    content_type=_CONTENT_TYPES,
    query=_QUERIES,
    body=st.binary(max_size=64),
    timestamp=st.integers(min_value=0, max_value=2**32),
)
def test_exporter_and_vendor_signers_agree_on_random_requests(
    method: str, host: str, content_type: str, query: str, body: bytes, timestamp: int
) -> None:
    headers = signing.signed_headers(
        access_key_id="AK1",
        secret=SECRET,
        timestamp=timestamp,
        method=method,
        path=PATH,
        host=host,
        content_type=content_type,
        body=body,
        query=query,
    )
    uri = f"{PATH}?{query}" if query else PATH
    # What the exporter signs verifies under the vendor's rules ...
    assert _vendor_verify(headers, method=method, uri=uri, body=body) is None
    # ... the two canonical requests are the same bytes ...
    ours = signing.canonical_request(method, PATH, query, content_type, host, body)
    theirs = vendor_signer.canonical_request(
        method, uri, {"Content-Type": content_type.strip(), "Host": host}, "content-type;host", body
    )
    assert ours.encode("utf-8", "surrogateescape") == theirs
    # ... and what the vendor's SDK would sign verifies with the exporter's own verify().
    received = {
        "Content-Type": content_type.strip(),
        "Host": host,
        "X-WS-Timestamp": str(timestamp),
    }
    received["Authorization"] = vendor_signer.sign(
        access_key="AK1",
        secret=SECRET,
        timestamp=timestamp,
        method=method,
        uri=uri,
        headers=received,
        body=body,
    )
    assert (
        signing.verify(
            received, secret_for={"AK1": SECRET}, method=method, path=PATH, query=query, body=body
        )
        is None
    )


def test_vendor_verifier_refuses_what_the_old_canonicalization_signed() -> None:
    # Before, the host was signed as written: an upper-case endpoint would be refused.
    canonical = "\n".join(
        [
            "POST",
            PATH,
            "",
            f"content-type:{CONTENT_TYPE}\nhost:API.cloudv.haplat.net\n",
            "content-type;host",
            signing.hashed_payload(BODY),
        ]
    )
    sig = signing.signature(SECRET, TIMESTAMP, canonical)
    headers = {
        "Host": "API.cloudv.haplat.net",
        "Content-Type": CONTENT_TYPE,
        "X-WS-Timestamp": TIMESTAMP,
        "X-WS-AccessKey": "AK1",
        "Authorization": signing.authorization("AK1", sig),
    }
    assert _vendor_verify(headers, method="POST", uri=PATH, body=BODY) == "signature mismatch"


def test_client_with_an_upper_case_endpoint_and_port_is_accepted_by_the_vendor_rules(
    start_simulator: Callable[..., SimulatorServer],
) -> None:
    sim = start_simulator([documented_example(0.0)])  # verifies with tests/vendor_signer.py
    endpoint = sim.url.replace("127.0.0.1", "LocalHost")
    client = CloudVodClient(endpoint, ACCESS_KEY_ID, CONFTEST_SECRET, timeout=2.0)
    try:
        exchange = client.exchange("0251168101641000f4cf4da800000000")
    finally:
        client.close()
    assert exchange.error is None
    assert exchange.request_headers["Host"] == f"localhost:{sim.port}"
    assert sim.stats().auth_failures == 0
