"""deploy/k8s rendered offline (kubectl kustomize) and checked: schemas, probes, limits, scaling,
disruption budgets, migrations, configuration and the network policies' effect."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.render import (
    COMPONENTS,
    K8S,
    OVERLAYS,
    SERVICES,
    Pod,
    config_variables,
    connection_allowed,
    find,
    one,
    pods,
    render,
)
from tests.deploy.schemas import CUSTOM_RESOURCE_SCHEMAS

# The oldest Kubernetes still supported upstream when this was written, and the newest the
# validator ships schemas for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = {"dev": "cdp-dev", "prod": "cdp"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_for_its_schema(overlay, version):
    docs = render(overlay)
    assert len(docs) > 40
    for doc in docs:
        kind = f"{doc['apiVersion']}/{doc['kind']}"
        if kind in CUSTOM_RESOURCE_SCHEMAS:
            jsonschema.validate(doc, CUSTOM_RESOURCE_SCHEMAS[kind])
        else:
            # strict: unknown fields are errors, not silently dropped by the API server.
            kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE[overlay], f"{kind} {doc['metadata']['name']}"


def test_custom_resource_schemas_reject_what_the_operator_would():
    """Our CloudNativePG schemas are a subset of the operator's CRDs: at least they catch typos."""
    cluster = one(render("prod"), "Cluster", "cdp-postgres")
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["instance"] = broken["spec"].pop("instances")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CUSTOM_RESOURCE_SCHEMAS["postgresql.cnpg.io/v1/Cluster"])


def common_config(docs) -> dict[str, str]:
    return one(docs, "ConfigMap", "cdp-common")["data"]


def container_env(docs, container: dict) -> dict[str, object]:
    """Every variable a container gets: env entries and the keys of the ConfigMaps in envFrom."""
    variables: dict[str, object] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, "secrets are mounted key by key (env.valueFrom), never whole"
        variables.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        variables[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return variables


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("component", COMPONENTS)
def test_component_runs_with_grpc_probes_limits_grace_and_least_privilege(overlay, component):
    docs = render(overlay)
    deployment = one(docs, "Deployment", component)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    expected_port = int(config_variables(component)[f"CDP_{component.upper()}_GRPC_PORT"])
    assert grpc_port == expected_port

    # Native gRPC probes (grpc.health.v1): readiness on the overall status (SERVING only while
    # Postgres and NATS answer), liveness and startup on 'liveness' (SERVING while the process runs).
    assert container["readinessProbe"]["grpc"] == {"port": grpc_port}
    assert container["livenessProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}
    assert container["startupProbe"]["grpc"] == {"port": grpc_port, "service": "liveness"}

    # Requests and limits on every container, init containers included.
    for c in pod["containers"] + pod.get("initContainers", []):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{c['name']} lacks {bound}"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    one(docs, "ServiceAccount", pod["serviceAccountName"])

    # SIGTERM: preStop, then server.stop(grace), then the workers' last batch (up to the same
    # grace), then NATS drained: the kubelet must not SIGKILL before that.
    grace = float(container_env(docs, container)["CDP_SHUTDOWN_GRACE_SECONDS"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + 2 * grace

    # A Service, an HPA and a PDB for the Deployment.
    service = one(docs, "Service", component)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert grpc_port in [p["port"] for p in service["spec"]["ports"]]
    hpa = one(docs, "HorizontalPodAutoscaler", component)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": component}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(docs, "PodDisruptionBudget", component)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("component", COMPONENTS)
def test_migrations_run_as_a_job_with_the_schema_owner_and_pods_wait_for_them(overlay, component):
    docs = render(overlay)
    job = one(docs, "Job", f"{component}-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "-m", f"cdp_{component}", "migrate"]
    owner_url = container_env(docs, migrate)["CDP_DATABASE_URL"]
    assert owner_url == {"secretKeyRef": {"name": f"cdp-{component}-db-owner", "key": "url"}}
    assert {"cpu", "memory"} <= set(migrate["resources"]["limits"])

    pod = one(docs, "Deployment", component)["spec"]["template"]["spec"]
    (wait,) = pod["initContainers"]
    assert wait["command"][:5] == ["python", "-m", f"cdp_{component}", "migrate", "--wait"]
    app_url = {"secretKeyRef": {"name": f"cdp-{component}-db-app", "key": "url"}}
    assert container_env(docs, wait)["CDP_DATABASE_URL"] == app_url
    assert container_env(docs, pod["containers"][0])["CDP_DATABASE_URL"] == app_url
    # The running service never migrates by itself.
    assert container_env(docs, pod["containers"][0])["CDP_MIGRATE_ON_START"] == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("component", COMPONENTS)
def test_every_variable_is_one_the_component_reads_and_every_required_one_is_set(overlay, component):
    docs = render(overlay)
    known = config_variables(component)
    required = {name for name, default in known.items() if default == "(required)"}
    containers = [
        c
        for d in find(docs, "Deployment") + find(docs, "Job")
        for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])
        if c["image"].rsplit("/", 1)[-1].split(":")[0] in (f"cdp-{component}", component)
    ]
    assert len(containers) == 3  # the service, its init container, its migration Job
    for container in containers:
        variables = container_env(docs, container)
        unknown = set(variables) - set(known)
        assert not unknown, (
            f"{component}/{container['name']}: {sorted(unknown)} not in python -m cdp_{component} config"
        )
        missing = required - set(variables)
        assert not missing, (
            f"{component}/{container['name']} needs {sorted(missing)}: add them to "
            f"deploy/k8s/base/{component}/ (a secretKeyRef for secrets) and to deploy/make-secrets.py"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumer_settings_agree_across_components(overlay):
    docs = render(overlay)
    common = common_config(docs)
    partitions = int(common["CDP_PARTITIONS"])
    # Consumers scale up to one replica per partition; more would hold no partition.
    for service in ("identity", "profile"):
        assert one(docs, "HorizontalPodAutoscaler", service)["spec"]["maxReplicas"] <= partitions
    assert float(common["CDP_CONSUMER_ACK_WAIT_SECONDS"]) > float(common["CDP_CONSUMER_LEASE_SECONDS"])


def outside() -> Pod:
    return Pod("client", "<outside>", {})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_through_exactly_what_the_cdp_needs(overlay):
    docs = render(overlay)
    namespace = NAMESPACE[overlay]
    everything = pods(docs, namespace)
    gateway = everything["gateway"]
    postgres = next(p for p in everything.values() if p.labels.get("cdp-dependency") == "postgres")
    nats = next(p for p in everything.values() if p.labels.get("cdp-dependency") == "nats")
    monitoring = Pod("prometheus", "monitoring", {})
    stranger = Pod("other-app", namespace, {"app.kubernetes.io/name": "other"})
    allowed = connection_allowed

    # A default deny covers every pod of the namespace.
    deny = one(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    # Only the gateway takes traffic from outside.
    assert allowed(docs, outside(), gateway, 8080)
    assert allowed(docs, outside(), gateway, 50051)
    assert not allowed(docs, outside(), gateway, 9460)
    assert not allowed(docs, outside(), postgres, 5432)
    assert not allowed(docs, outside(), nats, 4222)
    for component in COMPONENTS:
        pod = everything[component]
        grpc_port = pod.ports["grpc"]
        if component != "gateway":
            assert not allowed(docs, outside(), pod, grpc_port), component
            assert not allowed(docs, stranger, pod, grpc_port), component
            # The gateway reaches every service; the services do not reach one another, except
            # campaign, which calls profile and segment, and profile (its bulk import) identity.
            assert allowed(docs, gateway, pod, grpc_port), component
            for other in SERVICES:
                if other != component:
                    expected = (component == "campaign" and other in ("profile", "segment")) or (
                        component == "profile" and other == "identity"
                    )
                    target = everything[other]
                    assert allowed(docs, pod, target, target.ports["grpc"]) == expected, (component, other)
            assert not allowed(docs, pod, gateway, 8080)
        # Every component reaches Postgres and NATS, and nothing else outside but campaign's
        # message providers (HTTPS, SMTP submission).
        assert allowed(docs, pod, postgres, 5432), component
        assert allowed(docs, pod, nats, 4222), component
        assert allowed(docs, pod, outside(), 443) == (component == "campaign"), component
        assert allowed(docs, pod, outside(), 587) == (component == "campaign"), component
        assert not allowed(docs, pod, outside(), 5432), component
        # Prometheus scrapes the metrics port, and only from the monitoring namespace.
        assert allowed(docs, monitoring, pod, pod.ports["metrics"]), component
        assert not allowed(docs, outside(), pod, pod.ports["metrics"]), component
        # The migration Job reaches Postgres.
        assert allowed(docs, everything[f"{component}-migrate"], postgres, 5432), component
    assert not allowed(docs, stranger, postgres, 5432)
    assert not allowed(docs, stranger, nats, 4222)


def test_prod_runs_postgres_as_a_cloudnativepg_cluster_with_the_cdp_roles():
    docs = render("prod")
    cluster = one(docs, "Cluster", "cdp-postgres")["spec"]
    assert cluster["instances"] == 3
    assert cluster["enableSuperuserAccess"] is False
    (ref,) = cluster["bootstrap"]["initdb"]["postInitApplicationSQLRefs"]["configMapRefs"]
    roles_sql = one(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
    assert roles_sql == (K8S / "base/db/roles.sql").read_text()
    # Every role's password comes from the same Secret the manifests read the URL from.
    managed = {r["name"]: r["passwordSecret"]["name"] for r in cluster["managed"]["roles"]}
    expected = {}
    for component in COMPONENTS:
        expected[f"cdp_{component}"] = f"cdp-{component}-db-owner"
        expected[f"cdp_{component}_app"] = f"cdp-{component}-db-app"
    assert managed == expected
    assert all(r["login"] and r["ensure"] == "present" for r in cluster["managed"]["roles"])
    roles_in_sql = set(re.findall(r"'cdp_' \|\| component( \|\| '_app')?", roles_sql))
    assert roles_in_sql == {"", " || '_app'"}
    # Continuous backup: a WAL archiver and a daily base backup.
    (plugin,) = cluster["plugins"]
    assert plugin["isWALArchiver"] is True
    store = one(docs, "ObjectStore", plugin["parameters"]["barmanObjectName"])
    assert store["spec"]["retentionPolicy"]
    backup = one(docs, "ScheduledBackup", "cdp-postgres-daily")["spec"]
    assert backup["cluster"]["name"] == "cdp-postgres" and backup["method"] == "plugin"
    # Streams replicated on the 3-server NATS cluster.
    assert common_config(docs)["CDP_STREAM_REPLICAS"] == "3"


def test_prod_runs_nats_from_the_official_chart_clustered_with_jetstream():
    values = yaml.safe_load((K8S / "overlays/prod/nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["pvc"]["enabled"] is True
    assert values["podDisruptionBudget"]["enabled"] is True
    # The release is named nats: its client Service is what cdp-common points at.
    assert common_config(render("prod"))["CDP_NATS_URL"] == "nats://nats:4222"
    assert "helm install nats nats/nats" in (K8S / "overlays/prod/nats-values.yaml").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_make_secrets_makes_every_secret_and_key_the_manifests_read(overlay):
    result = subprocess.run(
        [sys.executable, str(K8S.parent / "make-secrets.py"), overlay], capture_output=True, text=True, check=True
    )
    made = {s["metadata"]["name"]: s for s in json.loads(result.stdout)["items"]}
    again = json.loads(
        subprocess.run(
            [sys.executable, str(K8S.parent / "make-secrets.py"), overlay], capture_output=True, text=True
        ).stdout
    )
    assert made["cdp-identity-db-app"]["stringData"]["password"] != again["items"][1]["stringData"]["password"]

    referenced: set[tuple[str, str]] = set()

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                referenced.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for key, value in node.items():
                if key == "passwordSecret":
                    referenced.update({(value["name"], "username"), (value["name"], "password")})
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(list(render(overlay)))
    assert referenced, "the manifests reference secrets"
    for name, key in referenced - {("cdp-backup-s3", "ACCESS_KEY_ID"), ("cdp-backup-s3", "ACCESS_SECRET_KEY")}:
        assert name in made and key in made[name]["stringData"], f"{name}/{key}"
    # Each URL logs in as the role its Secret names, on this overlay's database endpoint.
    host = {"dev": "@postgres:5432/cdp", "prod": "@cdp-postgres-rw:5432/cdp"}[overlay]
    for component in COMPONENTS:
        for suffix, role in (("owner", f"cdp_{component}"), ("app", f"cdp_{component}_app")):
            data = made[f"cdp-{component}-db-{suffix}"]["stringData"]
            assert data["username"] == role
            assert data["url"].startswith(f"postgresql://{role}:{data['password']}{host}")
