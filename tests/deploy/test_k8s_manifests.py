"""The Kubernetes manifests agree with the images (Dockerfile), docker-compose.yml, the apps' routes and
settings, and benchmarks/RESULTS.md; the sidecar is closed to all but the API; the batch RayJob runs
the batch CLI on the API image with the films' volume mounted."""

from __future__ import annotations

import re
import tomllib
from pathlib import PurePosixPath
from types import ModuleType
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO
from tests.deploy.conftest import Stage, container_port, deployment_of, only

API_LABELS = {"app.kubernetes.io/name": "chest-xray-classification", "app.kubernetes.io/component": "api"}
GRADCAM_LABELS = {"app.kubernetes.io/name": "chest-xray-classification", "app.kubernetes.io/component": "gradcam"}
BATCH_COMMAND = "python -m app.batch --input /data/films --output /data/out/scores.parquet --engine ray --address auto"


def _image_name(image: str) -> str:
    """chest-xray-classification-api:latest -> chest-xray-classification-api (tag or digest dropped)."""
    image = image.split("@")[0]
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def _container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _pod_templates(validator: ModuleType, documents: list[dict]) -> list[tuple[str, dict]]:
    return [(f"{validator.name_of(d)} {where}", template)
            for d in documents for where, template in validator.pod_templates(d)]


def _api_config(base_docs: list[dict]) -> dict[str, str]:
    """The API's environment from its ConfigMap (the generated name, as the Deployment refers to it)."""
    refs = [source["configMapRef"]["name"] for source in _container(deployment_of(base_docs, "api"))["envFrom"]]
    assert len(refs) == 1
    return only(base_docs, "ConfigMap", refs[0])["data"]


def _compose_container_port(service: dict) -> int:
    if "ports" in service:
        (mapping,) = service["ports"]
        return int(str(mapping).rsplit(":", 1)[-1].split("/")[0])
    (port,) = service["expose"]
    return int(port)


# ---- images, ports, probes -------------------------------------------------------------------

@pytest.mark.parametrize(("component", "target", "port_env"), [("api", "api", "CXR_PORT"),
                                                                 ("gradcam", "gradcam", "CXR_SIDECAR_PORT")])
def test_images_and_ports_agree_with_dockerfile_and_compose(
        base_docs: list[dict], dockerfile: dict[str, Stage], compose: dict, component: str, target: str,
        port_env: str) -> None:
    container = _container(deployment_of(base_docs, component))
    service = compose["services"][component]
    stage = dockerfile[target]
    assert service["build"]["target"] == target
    assert _image_name(container["image"]) == _image_name(service["image"])

    (declared,) = container["ports"]
    port = declared["containerPort"]
    assert stage.expose == [port], f"Dockerfile target {target} EXPOSEs {stage.expose}, the Deployment {port}"
    assert int(stage.env[port_env]) == port, f"the image binds {port_env}={stage.env[port_env]}"
    assert _compose_container_port(service) == port

    # the port the process binds, as the pod sets it (the ConfigMap for the API, env for the sidecar)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    bound = _api_config(base_docs)[port_env] if component == "api" else env[port_env]
    assert int(bound) == port

    # the Service of these pods reaches that port
    services = [s for s in base_docs if s["kind"] == "Service"
                and s["spec"]["selector"].items() <= deployment_of(base_docs, component)["spec"]["template"][
                    "metadata"]["labels"].items()]
    assert len(services) == 1
    (service_port,) = services[0]["spec"]["ports"]
    assert container_port(container, service_port["targetPort"]) == port


def test_the_commands_are_the_images(base_docs: list[dict]) -> None:
    # No command/args: the pods run the images' CMD, the same as docker compose (python -m app.api,
    # uvicorn app.sidecar.main:app), so the two cannot drift apart.
    for component in ("api", "gradcam"):
        container = _container(deployment_of(base_docs, component))
        assert "command" not in container and "args" not in container


def test_api_probes_use_the_health_routes(base_docs: list[dict]) -> None:
    from fastapi.testclient import TestClient

    from app.api.config import Settings
    from app.api.main import create_app

    container = _container(deployment_of(base_docs, "api"))
    port = container["ports"][0]["containerPort"]
    assert container["startupProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"]
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port(container, container[name]["httpGet"]["port"]) == port
    # The real app, its lifespan not run (no model loaded): the liveness path answers, the readiness
    # path says not ready. (/health would also ask the sidecar, and a slow sidecar must not unready the API.)
    client = TestClient(create_app(Settings()))
    assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200
    ready = client.get(container["readinessProbe"]["httpGet"]["path"])
    assert ready.status_code == 503 and ready.json()["model_loaded"] is False
    assert container["readinessProbe"]["httpGet"]["path"] != "/health"
    # the startup probe lets the model load for as long as the image's HEALTHCHECK start period (30 s) at least
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_sidecar_probes(base_docs: list[dict]) -> None:
    from fastapi.testclient import TestClient

    from app.sidecar.config import SidecarSettings
    from app.sidecar.main import create_app

    container = _container(deployment_of(base_docs, "gradcam"))
    port = container["ports"][0]["containerPort"]
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        handler = container[name].get("httpGet") or container[name]["tcpSocket"]
        assert container_port(container, handler["port"]) == port
    # readiness: the sidecar's /health, 503 until the model is loaded (here: never, no lifespan)
    health = TestClient(create_app(SidecarSettings())).get(container["readinessProbe"]["httpGet"]["path"])
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 90  # the image's HEALTHCHECK start period


# ---- settings ------------------------------------------------------------------------------

def test_sidecar_url_points_at_the_sidecar_service(base_docs: list[dict], compose: dict) -> None:
    config = _api_config(base_docs)
    url = urlsplit(config["CXR_GRADCAM_URL"])
    sidecar = only(base_docs, "Service", url.hostname)
    assert sidecar["spec"]["selector"].items() <= GRADCAM_LABELS.items()
    (service_port,) = sidecar["spec"]["ports"]
    assert url.scheme == "http" and url.port == service_port["port"]
    container = _container(deployment_of(base_docs, "gradcam"))
    # as in docker-compose.yml: the same sidecar port and the same timeout
    compose_env = compose["services"]["api"]["environment"]
    assert container_port(container, service_port["targetPort"]) == urlsplit(compose_env["CXR_GRADCAM_URL"]).port
    assert float(config["CXR_GRADCAM_TIMEOUT_S"]) == float(compose_env["CXR_GRADCAM_TIMEOUT_S"])


def test_api_config_is_made_of_real_settings(base_docs: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api.config import Settings

    config = _api_config(base_docs)
    unknown = {key for key in config if key.removeprefix("CXR_").lower() not in Settings.model_fields}
    assert not unknown, f"not fields of app/api/config.py (they would be ignored): {sorted(unknown)}"
    assert all(key.startswith("CXR_") for key in config)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the values pass the app's own validators
    assert settings.workers == 2 and settings.worker_count == 2  # what the memory request was sized for
    assert settings.host == "0.0.0.0"
    assert "CXR_API_KEY" not in config  # a secret, not configuration


def test_sidecar_env_is_made_of_real_settings(base_docs: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.sidecar.config import SidecarSettings

    env = {e["name"]: e["value"] for e in _container(deployment_of(base_docs, "gradcam"))["env"]}
    assert all(key.removeprefix("CXR_").lower() in SidecarSettings.model_fields for key in env), env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cpu_limit = _container(deployment_of(base_docs, "gradcam"))["resources"]["limits"]["cpu"]
    assert SidecarSettings().tf_threads == int(cpu_limit)  # TensorFlow's pool sized to the CPU limit


def test_api_key_is_an_optional_secret(base_docs: list[dict]) -> None:
    env = {e["name"]: e for e in _container(deployment_of(base_docs, "api"))["env"]}
    ref = env["CXR_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["name"] and ref["key"]
    assert not [d for d in base_docs if d["kind"] == "Secret"]  # never committed with a value


def test_no_service_links(validator: ModuleType, base_docs: list[dict], batch_docs: list[dict]) -> None:
    # Service links would inject <SERVICE>_PORT=tcp://... variables; with the CXR_ prefix a Service named
    # `cxr` or `cxr-sidecar` would set CXR_PORT or CXR_SIDECAR_PORT to a URL and the app would not start.
    for where, template in _pod_templates(validator, base_docs + batch_docs):
        assert template["spec"].get("enableServiceLinks") is False, where


# ---- security ------------------------------------------------------------------------------

def test_pods_run_as_the_image_user_locked_down(validator: ModuleType, base_docs: list[dict],
                                                batch_docs: list[dict], image_uid: int) -> None:
    templates = _pod_templates(validator, base_docs + batch_docs)
    assert len(templates) == 4  # api, gradcam, ray head, ray workers
    for where, template in templates:
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == image_uid, f"{where}: runAsUser {pod['runAsUser']}, the images' user is {image_uid}"
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert template["spec"].get("automountServiceAccountToken") is False, where
        for container in template["spec"]["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"], where


@pytest.mark.parametrize("component", ["api", "gradcam"])
def test_every_path_the_image_writes_is_a_volume(base_docs: list[dict], dockerfile: dict[str, Stage],
                                                  component: str) -> None:
    # readOnlyRootFilesystem: HOME and KERAS_HOME (and tempfile's /tmp, where the API's multiprocess
    # metrics and Starlette's spooled uploads go) must be on a writable volume.
    deployment = deployment_of(base_docs, component)
    mounts = [PurePosixPath(m["mountPath"]) for m in _container(deployment)["volumeMounts"] if not m.get("readOnly")]
    writable = {"/tmp", dockerfile[component].env["HOME"], dockerfile[component].env["KERAS_HOME"]}
    for path in map(PurePosixPath, writable):
        assert any(path == mount or mount in path.parents for mount in mounts), f"{path} is not on a volume"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in _container(deployment)["volumeMounts"]:
        assert "emptyDir" in volumes[mount["name"]]


# ---- resources -----------------------------------------------------------------------------

def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", quantity)
    assert match, quantity
    return float(match.group(1)) * units.get(match.group(2) or "", 1)


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_memory_is_sized_from_the_measured_rss(base_docs: list[dict]) -> None:
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    together = re.search(r"all API processes together (\d+) MB", results)
    sidecar = re.search(r"Peak RSS \(VmHWM\): API \d+ MB, sidecar (\d+) MB", results)
    assert together and sidecar, "benchmarks/RESULTS.md no longer states the API's and the sidecar's peak RSS"
    measured = {"api": int(together.group(1)) * 1e6, "gradcam": int(sidecar.group(1)) * 1e6}
    for component, peak in measured.items():
        resources = _container(deployment_of(base_docs, component))["resources"]
        request, limit = _bytes(resources["requests"]["memory"]), _bytes(resources["limits"]["memory"])
        assert peak <= request <= 1.5 * peak, f"{component}: request {request / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB"
        assert limit >= request
        assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])


def test_every_container_has_requests_and_limits(validator: ModuleType, base_docs: list[dict],
                                                 batch_docs: list[dict]) -> None:
    for where, template in _pod_templates(validator, base_docs + batch_docs):
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[kind].keys(), f"{where}: {kind}"
            assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"]), where


# ---- scaling and disruption ----------------------------------------------------------------

def test_hpa_scales_the_api_deployment_on_cpu(base_docs: list[dict]) -> None:
    hpa = only(base_docs, "HorizontalPodAutoscaler")
    api = deployment_of(base_docs, "api")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", api["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "requests" in _container(api)["resources"]  # Utilization is a share of the CPU request
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in api["spec"]  # the HPA owns the count; an apply must not reset it


def test_pdb_covers_the_api_pods_only(validator: ModuleType, base_docs: list[dict]) -> None:
    pdb = only(base_docs, "PodDisruptionBudget")
    selected = [d["metadata"]["name"] for d in base_docs if d["kind"] == "Deployment"
                and validator.selects(pdb["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    assert selected == [deployment_of(base_docs, "api")["metadata"]["name"]]
    hpa = only(base_docs, "HorizontalPodAutoscaler")
    # a drain may take a pod, and one API pod always stays (the HPA never goes below minReplicas)
    assert pdb["spec"].get("maxUnavailable", 0) < hpa["spec"]["minReplicas"]


# ---- the sidecar is reachable from the API pods alone --------------------------------------

def test_network_policy_admits_only_the_api_pods(validator: ModuleType, base_docs: list[dict]) -> None:
    policy = only(base_docs, "NetworkPolicy")
    api, gradcam = deployment_of(base_docs, "api"), deployment_of(base_docs, "gradcam")
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in (("api", api), ("gradcam", gradcam))}
    assert labels["api"].items() >= API_LABELS.items() and labels["gradcam"].items() >= GRADCAM_LABELS.items()

    spec = policy["spec"]
    assert validator.selects(spec["podSelector"], labels["gradcam"])
    assert not validator.selects(spec["podSelector"], labels["api"])
    assert "Ingress" in spec["policyTypes"]
    (rule,) = spec["ingress"]
    assert rule["from"], "a rule without `from` admits every source"
    for peer in rule["from"]:
        assert peer.keys() == {"podSelector"}, f"only pod peers of this namespace, not {sorted(peer)}"
        assert validator.selects(peer["podSelector"], labels["api"])
        assert not validator.selects(peer["podSelector"], labels["gradcam"])
        assert peer["podSelector"].get("matchLabels"), "an empty podSelector would admit every pod"
    sidecar_port = _container(gradcam)["ports"][0]["containerPort"]
    assert [(p["protocol"], p["port"]) for p in rule["ports"]] == [("TCP", sidecar_port)]


def test_sidecar_service_is_internal(base_docs: list[dict]) -> None:
    sidecar = only(base_docs, "Service", "cxr-gradcam")
    assert sidecar["spec"].get("type", "ClusterIP") == "ClusterIP"


# ---- batch on Ray --------------------------------------------------------------------------

def test_rayjob_runs_the_batch_cli_on_the_api_image(validator: ModuleType, batch_docs: list[dict],
                                                    compose: dict, dockerfile: dict[str, Stage]) -> None:
    job = only(batch_docs, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    assert " ".join(job["spec"]["entrypoint"].split()) == BATCH_COMMAND
    templates = _pod_templates(validator, batch_docs)
    assert len(templates) == 2  # the head and one worker group
    api_image = _image_name(compose["services"]["api"]["image"])
    for where, template in templates:
        for container in template["spec"]["containers"]:
            assert _image_name(container["image"]) == api_image, where
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            # the app is copied to WORKDIR/app, not installed: importable only with WORKDIR on the path
            assert env.get("PYTHONPATH") == dockerfile["api"].workdir, where
    workdir = PurePosixPath(dockerfile["api"].workdir)
    app_copies = [copy.split() for copy in dockerfile["api"].copies if copy.split()[0].rstrip("/") == "app"]
    assert [workdir / tokens[-1] for tokens in app_copies] == [workdir / "app"], dockerfile["api"].copies


def test_rayjob_mounts_the_films_claim_everywhere(validator: ModuleType, batch_docs: list[dict]) -> None:
    claim = only(batch_docs, "PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # the head and the workers on several nodes
    for where, template in _pod_templates(validator, batch_docs):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (container,) = template["spec"]["containers"]
        data = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
        assert len(data) == 1, f"{where}: /data (films in, scores out) is not mounted"
        assert volumes[data[0]["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"], where
    for path in ("/data/films", "/data/out/scores.parquet"):
        assert path in only(batch_docs, "RayJob")["spec"]["entrypoint"]


def test_rayjob_ray_version_matches_the_batch_extra(batch_docs: list[dict]) -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    pins = [re.fullmatch(r"ray(\[[^\]]*\])?==([\w.]+)", requirement.replace(" ", ""))
            for requirement in extras.get("batch", [])]
    pins = [pin for pin in pins if pin]
    if not pins:
        pytest.skip("pyproject.toml has no `batch` extra pinning ray yet")
    ray_version = only(batch_docs, "RayJob")["spec"]["rayClusterSpec"]["rayVersion"]
    assert ray_version == pins[0].group(2), "rayVersion must be the Ray that the image installs"
    extras_of_ray = set((pins[0].group(1) or "[]")[1:-1].split(","))
    assert extras_of_ray & {"default", "all"}, "RayJob submits through Ray's dashboard: the image needs ray[default]"
