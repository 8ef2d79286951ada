"""The lenient answer parser: documented example, type drift, hostile bodies."""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.answers import TaskAnswer, number, parse_answer, timestamp
from exporter.errors import (
    ApiCodeError,
    ApiError,
    ApiInvalidResponse,
    ApiThrottled,
)

CST = datetime.timezone(datetime.timedelta(hours=8))
TRANS_NO = "0251168101641000f4cf4da800000000"

DOCUMENTED: dict[str, Any] = {
    "code": 200,
    "message": "操作成功",
    "data": {
        "taskId": "025d0ca201641000acce255700000000",
        "transNo": TRANS_NO,
        "status": 2,
        "videoInfo": {
            "videoId": "v1",
            "videoName": "spliced",
            "encrypt": 0,
            "videoSize": "1223912405",
            "videoDuration": "7202",
            "uploadTime": "1529048009",
            "updateTime": "1529048100",
            "transcodeState": "5",
            "videoState": "0",
            "videoSourceCode": 5,
            "publishDomain": "vod.example.com",
            "playerName": "default",
            "videoResolutions": [
                {
                    "clarity": 1,
                    "serverType": -1,
                    "width": 1280,
                    "height": 720,
                    "fileSize": 1223912405,
                }
            ],
        },
    },
}


def parse(envelope: Any, trans_no: str = TRANS_NO) -> TaskAnswer:
    return parse_answer(json.dumps(envelope).encode(), trans_no, CST)


def test_documented_example() -> None:
    answer = parse(DOCUMENTED)
    assert answer.status == 2
    assert answer.task_id == "025d0ca201641000acce255700000000"
    video = answer.video
    assert video is not None
    assert video.duration == 7202
    assert video.size == 1223912405
    assert video.transcode_state == 5
    assert video.video_state == 0
    assert video.upload_time == 1529048009
    assert video.update_time == 1529048100
    (rendition,) = video.renditions
    assert (rendition.clarity, rendition.server_type) == (1, -1)
    assert (rendition.width, rendition.height, rendition.file_size) == (1280, 720, 1223912405)


def test_1560_means_processing() -> None:
    answer = parse({"code": 1560, "message": "视频处理中", "data": None})
    assert (answer.status, answer.api_code) == (1, 1560)


@pytest.mark.parametrize("code", [1601, 1602, 1603, 1000, 1301, 9999])
def test_business_errors_carry_their_code(code: int) -> None:
    with pytest.raises(ApiCodeError) as info:
        parse({"code": code, "message": "nope", "data": None})
    assert info.value.code == str(code)


def test_unknown_code_mentioning_a_limit_is_throttling() -> None:
    with pytest.raises(ApiThrottled):
        parse({"code": 1999, "message": "Request frequency limit exceeded", "data": None})


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"code": 200, "data": {"status": 2',
        b"[1, 2, 3]",
        b'{"message": "no code"}',
        b'{"code": 200, "data": null}',
        b'{"code": 200, "data": {"status": 7}}',
        b'{"code": 200, "data": {"status": "done"}}',
        b'{"code": 200, "data": {"status": 2, "transNo": "someone-else"}}',
        b"\xff\xfe\x00garbage",
        b"[" * 100000,
    ],
)
def test_hostile_bodies_are_invalid_responses(body: bytes) -> None:
    with pytest.raises(ApiInvalidResponse):
        parse_answer(body, TRANS_NO, CST)


def test_numbers_as_strings_floats_and_missing_fields() -> None:
    envelope = json.loads(json.dumps(DOCUMENTED))
    info = envelope["data"]["videoInfo"]
    envelope["data"]["status"] = "2"
    info["videoSize"] = 1223912405.0
    info["videoDuration"] = "7202.5"
    info["transcodeState"] = 5
    info["videoState"] = "x"
    del info["videoResolutions"]
    answer = parse(envelope)
    assert answer.status == 2
    assert answer.video is not None
    assert answer.video.size == 1223912405
    assert answer.video.duration == 7202.5
    assert answer.video.video_state is None
    assert answer.video.renditions == ()


def test_status_2_without_video_info() -> None:
    answer = parse({"code": 200, "data": {"status": 2, "taskId": "t"}})
    assert answer.status == 2
    assert answer.video is None


def test_datetime_strings_are_vendor_local_time() -> None:
    assert timestamp("2018-06-15 15:35:00", CST) == 1529048100
    assert timestamp("1529048100", CST) == 1529048100
    assert timestamp("1529048100000", CST) == 1529048100
    assert timestamp("yesterday", CST) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),
        (" 7 ", 7.0),
        ("1e3", 1000.0),
        (3, 3.0),
        (True, None),
        ("NaN", None),
        (float("inf"), None),
        ("", None),
        (None, None),
        ([1], None),
    ],
)
def test_number(value: Any, expected: float | None) -> None:
    assert number(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_parse_or_raise_api_error(body: bytes) -> None:
    with contextlib.suppress(ApiError):
        parse_answer(body, TRANS_NO, CST)


@settings(max_examples=300, deadline=None)
@given(
    status=st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.floats()),
    info=st.dictionaries(
        st.sampled_from(
            [
                "videoSize",
                "videoDuration",
                "uploadTime",
                "updateTime",
                "videoState",
                "transcodeState",
                "encrypt",
                "videoName",
                "videoResolutions",
                "videoId",
            ]
        ),
        json_values,
    ),
)
def test_any_shaped_data_parses_or_raises_api_error(status: Any, info: dict[str, Any]) -> None:
    envelope = {"code": 200, "data": {"status": status, "transNo": TRANS_NO, "videoInfo": info}}
    try:
        answer = parse(envelope)
    except ApiError:
        return
    assert answer.status in (1, 2, 3)
    if answer.video is not None:
        for value in (answer.video.size, answer.video.duration, answer.video.upload_time):
            assert value is None or isinstance(value, float)
