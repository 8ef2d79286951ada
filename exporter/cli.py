"""Command line: flags, sub-commands, wiring and exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error. Every flag can also be
set from the environment: CLOUDVOD_CONCAT_ plus the flag's name upper-cased, dots and dashes as
underscores (`--web.listen-address` is CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS); the command line wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__, logs, redaction
from exporter.client import Exchange
from exporter.config import (
    ApiConfig,
    Config,
    ConfigError,
    RefreshConfig,
    StorageConfig,
    Task,
    load_config,
    parse_config,
    parse_duration,
)
from exporter.metrics import clarity_name
from exporter.protocol import (
    DEFAULT_ENDPOINT,
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    TRANS_NO_RE,
)
from exporter.simulator.fakeapi import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from exporter.state import NEVER_ASKED, TaskState, answered, failed

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
TOP_UP_INTERVAL = 1.0  # seconds between checks for budget freed between scrapes
ENV_PREFIX = "CLOUDVOD_CONCAT_"
PROG = "cloudvod-concat-exporter"


def env_name(option: str) -> str:
    """A flag's environment variable: --web.listen-address is CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS."""
    return ENV_PREFIX + option.lstrip("-").upper().replace(".", "_").replace("-", "_")


def _long_option(action: argparse.Action) -> str | None:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return longs[0] if longs else None


def _takes_env(action: argparse.Action) -> bool:
    return _long_option(action) is not None and not isinstance(
        action, argparse._HelpAction | argparse._VersionAction
    )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default and environment variable; keeps the epilog's layout."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        extras = []
        if (
            "%(default)" not in text
            and action.default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            extras.append("default: %(default)s")
        if _takes_env(action):
            extras.append("env " + env_name(_long_option(action) or ""))
        return f"{text} ({'; '.join(extras)})" if extras else text


EXIT_CODES = "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error"
ENV_NOTE = (
    "Every flag can be set from the environment: CLOUDVOD_CONCAT_ + the flag name upper-cased,\n"
    "dots and dashes as underscores (shown after each flag); a flag on the command line wins.\n"
    f"API credentials: {ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET}."
)
EPILOGS = {
    "serve": f"""\
examples:
  {PROG} --demo   # built-in simulator, no account needed
  {PROG} --config.file=config.yaml --web.listen-address=:9877
  CLOUDVOD_CONCAT_WEB_LISTEN_ADDRESS=127.0.0.1:9877 {PROG} --config.file=c.yaml

commands: check-config, query, simulate, mixin ({PROG} COMMAND --help)
signals: SIGHUP (or POST /-/reload) reloads the configuration; SIGTERM/SIGINT stop.

{ENV_NOTE}

exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot listen (port in use), 2 bad flag, listen
address or configuration""",
    "check-config": f"""\
examples:
  {PROG} check-config --config.file=config.yaml

Validates the file and every task file and prints every problem as `path: problem`; never calls
the API.

{ENV_NOTE}

exit codes: 0 valid, 2 invalid""",
    "query": f"""\
examples:
  {PROG} query --config.file=config.yaml 0251168101641000f4cf4da800000000
  {ENV_ACCESS_KEY_ID}=demo-access-key {ENV_ACCESS_KEY_SECRET}=demo-secret \\
    {PROG} query --api.endpoint=http://127.0.0.1:8080 --format=json demo-ok-old

Without --config.file the endpoint and credentials come from the --api.* flags and the
environment ({ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET}); the secret is never
a flag, so it does not show in the process list. With --config.file, the --api.* flags override
the file.

{ENV_NOTE}

exit codes: 0 every transNo got a status answer, 1 some did not (an API error code such as 1603
counts as no answer; 1560 is a processing answer), 2 bad transNo, flag or configuration""",
    "simulate": f"""\
examples:
  {PROG} simulate   # 20 demo tasks on 127.0.0.1:8080
  {PROG} simulate --listen=127.0.0.1:0 --tasks=10000 --rate-limit=none

It prints its URL, its credentials and sample transNos at start-up.

{ENV_NOTE}

exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot listen, 2 bad flag""",
    "mixin": f"""\
examples:
  {PROG} mixin --out=build/                       # the files shipped here
  {PROG} mixin --config=mixin.yaml --out=build/   # your job, URLs, thresholds

Writes prometheus/alerts.yml, prometheus/recording.yml, grafana/cloudvod-concat.json and
deploy/kubernetes/prometheusrule.yaml under --out (see docs/monitoring.md#the-monitoring-mixin).

{ENV_NOTE}

exit codes: 0 written, 1 cannot write, 2 bad flag or mixin configuration""",
}


def version_text() -> str:
    """What --version prints: the exporter's version, Python's and prometheus_client's."""
    try:
        client = metadata.version("prometheus-client")
    except metadata.PackageNotFoundError:
        client = "unknown"
    return (
        f"cloudvod-concat-exporter {__version__}\n"
        f"  python:            {platform.python_version()} ({platform.python_implementation()})\n"
        f"  prometheus_client: {client}\n"
    )


class _VersionAction(argparse._VersionAction):
    # argparse's own version action re-wraps the text into one line.
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest=dest,
            help="print the version, the Python and prometheus_client versions, and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        sys.stdout.write(version_text())
        parser.exit()


def _common(parser: argparse.ArgumentParser, *, config_default: str | None = "config.yaml") -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=config_default,
        metavar="FILE",
        help="configuration file (YAML)",
    )
    _logging(parser)


def _logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log.level", dest="log_level", default="info", choices=logs.LEVELS, help="log level"
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=("logfmt", "json"),
        help="log line format on stderr",
    )


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=EPILOGS[name],
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )


def _positive_int(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prometheus exporter for Cloud VoD video splicing tasks (videoConcatQuery).\n"
        "Without a command: serve /metrics.",
        epilog=EPILOGS["serve"],
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # `mixin --config` must not be taken for --config.file
    )
    parser.add_argument("--version", action=_VersionAction)
    _common(parser)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=":9877",
        metavar="ADDRESS",
        help='address to serve on: "host:port", "[ipv6]:port" or ":port" (every interface)',
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path of the metrics endpoint",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="FILE",
        help="exporter-toolkit web configuration (TLS, basic auth)",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=64,
        help="client connections served at once; more wait, or replace idle ones (default 64)",
    )
    parser.add_argument(
        "--config.watch-interval",
        dest="watch_interval",
        default="5s",
        metavar="DURATION",
        help="how often task_files are checked for changes (0s: never)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default="data/",
        metavar="PATH",
        help='folder of the state file (SQLite); "" keeps state in memory only',
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in Cloud VoD simulator with sample tasks (no account needed)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = _sub(sub, "check-config", "validate the configuration and exit")
    _common(check)

    query = _sub(sub, "query", "ask the API about some tasks once and print the answers")
    _common(query, config_default=None)
    query.add_argument(
        "--api.endpoint",
        dest="api_endpoint",
        default=None,
        metavar="URL",
        help=f"API base URL (without --config.file: default {DEFAULT_ENDPOINT})",
    )
    query.add_argument(
        "--api.access-key-id",
        dest="api_access_key_id",
        default=None,
        metavar="ID",
        help=f"AccessKey ID (else env {ENV_ACCESS_KEY_ID} or the configuration file)",
    )
    query.add_argument(
        "--api.access-key-secret-file",
        dest="api_access_key_secret_file",
        default=None,
        metavar="FILE",
        help=f"file holding the secret (else env {ENV_ACCESS_KEY_SECRET} or the configuration)",
    )
    query.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a summary per task and the exposition; json: the same as one document",
    )
    query.add_argument(
        "trans_nos",
        nargs="+",
        metavar="TRANSNO",
        help="transNo of a splicing task (1-32 letters, digits, '_' or '-')",
    )

    from exporter.simulator import cli as simulator_cli

    simulate = _sub(sub, "simulate", "run the Cloud VoD API simulator alone")
    _logging(simulate)
    simulator_cli.add_arguments(simulate)

    mixin = _sub(
        sub, "mixin", "generate alert rules, recording rules, dashboard and PrometheusRule"
    )
    mixin.add_argument(
        "--config",
        dest="mixin_config",
        default=None,
        metavar="FILE",
        help="mixin configuration (YAML; default: the shipped settings)",
    )
    mixin.add_argument(
        "--out", dest="out", required=True, metavar="DIR", help="folder to write the files under"
    )
    _logging(mixin)
    return parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_parsers(child))
    return found


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> list[str]:
    """Use CLOUDVOD_CONCAT_* variables as flag defaults; return a problem per bad value."""
    problems = []
    for each in _parsers(parser):
        for action in each._actions:
            if not _takes_env(action):
                continue
            name = env_name(_long_option(action) or "")
            if name not in environ:
                continue
            raw = environ[name]
            value: Any = raw
            if isinstance(action, argparse._StoreTrueAction):
                lowered = raw.strip().lower()
                if lowered not in {"1", "true", "yes", "0", "false", "no", ""}:
                    problems.append(f"{name}={raw!r}: expected true or false")
                    continue
                value = lowered in {"1", "true", "yes"}
            elif action.type is not None and callable(action.type):
                try:
                    value = action.type(raw)
                except (TypeError, ValueError):
                    problems.append(f"{name}={raw!r}: invalid value for {_long_option(action)}")
                    continue
            if action.choices is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                problems.append(f"{name}={raw!r}: expected one of {choices}")
                continue
            action.default = value
            action.required = False
    return problems


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    problems = apply_environment(parser, os.environ if environ is None else environ)
    if problems:
        for problem in problems:
            print(f"{PROG}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        if args.command == "check-config":
            return check_config(args)
        if args.command == "query":
            return query(args)
        if args.command == "simulate":
            from exporter.simulator import cli as simulator_cli

            return simulator_cli.run(args)
        if args.command == "mixin":
            return mixin(args)
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
        _print_problems(path, [redaction.redact(f"cannot load: {type(exc).__name__}: {exc}")])
        return None


def check_config(args: argparse.Namespace) -> int:
    """Validate the configuration; print every problem; never call the API."""
    config = _load(args.config_file)
    if config is None:
        return EXIT_USAGE
    from exporter import capacity

    # Warnings do not make the file invalid (exit 0): the configuration's own (task-file
    # patterns that match nothing, tasks listed in two files), then what it costs in budget.
    lines, costs = capacity.report(len(config.tasks), config.api.rate_limit, config.refresh)
    nothing = [] if config.tasks else ["no task is watched: tasks and task_files list none"]
    for warning in (*config.warnings, *nothing, *costs):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.config_file}: valid; {len(config.tasks)} watched tasks, endpoint "
        f"{config.api.endpoint}"
    )
    for line in lines:
        print(f"  {line}")
    return EXIT_OK


def _query_config(args: argparse.Namespace) -> Config | None:
    """The configuration `query` runs with: the file if given, else flags and environment."""
    overrides: dict[str, str] = {}
    if args.api_endpoint is not None:
        overrides["endpoint"] = args.api_endpoint
    if args.api_access_key_id is not None:
        overrides["access_key_id"] = args.api_access_key_id
    if args.api_access_key_secret_file is not None:
        overrides["access_key_secret_file"] = str(Path(args.api_access_key_secret_file).absolute())
    if args.config_file is not None:
        config = _load(args.config_file)
        if config is None or not overrides:
            return config
        data: dict[str, Any] = {"api": overrides}
        try:
            flags = parse_config(data, base_dir=Path.cwd(), source="command line")
        except ConfigError as exc:
            _print_problems("command line", _flag_names(exc.problems))
            return None
        api = config.api
        endpoint = flags.api.endpoint if "endpoint" in overrides else api.endpoint
        key_id = flags.api.access_key_id if "access_key_id" in overrides else api.access_key_id
        secret = (
            flags.api.access_key_secret
            if "access_key_secret_file" in overrides
            else api.access_key_secret
        )
        new_api = replace(api, endpoint=endpoint, access_key_id=key_id, access_key_secret=secret)
        return replace(config, api=new_api)
    try:
        return parse_config({"api": overrides}, base_dir=Path.cwd(), source="command line")
    except ConfigError as exc:
        _print_problems("command line", _flag_names(exc.problems))
        return None


def _flag_names(problems: Sequence[str]) -> list[str]:
    """Config paths as the flags that set them (api.access_key_id -> --api.access-key-id)."""
    out = []
    for problem in problems:
        named = problem
        for key in ("access_key_secret_file", "access_key_secret", "access_key_id", "endpoint"):
            path = f"api.{key}"
            if problem.startswith(path):
                flag = "--api." + key.replace("_", "-")
                if key == "access_key_secret":
                    flag = f"--api.access-key-secret-file or {ENV_ACCESS_KEY_SECRET}"
                named = flag + problem[len(path) :]
                break
        out.append(named)
    return out


def query(args: argparse.Namespace) -> int:
    """Ask the API about the given transNos once; exit 0 if every one got a status answer."""
    from exporter.collector import TaskCollector
    from exporter.service import make_client

    bad = [t for t in args.trans_nos if not TRANS_NO_RE.fullmatch(t)]
    if bad:
        for t in bad:
            print(f"{t!r}: not a valid transNo (1-32 letters, digits, '_' or '-')", file=sys.stderr)
        return EXIT_USAGE
    config = _query_config(args)
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


def _number(value: float | None) -> int | float | None:
    """A number as the metrics mean it: integral values as int (7202, not 7202.0)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _error_message(code: str, message: str) -> str:
    """The error's own words, without the "API error 1603: " the code already says."""
    prefix = f"API error {code}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


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
        out["error"] = {
            "code": ex.error.code,
            "message": _error_message(ex.error.code, str(ex.error)),
        }
    if answer is not None:
        out["task_id"] = answer.task_id
        out["api_code"] = answer.api_code
        if answer.video is not None:
            v = answer.video
            out["video"] = {
                "video_id": v.video_id,
                "video_name": v.video_name,
                "duration_seconds": _number(v.duration),
                "size_bytes": _number(v.size),
                "renditions": [
                    {
                        "clarity": clarity_name(r.clarity),
                        "server_type": r.server_type,
                        "width_pixels": _number(r.width),
                        "height_pixels": _number(r.height),
                        "file_size_bytes": _number(r.file_size),
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
                f"  rendition clarity {r['clarity']} server_type {r['server_type']}: "
                f"{r['width_pixels']}x{r['height_pixels']} pixels, {r['file_size_bytes']} bytes"
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

    from exporter.httpserver import HTTPServer, parse_listen_address
    from exporter.service import Exporter
    from exporter.store.backends import open_store
    from exporter.store.sqlite import StoreLockedError
    from exporter.watcher import TaskFileWatcher
    from exporter.webapp import make_app
    from exporter.webconfig import WebConfigError, load_web_config

    try:
        parse_listen_address(args.listen_address)
    except ValueError as exc:
        print(f"--web.listen-address: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        exporter = Exporter(config, store=store, top_up_interval=TOP_UP_INTERVAL)
    else:
        path = args.config_file
        exporter = Exporter(
            loaded, store=store, loader=lambda: load_config(path), top_up_interval=TOP_UP_INTERVAL
        )

    try:
        server = HTTPServer(
            make_app(exporter, args.telemetry_path),
            args.listen_address,
            web,
            max_connections=args.max_connections,
        )
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


def mixin(args: argparse.Namespace) -> int:
    """Write the monitoring mixin's files under --out."""
    from exporter.mixin import MixinConfigError, load_mixin_config, write

    try:
        config = load_mixin_config(args.mixin_config)
    except MixinConfigError as exc:
        _print_problems(args.mixin_config, exc.problems)
        return EXIT_USAGE
    try:
        written = write(config, args.out)
    except OSError as exc:
        print(f"mixin: cannot write under {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    for path in written:
        print(path)
    return EXIT_OK
