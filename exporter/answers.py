"""Typed answers of `videoConcatQuery` and the lenient parser that builds them.

The API's types drift between documentation pages (numbers sent as strings, timestamps as Unix
seconds or local date strings), so every numeric field accepts a JSON number or a numeric string.
A field that cannot be read is dropped; only an answer without a usable status is invalid.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from exporter.errors import ApiCodeError, ApiInvalidResponse, ApiThrottled
from exporter.protocol import Code, TaskStatus, is_throttling_code

_NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S")


@dataclass(frozen=True)
class Rendition:
    """One rendition (clarity) of the resulting video."""

    clarity: int
    server_type: int | None
    width: float | None
    height: float | None
    file_size: float | None


@dataclass(frozen=True)
class VideoInfo:
    """The video a successful splicing task produced."""

    video_id: str
    video_name: str
    publish_domain: str
    player_name: str
    duration: float | None
    size: float | None
    encrypt: float | None
    transcode_state: float | None
    video_state: float | None
    upload_time: float | None
    update_time: float | None
    renditions: tuple[Rendition, ...]


@dataclass(frozen=True)
class TaskAnswer:
    """What the API said about one task."""

    trans_no: str
    task_id: str
    status: TaskStatus
    video: VideoInfo | None = None
    api_code: int = Code.SUCCESS  # 1560 when the API said "still processing" with an error code

    @property
    def still_processing(self) -> bool:
        """The API answered with code 1560: processing, but without the task's details."""
        return self.api_code == Code.STILL_PROCESSING


def number(value: Any) -> float | None:
    """A finite number from a JSON number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            return None
    elif isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        result = float(value.strip())
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    """An integral number from a JSON number or a numeric string; None otherwise."""
    result = number(value)
    if result is None or not result.is_integer():
        return None
    return int(result)


def text(value: Any) -> str:
    """A string field; numbers are turned into text, anything else is empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def timestamp(value: Any, tz: datetime.tzinfo) -> float | None:
    """Unix seconds from Unix seconds (number or string) or a local date string in `tz`."""
    seconds = number(value)
    if seconds is not None:
        # Some sibling APIs send milliseconds; no real upload happened after the year 5000.
        return seconds / 1000.0 if seconds > 1e11 else seconds
    if not isinstance(value, str):
        return None
    for fmt in _DATETIME_FORMATS:
        try:
            parsed = datetime.datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=tz).timestamp()
    return None


def _rendition(item: Any) -> Rendition | None:
    if not isinstance(item, dict):
        return None
    clarity = integer(item.get("clarity"))
    if clarity is None:
        return None
    return Rendition(
        clarity=clarity,
        server_type=integer(item.get("serverType")),
        width=number(item.get("width")),
        height=number(item.get("height")),
        file_size=number(item.get("fileSize")),
    )


def parse_video(info: Any, tz: datetime.tzinfo) -> VideoInfo | None:
    """The typed videoInfo, or None when the answer carries none."""
    if not isinstance(info, dict):
        return None
    raw_renditions = info.get("videoResolutions")
    renditions = raw_renditions if isinstance(raw_renditions, list) else []
    return VideoInfo(
        video_id=text(info.get("videoId")),
        video_name=text(info.get("videoName")),
        publish_domain=text(info.get("publishDomain")),
        player_name=text(info.get("playerName")),
        duration=number(info.get("videoDuration")),
        size=number(info.get("videoSize")),
        encrypt=number(info.get("encrypt")),
        transcode_state=number(info.get("transcodeState")),
        video_state=number(info.get("videoState")),
        upload_time=timestamp(info.get("uploadTime"), tz),
        update_time=timestamp(info.get("updateTime"), tz),
        renditions=tuple(r for r in map(_rendition, renditions) if r is not None),
    )


def parse_answer(
    body: bytes,
    trans_no: str,
    tz: datetime.tzinfo,
    *,
    request_id: str | None = None,
) -> TaskAnswer:
    """Turn an HTTP 200 body into a TaskAnswer, or raise the ApiError that describes it."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiInvalidResponse(f"answer is not JSON: {exc}", request_id=request_id) from None
    if not isinstance(envelope, dict):
        raise ApiInvalidResponse("answer is not a JSON object", request_id=request_id)
    code = integer(envelope.get("code"))
    if code is None:
        raise ApiInvalidResponse("answer has no numeric code", request_id=request_id)
    message = text(envelope.get("message"))
    if code == Code.STILL_PROCESSING:
        return TaskAnswer(
            trans_no=trans_no,
            task_id="",
            status=TaskStatus.PROCESSING,
            api_code=Code.STILL_PROCESSING,
        )
    if code != Code.SUCCESS:
        if is_throttling_code(code, message):
            raise ApiThrottled(f"API code {code}: {message}", request_id=request_id)
        raise ApiCodeError(code, message, request_id=request_id)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise ApiInvalidResponse("answer has no data object", request_id=request_id)
    raw_status = integer(data.get("status"))
    if raw_status is None or raw_status not in TaskStatus._value2member_map_:
        raise ApiInvalidResponse(
            f"unknown task status {data.get('status')!r}", request_id=request_id
        )
    echoed = data.get("transNo")
    if echoed is not None and text(echoed) != trans_no:
        raise ApiInvalidResponse(
            f"answer is about transNo {text(echoed)!r}, not {trans_no!r}", request_id=request_id
        )
    return TaskAnswer(
        trans_no=trans_no,
        task_id=text(data.get("taskId")),
        status=TaskStatus(raw_status),
        video=parse_video(data.get("videoInfo"), tz)
        if raw_status == TaskStatus.SUCCESSFUL
        else None,
    )
