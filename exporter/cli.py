"""Command line: flags, sub-commands, wiring and exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__, logs
from exporter.client import Exchange
from exporter.config import (
    ApiConfig,
    Config,
    ConfigError,
    RefreshConfig,
    StorageConfig,
    Task,
    load_config,
    parse_duration,
)
from exporter.protocol import TRANS_NO_RE
from exporter.simulator.server import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from exporter.state import NEVER_ASKED, TaskState, answered, failed

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _common(parser: argparse.ArgumentParser, *, config_default: str | None = "config.yaml") -> None:
    parser.add_argument(
        "--config.file", dest="config_file", default=config_default, help="configuration file"
    )
    parser.add_argument(
        "--log.level", dest="log_level", default="info", choices=logs.LEVELS, help="log level"
    )
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json")
    )


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(
        prog="cloudvod-concat-exporter",
        description="Prometheus exporter for Cloud VoD video splicing tasks (videoConcatQuery).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser)
    parser.add_argument(
        "--web.listen-address", dest="listen_address", default=":9877", help="address to serve on"
    )
    parser.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", help="metrics path"
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web configuration (TLS, basic auth)",
    )
    parser.add_argument(
        "--config.watch-interval",
        dest="watch_interval",
        default="5s",
        help="how often task_files are checked for changes (0s: never)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default="data/",
        help='folder of the state file (SQLite); "" keeps state in memory only',
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in Cloud VoD simulator with sample tasks (no account needed)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    _common(check)

    query = sub.add_parser("query", help="ask the API about some tasks once and print the answers")
    _common(query)
    query.add_argument("--format", choices=("text", "json"), default="text")
    query.add_argument("trans_nos", nargs="+", metavar="TRANSNO")

    from exporter.simulator import cli as simulator_cli

    simulate = sub.add_parser("simulate", help="run the Cloud VoD API simulator alone")
    simulate.add_argument(
        "--log.level", dest="log_level", default="info", choices=logs.LEVELS, help="log level"
    )
    simulate.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json")
    )
    simulator_cli.add_arguments(simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        if args.command == "check-config":
            return check_config(args)
        if args.command == "query":
            return query(args)
        if args.command == "simulate":
            from exporter.simulator import cli as simulator_cli

            return simulator_cli.run(args)
        return serve(args)
    except KeyboardInterrupt:
        return EXIT_OK


def _print_problems(source: str, problems: Sequence[str]) -> None:
    print(f"{source}: invalid configuration", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc.problems)
        return None
    except Exception as exc:  # a loader bug still gets one line and exit 2, not a traceback
        _print_problems(path, [logs.scrub(f"cannot load: {type(exc).__name__}: {exc}")])
        return None


def check_config(args: argparse.Namespace) -> int:
    """Validate the configuration; print every problem; never call the API."""
    config = _load(args.config_file)
    if config is None:
        return EXIT_USAGE
    from exporter import capacity

    lines, costs = capacity.report(len(config.tasks), config.api.rate_limit, config.refresh)
    for warning in (*config.warnings, *costs):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.config_file}: valid; {len(config.tasks)} watched tasks, endpoint "
        f"{config.api.endpoint}"
    )
    for line in lines:
        print(f"  {line}")
    return EXIT_OK


def query(args: argparse.Namespace) -> int:
    """Ask the API about the given transNos once; exit 0 if every one got a status answer."""
    from exporter.collector import TaskCollector
    from exporter.service import make_client

    bad = [t for t in args.trans_nos if not TRANS_NO_RE.fullmatch(t)]
    if bad:
        for t in bad:
            print(f"{t!r}: not a valid transNo (1-32 letters, digits, '_' or '-')", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config_file)
    if config is None:
        return EXIT_USAGE
    watched = {t.trans_no: t for t in config.tasks}
    client = make_client(config.api)
    results: list[dict[str, Any]] = []
    tasks = [watched.get(t, Task(t)) for t in dict.fromkeys(args.trans_nos)]
    states: dict[str, TaskState] = {}
    try:
        for task in tasks:
            ex = client.exchange(task.trans_no)
            if ex.answer is not None:
                state = answered(NEVER_ASKED, ex.answer, time.time())
            else:
                assert ex.error is not None
                state = failed(NEVER_ASKED, ex.error, time.time())
            states[task.trans_no] = state
            results.append(_query_result(task.trans_no, ex, state))
    finally:
        client.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector(lambda: tasks, lambda: states))
    exposition = generate_latest(registry).decode("utf-8")
    if args.format == "json":
        print(
            json.dumps({"results": results, "exposition": exposition}, indent=2, ensure_ascii=False)
        )
    else:
        for result in results:
            print(_query_text(result))
        print("exposition:")
        print(exposition, end="")
    return EXIT_OK if all(r["answered"] for r in results) else EXIT_FAILURE


def _query_result(trans_no: str, ex: Exchange, state: TaskState) -> dict[str, Any]:
    answer = ex.answer
    out: dict[str, Any] = {
        "trans_no": trans_no,
        "answered": answer is not None,
        "status": state.status,
        "request_id": ex.request_id,
        "seconds": round(ex.seconds, 3),
    }
    if ex.error is not None:
        out["error"] = {"code": ex.error.code, "message": str(ex.error)}
    if answer is not None:
        out["task_id"] = answer.task_id
        out["api_code"] = answer.api_code
        if answer.video is not None:
            v = answer.video
            out["video"] = {
                "video_id": v.video_id,
                "video_name": v.video_name,
                "duration_seconds": v.duration,
                "size_bytes": v.size,
                "renditions": [
                    {
                        "clarity": r.clarity,
                        "server_type": r.server_type,
                        "width": r.width,
                        "height": r.height,
                        "file_size_bytes": r.file_size,
                    }
                    for r in v.renditions
                ],
            }
    return out


def _query_text(result: dict[str, Any]) -> str:
    lines = [f"{result['trans_no']}: {result['status']}"]
    if "error" in result:
        lines.append(f"  error {result['error']['code']}: {result['error']['message']}")
    if result.get("task_id"):
        lines.append(f"  task ID: {result['task_id']}")
    video = result.get("video")
    if video:
        lines.append(f"  video: {video['video_name']!r} ({video['video_id']})")
        lines.append(
            f"  duration: {video['duration_seconds']} s, size: {video['size_bytes']} bytes"
        )
        for r in video["renditions"]:
            lines.append(
                f"  rendition clarity {r['clarity']} server type {r['server_type']}: "
                f"{r['width']}x{r['height']}, {r['file_size_bytes']} bytes"
            )
    lines.append(f"  request ID: {result['request_id'] or '-'} ({result['seconds']} s)")
    return "\n".join(lines)


def demo_config(endpoint: str, trans_nos: Sequence[str]) -> Config:
    """The configuration `--demo` runs with: every simulator task, shorter refresh intervals."""
    tasks = tuple(
        Task(t, (("campaign", "spring"),) if i % 3 == 0 else ()) for i, t in enumerate(trans_nos)
    )
    api = ApiConfig(
        access_key_id=DEMO_ACCESS_KEY_ID,
        access_key_secret=DEMO_ACCESS_KEY_SECRET,
        endpoint=endpoint,
    )
    refresh = RefreshConfig(successful=60.0, failed=120.0, error=15.0, error_max=120.0)
    return Config(api=api, refresh=refresh, tasks=tasks, source="<demo>")


def serve(args: argparse.Namespace) -> int:
    """Serve /metrics until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    import shutil
    import tempfile

    from exporter.httpserver import HTTPServer
    from exporter.server import make_app
    from exporter.service import Exporter
    from exporter.store.backends import open_store
    from exporter.store.sqlite import StoreLockedError
    from exporter.watcher import TaskFileWatcher
    from exporter.webconfig import WebConfigError, load_web_config

    try:
        watch_interval = parse_duration(args.watch_interval)
        web = load_web_config(args.web_config_file)
    except ValueError as exc:
        print(f"--config.watch-interval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WebConfigError as exc:
        _print_problems(args.web_config_file, exc.problems)
        return EXIT_USAGE

    simulator = None
    demo_dir = None
    loaded: Config | None = None
    if not args.demo:
        loaded = _load(args.config_file)
        if loaded is None:
            return EXIT_USAGE
        for warning in loaded.warnings:
            log.warning(warning)
    try:
        if loaded is None:  # the demo keeps its state in a folder of its own, removed at exit
            demo_dir = tempfile.mkdtemp(prefix="cloudvod-concat-demo-")
            store = open_store(demo_dir, StorageConfig())
        else:
            store = open_store(args.storage_path, loaded.storage)
    except StoreLockedError as exc:
        log.error("cannot open the state store", extra={"err": str(exc)})
        return EXIT_FAILURE
    if loaded is None:
        from exporter.simulator import SimulatorServer, demo_tasks

        sim_tasks = demo_tasks(time.time())
        simulator = SimulatorServer(
            sim_tasks, credentials={DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET}
        ).start()
        config = demo_config(simulator.url, [t.trans_no for t in sim_tasks])
        log.info("demo mode: built-in simulator", extra={"url": simulator.url})
        exporter = Exporter(config, store=store)
    else:
        path = args.config_file
        exporter = Exporter(loaded, store=store, loader=lambda: load_config(path))

    try:
        server = HTTPServer(make_app(exporter, args.telemetry_path), args.listen_address, web)
        server.start()
    except (OSError, ValueError) as exc:
        log.error("cannot listen", extra={"address": args.listen_address, "err": str(exc)})
        exporter.close()
        if simulator is not None:
            simulator.stop()
        if demo_dir is not None:
            shutil.rmtree(demo_dir, ignore_errors=True)
        return EXIT_FAILURE

    watcher = None
    if not args.demo and watch_interval > 0:
        watcher = TaskFileWatcher(exporter, watch_interval).start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            threading.Thread(target=exporter.reload, name="sighup-reload", daemon=True).start()
        else:
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    log.info(
        "serving",
        extra={
            "version": __version__,
            "address": args.listen_address,
            "tasks": len(exporter.config.tasks),
            "tls": web.tls is not None,
        },
    )
    while not stop.wait(1.0):
        pass
    log.info("shutting down")
    server.shutdown()
    if watcher is not None:
        watcher.stop()
    exporter.close()
    if simulator is not None:
        simulator.stop()
    if demo_dir is not None:
        shutil.rmtree(demo_dir, ignore_errors=True)
    return EXIT_OK
