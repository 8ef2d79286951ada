"""Simulated splicing tasks: their timelines and the `data` object the API answers for them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from exporter.protocol import TRANS_NO_RE, TaskStatus

VENDOR_TZ = timezone(timedelta(hours=8))  # "YYYY-MM-DD HH:MM:SS" strings are vendor local time

Outcome = Literal["successful", "failed", "processing", "missing"]
TimeFormat = Literal["unix", "datetime"]

STATUS_PROCESSING = int(TaskStatus.PROCESSING)
STATUS_SUCCESSFUL = int(TaskStatus.SUCCESSFUL)
STATUS_FAILED = int(TaskStatus.FAILED)


@dataclass
class Rendition:
    """One entry of `videoResolutions`."""

    clarity: int
    server_type: int
    width: int
    height: int
    file_size: int

    def to_api(self) -> dict[str, Any]:
        """The rendition as the API sends it (all integers)."""
        return {
            "clarity": self.clarity,
            "serverType": self.server_type,
            "width": self.width,
            "height": self.height,
            "fileSize": self.file_size,
        }


@dataclass
class SimTask:
    """A splicing task with a timeline: processing until `created_at + processing_seconds`."""

    trans_no: str
    task_id: str
    created_at: float
    processing_seconds: float
    outcome: Outcome
    video_id: str = ""
    video_name: str = ""
    video_duration: int = 0
    renditions: list[Rendition] = field(default_factory=list)
    encrypt: int = 0
    transcode_state: int = 1
    video_state: int = 0
    video_source_code: int = 5
    publish_domain: str = ""
    player_name: str = ""
    player_id: str = ""
    image_url: str = ""
    upload_time: float = 0.0
    update_time: float = 0.0
    time_format: TimeFormat = "unix"
    video_description: str = ""
    video_classification: str = ""

    def status_at(self, now: float) -> int | None:
        """The API status (1 processing, 2 successful, 3 failed) at `now`; None when missing."""
        if self.outcome == "missing":
            return None
        if self.outcome == "processing" or now < self.created_at + self.processing_seconds:
            return STATUS_PROCESSING
        return STATUS_SUCCESSFUL if self.outcome == "successful" else STATUS_FAILED

    @property
    def video_size(self) -> int:
        """Total bytes of all renditions (what `videoSize` reports)."""
        return sum(r.file_size for r in self.renditions)

    def format_time(self, value: float) -> str:
        """A timestamp the way this task sends it: Unix seconds or UTC+8 date-time string."""
        seconds = max(0, int(value))
        if self.time_format == "datetime":
            return datetime.fromtimestamp(seconds, VENDOR_TZ).strftime("%Y-%m-%d %H:%M:%S")
        return str(seconds)

    def video_info(self) -> dict[str, Any]:
        """The `videoInfo` object with the documented wire types (strings vs ints)."""
        return {
            "videoId": self.video_id,
            "videoName": self.video_name,
            "encrypt": self.encrypt,
            "videoSize": str(self.video_size),
            "videoDuration": str(self.video_duration),
            "uploadTime": self.format_time(self.upload_time),
            "updateTime": self.format_time(self.update_time),
            "videoDescription": self.video_description,
            "videoClassification": self.video_classification,
            "imageUrl": self.image_url,
            "publishDomain": self.publish_domain,
            "playerName": self.player_name,
            "playerId": self.player_id,
            "videoState": str(self.video_state),
            "transcodeState": str(self.transcode_state),
            "videoSourceCode": self.video_source_code,
            "videoResolutions": [r.to_api() for r in self.renditions],
        }

    def data_at(self, now: float) -> dict[str, Any]:
        """The `data` object answered at `now`; empty for a missing task (that answers 1603)."""
        status = self.status_at(now)
        if status is None:
            return {}
        data: dict[str, Any] = {"taskId": self.task_id, "transNo": self.trans_no, "status": status}
        if status == STATUS_SUCCESSFUL:
            data["videoInfo"] = self.video_info()
        return data


def documented_example(now: float) -> SimTask:
    """The documented example answer of cloudvod-api.md, already successful at `now`."""
    # Fields the vendor's example does not show (IDs, names, domains) are invented but plausible.
    return SimTask(
        trans_no="0251168101641000f4cf4da800000000",
        task_id="025d0ca201641000acce255700000000",
        created_at=now - 3600.0,
        processing_seconds=91.0,
        outcome="successful",
        video_id="0251168101641000f4d2b4ba00000000",
        video_name="concat_0251168101641000f4cf4da800000000",
        video_duration=7202,
        renditions=[Rendition(1, -1, 1280, 720, 1223912405)],
        encrypt=0,
        transcode_state=5,
        video_state=0,
        video_source_code=5,
        publish_domain="vod.example.com",
        player_name="default",
        player_id="0251168101641000f4d2b4bb00000000",
        image_url="http://vod.example.com/cover/0251168101641000f4d2b4ba00000000.jpg",
        upload_time=1529048009.0,
        update_time=1529048100.0,
    )


# clarity -> (width, height, bytes per second of video)
_LADDER: dict[int, tuple[int, int, int]] = {
    2: (640, 360, 50_000),  # LD ~400 kbit/s
    3: (854, 480, 100_000),  # SD ~800 kbit/s
    4: (1280, 720, 312_500),  # HD ~2.5 Mbit/s
    5: (1920, 1080, 750_000),  # UHD ~6 Mbit/s
}
_UNICODE_NAMES = (
    "春节特辑 第{i}集",
    "Résumé — épisode {i}",
    "🎬 Highlights #{i}",
    "Ünïcödé clip {i}",
)


def _hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _renditions(rng: random.Random, duration: int, count: int) -> list[Rendition]:
    original_rate = rng.choice((312_500, 625_000, 1_000_000))
    width, height = rng.choice(((1280, 720), (1920, 1080), (3840, 2160)))
    renditions = [
        Rendition(1, -1, width, height, int(duration * original_rate * rng.uniform(0.9, 1.1)))
    ]
    for clarity in sorted(rng.sample(sorted(_LADDER), count - 1)):
        w, h, rate = _LADDER[clarity]
        size = int(duration * rate * rng.uniform(0.9, 1.1))
        renditions.append(Rendition(clarity, rng.choice((0, 1)), w, h, size))
    return renditions


def generate_tasks(
    n: int,
    *,
    seed: int = 1,
    now: float,
    processing_share: float = 0.3,
    failed_share: float = 0.1,
    max_processing_seconds: float = 600.0,
    prefix: str = "sim",
) -> list[SimTask]:
    """`n` deterministic tasks: a share still processing at `now` (finishing within the maximum)."""
    if not TRANS_NO_RE.fullmatch(f"{prefix}{max(n - 1, 0):06d}"):
        raise ValueError(f"prefix {prefix!r} does not give valid transNos (1-32 of [A-Za-z0-9_-])")
    rng = random.Random(seed)
    tasks: list[SimTask] = []
    for i in range(n):
        outcome: Outcome = "failed" if rng.random() < failed_share else "successful"
        processing_seconds = rng.uniform(1.0, max(1.0, max_processing_seconds))
        if rng.random() < processing_share:
            created_at = now - rng.uniform(0.0, processing_seconds)  # still processing at `now`
        else:
            created_at = now - processing_seconds - rng.uniform(1.0, 86_400.0)
        duration = rng.randint(30, 7200)
        name = (
            rng.choice(_UNICODE_NAMES).format(i=i) if rng.random() < 0.2 else f"concat-{prefix}-{i}"
        )
        tasks.append(
            SimTask(
                trans_no=f"{prefix}{i:06d}",
                task_id=_hex32(rng),
                created_at=created_at,
                processing_seconds=processing_seconds,
                outcome=outcome,
                video_id=_hex32(rng),
                video_name=name,
                video_duration=duration,
                renditions=_renditions(rng, duration, rng.randint(1, 5)),
                encrypt=1 if rng.random() < 0.1 else 0,
                transcode_state=rng.choice((1, 1, 1, 2)),
                video_state=0 if rng.random() < 0.95 else 1,
                video_source_code=5,
                publish_domain="vod.example.com",
                player_name="default",
                player_id=_hex32(rng),
                image_url=f"http://vod.example.com/cover/{i:06d}.jpg",
                upload_time=created_at,
                update_time=created_at + processing_seconds,
            )
        )
    return tasks


def _task(
    trans_no: str,
    now: float,
    outcome: Outcome,
    *,
    finishes_in: float = -600.0,
    renditions: list[Rendition] | None = None,
    **extra: Any,
) -> SimTask:
    """A demo task finishing `finishes_in` seconds after `now` (negative: finished already)."""
    created_at = now + min(finishes_in, 0.0) - 120.0
    processing_seconds = now + finishes_in - created_at
    duration = int(extra.pop("video_duration", 600))
    if renditions is None:
        renditions = [
            Rendition(1, -1, 1920, 1080, duration * 625_000),
            Rendition(4, 0, 1280, 720, duration * 312_500),
            Rendition(3, 1, 854, 480, duration * 100_000),
        ]
    defaults: dict[str, Any] = {
        "video_id": f"vid-{trans_no}",
        "video_name": f"Demo {trans_no}",
        "publish_domain": "vod.demo.example",
        "player_name": "demo-player",
        "player_id": "demo-player-1",
        "image_url": f"http://vod.demo.example/cover/{trans_no}.jpg",
        "upload_time": created_at,
        "update_time": created_at + processing_seconds,
    }
    defaults.update(extra)
    return SimTask(
        trans_no=trans_no,
        task_id=f"task-{trans_no}",
        created_at=created_at,
        processing_seconds=processing_seconds,
        outcome=outcome,
        video_duration=duration,
        renditions=renditions,
        **defaults,
    )


def demo_tasks(now: float) -> list[SimTask]:
    """The `--demo` task set: tasks that flip within a minute, stuck, odd and missing ones."""
    return [
        documented_example(now),
        # Flip from processing within 10-50 s of `now`, so a newcomer sees it happen.
        _task("demo-ok-10s", now, "successful", finishes_in=10.0),
        _task("demo-ok-25s", now, "successful", finishes_in=25.0, video_duration=95),
        _task("demo-ok-40s", now, "successful", finishes_in=40.0, video_duration=3600),
        _task("demo-fail-20s", now, "failed", finishes_in=20.0),
        _task("demo-fail-50s", now, "failed", finishes_in=50.0),
        # Never finish: the "task hangs" alert.
        _task("demo-stuck-1", now, "processing"),
        _task("demo-stuck-2", now, "processing"),
        # Answers 1603: watched but unknown to the API.
        _task("demo-missing", now, "missing"),
        # Label values that need escaping.
        _task("demo-unicode", now, "successful", video_name='春晚 "Gala" \\ 精选 🎬 — part 1'),
        # A live recording with the -99 "recorded file" clarity.
        _task(
            "demo-recording",
            now,
            "successful",
            video_duration=1800,
            video_source_code=10,
            renditions=[
                Rendition(-99, -1, 1920, 1080, 1800 * 500_000),
                Rendition(4, 0, 1280, 720, 1800 * 312_500),
            ],
        ),
        # A clarity the documentation does not know.
        _task(
            "demo-clarity-7",
            now,
            "successful",
            video_duration=120,
            renditions=[
                Rendition(1, -1, 3840, 2160, 120 * 2_000_000),
                Rendition(7, 1, 2560, 1440, 120 * 1_200_000),
            ],
        ),
        # Timestamps as "YYYY-MM-DD HH:MM:SS" in vendor local time (UTC+8).
        _task("demo-datetime", now, "successful", time_format="datetime"),
        # Encrypted: transcodeState 1 means "encrypted and transcoded".
        _task("demo-encrypted", now, "successful", encrypt=1, transcode_state=1),
        # Finished long ago, with the full rendition ladder.
        _task(
            "demo-ladder",
            now,
            "successful",
            finishes_in=-86_400.0,
            video_duration=2400,
            renditions=[
                Rendition(1, -1, 3840, 2160, 2400 * 2_000_000),
                Rendition(2, 0, 640, 360, 2400 * 50_000),
                Rendition(3, 0, 854, 480, 2400 * 100_000),
                Rendition(4, 0, 1280, 720, 2400 * 312_500),
                Rendition(5, 1, 1920, 1080, 2400 * 750_000),
            ],
        ),
        _task("demo-disabled", now, "successful", video_state=1, transcode_state=2),
        _task("demo-failed-old", now, "failed", finishes_in=-7200.0),
        _task("demo-ok-old", now, "successful", finishes_in=-3600.0, video_duration=45),
        _task("demo-ok-long", now, "successful", finishes_in=-1800.0, video_duration=10_800),
        _task("demo-slow", now, "successful", finishes_in=300.0),
    ]
