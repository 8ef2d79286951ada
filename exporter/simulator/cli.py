"""The `simulate` sub-command: run the Cloud VoD simulator alone until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from exporter.protocol import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET
from exporter.simulator.fakeapi import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, SimulatorServer
from exporter.simulator.tasks import SimTask, demo_tasks, generate_tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` flags to a (sub-)parser."""
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to serve on (default %(default)s; port 0 picks a free one)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=0,
        metavar="N",
        help="serve N generated tasks (default 0: the demo task set)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="S", help="seed for generated tasks (default 1)"
    )
    parser.add_argument(
        "--latency",
        default="0s",
        metavar="DURATION",
        help="delay added to every answer, e.g. 50ms (default %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        default="300/5m",
        metavar="N/DURATION",
        help="requests allowed per sliding window per access key, or 'none' (default %(default)s)",
    )
    parser.add_argument(
        "--access-key-id",
        default=None,
        help=f"accepted AccessKey ID (env {ENV_ACCESS_KEY_ID}; default {DEMO_ACCESS_KEY_ID})",
    )
    parser.add_argument(
        "--access-key-secret",
        default=None,
        help=f"its secret (env {ENV_ACCESS_KEY_SECRET}; default the demo secret)",
    )
    parser.add_argument(
        "--processing-as-1560",
        action="store_true",
        help="answer code 1560 for processing tasks instead of status 1",
    )


def parse_listen(text: str) -> tuple[str, int]:
    """Split HOST:PORT ("[::1]:80" for IPv6; an empty host means every interface)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen={text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)  # ":PORT": every interface


def parse_rate_limit(text: str) -> tuple[int, float] | None:
    """Parse N/DURATION (e.g. 300/5m) or "none"."""
    from exporter.config import parse_duration

    if text.strip().lower() == "none":
        return None
    count, sep, period = text.partition("/")
    if not sep or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"--rate-limit={text!r}: expected N/DURATION such as 300/5m, or none")
    try:
        seconds = parse_duration(period.strip())
    except ValueError as exc:
        raise ValueError(f"--rate-limit={text!r}: {exc}") from exc
    if seconds <= 0:
        raise ValueError(f"--rate-limit={text!r}: the period must be positive")
    return int(count), seconds


def startup_message(url: str, tasks: Sequence[SimTask], key_id: str, secret: str) -> str:
    """What `simulate` prints at start-up: where, which credentials, which transNos to try."""
    default = secret == DEMO_ACCESS_KEY_SECRET
    shown_secret = secret if default else "(the one you set; not printed)"
    try_secret = secret if default else "$CLOUDVOD_ACCESS_KEY_SECRET"
    sample = [t.trans_no for t in tasks[:5]]
    more = f" (and {len(tasks) - len(sample)} more)" if len(tasks) > len(sample) else ""
    return "\n".join(
        [
            f"simulator listening on {url} ({len(tasks)} tasks)",
            f"  access key ID:     {key_id}",
            f"  access key secret: {shown_secret}",
            f"  sample transNos:   {' '.join(sample)}{more}",
            f"  try: CLOUDVOD_ACCESS_KEY_ID={key_id} CLOUDVOD_ACCESS_KEY_SECRET={try_secret} "
            f"cloudvod-concat-exporter query --api.endpoint={url} "
            + (sample[0] if sample else "TRANSNO"),
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Serve the simulator until SIGINT/SIGTERM; 0 on a clean stop, 2 on bad flags."""
    from exporter.config import parse_duration

    try:
        host, port = parse_listen(args.listen)
        rate_limit = parse_rate_limit(args.rate_limit)
        if args.tasks < 0:
            raise ValueError(f"--tasks={args.tasks}: must not be negative")
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    try:
        latency = parse_duration(args.latency)
    except ValueError as exc:
        print(f"simulate: --latency={args.latency!r}: {exc}", file=sys.stderr)
        return 2
    key_id = args.access_key_id or os.environ.get(ENV_ACCESS_KEY_ID) or DEMO_ACCESS_KEY_ID
    secret = (
        args.access_key_secret or os.environ.get(ENV_ACCESS_KEY_SECRET) or DEMO_ACCESS_KEY_SECRET
    )
    now = time.time()
    tasks = generate_tasks(args.tasks, seed=args.seed, now=now) if args.tasks else demo_tasks(now)
    server = SimulatorServer(
        tasks,
        host=host,
        port=port,
        credentials={key_id: secret},
        latency=latency,
        rate_limit=rate_limit,
        processing_as_1560=args.processing_as_1560,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"simulate: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(startup_message(server.url, tasks, key_id, secret), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m exporter.simulator`: parse the `simulate` flags and run."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator", description="Run the Cloud VoD API simulator."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
