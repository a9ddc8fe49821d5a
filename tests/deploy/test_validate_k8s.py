"""scripts/validate_k8s.py: the manifests render and pass the offline schema and reference checks,
and the validator does refuse what a cluster would refuse (or silently mis-wire)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.deploy.conftest import BATCH, K8S, VALIDATOR_PATH

BASE_KINDS = Counter({"ConfigMap": 1, "Service": 2, "Deployment": 2, "HorizontalPodAutoscaler": 1,
                      "PodDisruptionBudget": 1, "NetworkPolicy": 1})
BATCH_KINDS = Counter({"PersistentVolumeClaim": 1, "RayJob": 1})


def _newest(validator: ModuleType) -> str:
    return validator.available_versions()[-1]


@pytest.mark.parametrize("version", ["default", "newest"])
@pytest.mark.parametrize(("directory", "kinds"), [(K8S, BASE_KINDS), (BATCH, BATCH_KINDS)], ids=["base", "batch"])
def test_manifests_render_and_validate(validator: ModuleType, kubectl: str, directory: Path, kinds: Counter,
                                       version: str) -> None:
    version = validator.DEFAULT_KUBERNETES_VERSION if version == "default" else _newest(validator)
    report = validator.validate_directory(directory, kubectl, version)
    assert report.errors == []
    assert Counter(d["kind"] for d in report.documents) == kinds


def test_the_base_does_not_include_the_batch_job(base_docs: list[dict]) -> None:
    assert not [d for d in base_docs if d["kind"] in ("RayJob", "PersistentVolumeClaim")]


def test_cli_exits_zero_on_the_repository(kubectl: str) -> None:
    result = subprocess.run([sys.executable, str(VALIDATOR_PATH), "--kubectl", kubectl],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK ") == 2  # the base and the batch kustomization


# ---- it must fail on broken manifests ------------------------------------------------------

def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}: update the test"
        file.write_text(text.replace(old, new, 1))
    return mutate


BROKEN = {
    "unknown pod field": (
        _replace("api-deployment.yaml", "      enableServiceLinks: false", "      enableServiceLink: false"),
        "Deployment/cxr-api: spec.template.spec: Additional properties are not allowed ('enableServiceLink'"),
    "env value not a string": (
        _replace("gradcam-deployment.yaml", 'value: "2"', "value: 2"),
        "Deployment/cxr-gradcam: spec.template.spec.containers.0.env.2.value: 2 is not of type 'string'"),
    "probe on an undeclared port name": (
        _replace("api-deployment.yaml", "path: /health/ready\n              port: http",
                 "path: /health/ready\n              port: web"),
        "readinessProbe.httpGet.port 'web' is not a named port of the container"),
    "HPA aimed at a missing Deployment": (
        _replace("api-hpa.yaml", "    name: cxr-api\n  minReplicas", "    name: cxr-apj\n  minReplicas"),
        "scaleTargetRef Deployment/cxr-apj is not in the render"),
    "Service selecting nothing": (
        _replace("gradcam-service.yaml", "app.kubernetes.io/component: gradcam\n  ports",
                 "app.kubernetes.io/component: grad-cam\n  ports"),
        "Service/cxr-gradcam: spec.selector"),
    "NetworkPolicy admitting pods that do not exist": (
        _replace("gradcam-networkpolicy.yaml", "app.kubernetes.io/component: api", "app.kubernetes.io/component: web"),
        "ingress peer podSelector"),
    "required Secret missing": (
        _replace("api-deployment.yaml", "optional: true", "optional: false"),
        "env CXR_API_KEY needs Secret 'cxr-api-key', which is not in the render"),
    "mount without a volume": (
        _replace("gradcam-deployment.yaml", "        - name: tmp\n          emptyDir",
                 "        - name: scratch\n          emptyDir"),
        "volumeMount 'tmp' has no volume of that name"),
    "kustomize cannot render": (
        _replace("kustomization.yaml", "  - api-pdb.yaml\n", "  - api-pdb.yaml\n  - missing.yaml\n"),
        "kubectl kustomize failed"),
    "RayJob field misspelt": (
        _replace("batch/rayjob.yaml", "shutdownAfterJobFinishes:", "shutdownAfterJobFinish:"),
        "RayJob/cxr-batch-score: spec: Additional properties are not allowed ('shutdownAfterJobFinish'"),
    "RayJob rayStartParams not strings": (
        _replace("batch/rayjob.yaml", 'num-cpus: "0"', "num-cpus: 0"),
        "rayStartParams.num-cpus: 0 is not of type 'string'"),
    "RayJob pod template invalid": (
        _replace("batch/rayjob.yaml", "claimName: cxr-films", "claim: cxr-films"),
        "template.spec.volumes.0.persistentVolumeClaim: Additional properties are not allowed ('claim'"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_validator_reports_broken_manifests(validator: ModuleType, kubectl: str, tmp_path: Path, case: str) -> None:
    mutate, expected = BROKEN[case]
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    mutate(root)
    directory = root / "batch" if case.startswith("RayJob") else root
    report = validator.validate_directory(directory, kubectl)
    assert not report.ok
    assert any(expected in error for error in report.errors), report.errors


def test_cli_exits_non_zero_with_the_reason(kubectl: str, tmp_path: Path) -> None:
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    _replace("api-hpa.yaml", "averageUtilization: 70", "averageUtilization: seventy")(root)
    result = subprocess.run([sys.executable, str(VALIDATOR_PATH), "--kubectl", kubectl, str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "ERROR" in result.stderr and "averageUtilization" in result.stderr, result.stderr


def test_cli_reports_a_kubectl_that_cannot_run(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(VALIDATOR_PATH), "--kubectl", str(tmp_path / "no-kubectl")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "cannot run" in result.stderr and "no-kubectl" in result.stderr, result.stderr


def test_exits_two_when_no_kubectl_is_found(validator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECTL", raising=False)
    monkeypatch.setattr(validator.shutil, "which", lambda _name: None)
    monkeypatch.setattr(validator.sys, "executable", str(tmp_path / "python"))
    assert validator.find_kubectl() is None
    assert validator.main([]) == 2
    assert "kubectl not found" in capsys.readouterr().err


def test_unknown_kubernetes_version_is_a_setup_error(kubectl: str) -> None:
    result = subprocess.run([sys.executable, str(VALIDATOR_PATH), "--kubectl", kubectl, "--kubernetes-version", "1.2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no schemas for Kubernetes 1.2" in result.stderr
