"""Fixtures for the Kubernetes manifests: the validator, the rendered base and batch kustomizations,
and what the Dockerfile and docker-compose.yml say about the images (ports, users, environment)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"
BATCH = K8S / "batch"
VALIDATOR_PATH = REPO / "scripts" / "validate_k8s.py"


def load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_k8s", VALIDATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_k8s", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def validator() -> ModuleType:
    return load_validator()


@pytest.fixture(scope="session")
def kubectl(validator: ModuleType) -> str:
    found = validator.find_kubectl()
    if found is None:
        pytest.skip("kubectl is not installed (nor $KUBECTL set): the manifests cannot be rendered here")
    return found


@pytest.fixture(scope="session")
def base_docs(validator: ModuleType, kubectl: str) -> list[dict]:
    return validator.render(K8S, kubectl)


@pytest.fixture(scope="session")
def batch_docs(validator: ModuleType, kubectl: str) -> list[dict]:
    return validator.render(BATCH, kubectl)


def only(documents: list[dict], kind: str, name: str | None = None) -> dict:
    """The one document of KIND (and NAME); fails when there is none or more than one."""
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def deployment_of(documents: list[dict], component: str) -> dict:
    found = [d for d in documents if d["kind"] == "Deployment"
             and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one Deployment of component {component}, found {len(found)}"
    return found[0]


def container_port(container: dict, port: int | str) -> int:
    """A probe's or a Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a named port of container {container['name']}"
    return named[port]


# ---- the Dockerfile ------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    parent: str
    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    cmd: str | None = None
    runs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    """Stages by name, each with its ENV, EXPOSE, USER, WORKDIR and CMD merged with its parent stage's."""
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"unnamed stage: {line}"
            parent, name = match.groups()
            stage = Stage(name, parent)
            if parent in stages:
                inherited = stages[parent]
                stage.env = dict(inherited.env)
                stage.expose = list(inherited.expose)
                stage.user, stage.workdir, stage.cmd = inherited.user, inherited.workdir, inherited.cmd
            stages[name] = stage
        elif stage is None:
            continue
        elif instruction == "ENV":
            # Comments inside a continued RUN are dropped by the join above; ENV has KEY=VALUE pairs.
            stage.env.update(part.split("=", 1) for part in shlex.split(rest) if "=" in part)
        elif instruction == "EXPOSE":
            stage.expose += [int(port.split("/")[0]) for port in rest.split()]
        elif instruction == "USER":
            stage.user = rest
        elif instruction == "WORKDIR":
            stage.workdir = rest
        elif instruction == "CMD":
            stage.cmd = rest
        elif instruction == "RUN":
            stage.runs.append(rest)
        elif instruction == "COPY":
            stage.copies.append(rest)
    return stages


@pytest.fixture(scope="session")
def dockerfile() -> dict[str, Stage]:
    return parse_dockerfile(REPO / "Dockerfile")


@pytest.fixture(scope="session")
def image_uid(dockerfile: dict[str, Stage]) -> int:
    """The uid of the images' user (`useradd --uid N ... cxr`, USER cxr)."""
    user = dockerfile["api"].user
    assert user and dockerfile["gradcam"].user == user
    for stage in dockerfile.values():
        for command in stage.runs:
            match = re.search(r"useradd\b.*--uid[= ](\d+)\b.*\b" + re.escape(user) + r"\s*$", command)
            if match:
                return int(match.group(1))
    raise AssertionError(f"no `useradd --uid N ... {user}` in the Dockerfile")


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())
