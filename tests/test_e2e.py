"""The console script end to end: simulator process, exporter process, real scrapes."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import parse_exposition, value
from tests.processes import Process, exporter_command, free_port, http_ok, wait_until

ENV = {"CLOUDVOD_ACCESS_KEY_ID": "e2e-key", "CLOUDVOD_ACCESS_KEY_SECRET": "e2e-secret-Xy7"}


def start_simulator(tmp_path: Path, *extra: str) -> tuple[Process, str]:
    port = free_port()
    sim = Process(
        exporter_command("simulate", f"--listen=127.0.0.1:{port}", *extra),
        tmp_path / "sim.log",
        ENV,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/_sim/stats"), what="simulator")
    return sim, url


def start_exporter(tmp_path: Path, config: Path) -> tuple[Process, str]:
    """The console script serving `config` on a free port, once it is ready."""
    port = free_port()
    exporter = Process(
        exporter_command(
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={tmp_path / 'data'}",
        ),
        tmp_path / "exporter.log",
        ENV,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(base + "/-/ready"), what="exporter ready")
    except AssertionError:
        exporter.stop()
        raise
    return exporter, base


def write_config(tmp_path: Path, endpoint: str, trans_nos: list[str]) -> Path:
    tasks = "\n".join(f"  - {t}" for t in trans_nos)
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            api:
              endpoint: {endpoint}
              timeout: 2s
            tasks:
            """
        )
        + tasks
        + "\n",
        encoding="utf-8",
    )
    return path


def test_exporter_reports_the_simulators_truth(tmp_path: Path) -> None:
    sim, sim_url = start_simulator(tmp_path, "--tasks=30", "--seed=3")
    with sim:
        truth_tasks = requests.get(sim_url + "/_sim/tasks", timeout=5).json()["tasks"]
        trans_nos = [t["transNo"] for t in truth_tasks]
        config = write_config(tmp_path, sim_url, trans_nos)
        exporter, base = start_exporter(tmp_path, config)
        with exporter:
            stats_before = requests.get(sim_url + "/_sim/stats", timeout=5).json()
            assert stats_before["requests"] == 0, "nothing may call the API before the first scrape"
            text = requests.get(base + "/metrics", timeout=15).text
            parsed = parse_exposition(text)
            status_names = {1: "processing", 2: "successful", 3: "failed"}
            for task in truth_tasks:
                t = task["transNo"]
                expected = status_names[int(task["data"]["status"])]
                assert (
                    value(parsed, "cloudvod_concat_task_status", trans_no=t, status=expected) == 1
                )
                assert value(parsed, "cloudvod_concat_task_query_success", trans_no=t) == 1
                info = task["data"].get("videoInfo")
                if info:
                    assert value(parsed, "cloudvod_concat_video_size_bytes", trans_no=t) == float(
                        info["videoSize"]
                    )
                    assert value(
                        parsed, "cloudvod_concat_video_duration_seconds", trans_no=t
                    ) == float(info["videoDuration"])
            assert value(parsed, "cloudvod_concat_watched_tasks") == 30
            assert value(parsed, "cloudvod_concat_api_requests_total") == 30
            # a second scrape asks again about processing tasks only
            requests.get(base + "/metrics", timeout=15)
            stats = requests.get(sim_url + "/_sim/stats", timeout=5).json()
            processing = sum(1 for t in truth_tasks if int(t["data"]["status"]) == 1)
            assert stats["requests"] <= 30 + processing
            assert stats["throttled"] == 0
            assert requests.get(base + "/-/healthy", timeout=5).status_code == 200
            landing = requests.get(base + "/", timeout=5).text
            assert "Watched tasks" in landing and "30" in landing
            exporter.proc.send_signal(signal.SIGTERM)
            assert exporter.proc.wait(10) == 0
            assert "Traceback" not in exporter.output()


def test_demo_serves_every_required_metric(tmp_path: Path) -> None:
    from exporter import metrics

    port = free_port()
    with Process(
        exporter_command("--demo", f"--web.listen-address=127.0.0.1:{port}"),
        tmp_path / "demo.log",
    ) as demo:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(base + "/-/healthy"), what="demo")
        text = requests.get(base + "/metrics", timeout=15).text
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        for definition in metrics.ALL:
            if definition.type == "histogram":
                assert definition.name + "_count" in names
            else:
                assert definition.name in names, definition.name
        assert "Traceback" not in demo.output()


def test_sighup_and_reload_endpoint(tmp_path: Path) -> None:
    sim, sim_url = start_simulator(tmp_path, "--tasks=5")
    with sim:
        config = write_config(tmp_path, sim_url, ["sim000000", "sim000001"])
        exporter, base = start_exporter(tmp_path, config)
        with exporter:
            config.write_text(config.read_text() + "  - sim000002\n")
            os.kill(exporter.proc.pid, signal.SIGHUP)
            wait_until(
                lambda: "cloudvod_concat_watched_tasks 3.0" in requests.get(base + "/metrics").text,
                what="SIGHUP reload",
            )
            config.write_text("api: {endpoint: 42}\n")
            answer = requests.post(base + "/-/reload", timeout=5)
            assert answer.status_code == 500
            assert "api.endpoint" in answer.text
            text = requests.get(base + "/metrics", timeout=15).text
            assert "cloudvod_concat_watched_tasks 3.0" in text
            assert "cloudvod_concat_config_last_reload_successful 0.0" in text


def test_a_restart_or_a_kill_costs_no_request_and_keeps_the_data_age(tmp_path: Path) -> None:
    """Warm exporter, SIGTERM (then kill -9) and restart on the same --storage.path: every task
    shows at once with its original answer time, and the API is not asked again."""
    sim, sim_url = start_simulator(tmp_path, "--tasks=40", "--seed=5")
    with sim:
        truth = requests.get(sim_url + "/_sim/tasks", timeout=5).json()["tasks"]
        finals = [t["transNo"] for t in truth if int(t["data"]["status"]) != 1]
        config = write_config(tmp_path, sim_url, finals)
        exporter, base = start_exporter(tmp_path, config)
        with exporter:
            first = parse_exposition(requests.get(base + "/metrics", timeout=15).text)
        answered = {
            t: value(first, "cloudvod_concat_task_last_success_timestamp_seconds", trans_no=t)
            for t in finals
        }
        assert all(answered.values())
        # The first restart follows a SIGTERM; it is killed with SIGKILL, and the second
        # restart shows what the killed one left.
        for stop in ("sigkill", "sigterm"):
            before = requests.get(sim_url + "/_sim/stats", timeout=5).json()["requests"]
            exporter, base = start_exporter(tmp_path, config)
            with exporter:
                again = parse_exposition(requests.get(base + "/metrics", timeout=15).text)
                for t in finals:
                    stamp = "cloudvod_concat_task_last_success_timestamp_seconds"
                    assert value(again, stamp, trans_no=t) == answered[t]
                    assert value(again, "cloudvod_concat_task_query_success", trans_no=t) == 1
                    assert value(again, "cloudvod_concat_task_queried", trans_no=t) == 1
                assert value(again, "cloudvod_concat_api_requests_total") == 0
                assert value(again, "cloudvod_concat_storage_up", backend="sqlite") == 1
                if stop == "sigkill":
                    exporter.proc.send_signal(signal.SIGKILL)
                    exporter.proc.wait(10)
            after = requests.get(sim_url + "/_sim/stats", timeout=5).json()["requests"]
            assert after == before, stop
