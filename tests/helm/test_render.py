"""helm lint and helm template for every ci/*-values.yaml, and what each renders."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from prometheus_client import CollectorRegistry

from services.common.http import build_app
from services.common.settings import Settings, parse_host_port
from tests.helm.chart import (
    CHART,
    COMMANDS,
    COMPONENTS,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Manifests,
    container_environment,
    render,
    run_helm,
    values_file,
)

KUBERNETES_VERSION = "1.33"
# Custom resources: kubernetes-validate has no schema for them; we pin their API versions.
CUSTOM_RESOURCES = {
    "Certificate": "cert-manager.io/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "RabbitmqCluster": "rabbitmq.com/v1beta1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
}


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def test_there_are_four_scenarios() -> None:
    assert set(SCENARIOS) == {"minimal", "production", "smarthost", "external-broker"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    result = run_helm("lint", str(CHART), "--strict", "--values", str(values_file(scenario)))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_are_valid_kubernetes(scenario: str) -> None:
    validated = 0
    for document in render(scenario):
        kind = document["kind"]
        if kind in CUSTOM_RESOURCES:
            assert document["apiVersion"] == CUSTOM_RESOURCES[kind]
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{kind}/{document['metadata']['name']}: {where}: {error.message}")
        validated += 1
    assert validated >= 15


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_resource_is_labelled_and_namespaced(scenario: str) -> None:
    for document in render(scenario):
        metadata = document["metadata"]
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "helm.sh/chart" in labels
        assert metadata["namespace"] == NAMESPACE


def workload_kinds(manifests: Manifests) -> dict[str, set[str]]:
    return {kind: manifests.names(kind) for kind in sorted(manifests.kinds())}


def test_minimal_scenario() -> None:
    manifests = render("minimal")
    assert manifests.names("Deployment") == {name(c) for c in COMPONENTS}
    assert manifests.names("StatefulSet") == {name("rabbitmq")}
    assert manifests.names("Secret") == {name("rabbitmq")}
    assert name("rabbitmq") in manifests.names("Service")
    absent = {"HorizontalPodAutoscaler", "NetworkPolicy", "PersistentVolumeClaim"}
    assert absent.isdisjoint(manifests.kinds())
    assert set(CUSTOM_RESOURCES).isdisjoint(manifests.kinds())
    rabbitmq = manifests.get("ConfigMap", name("rabbitmq"))["data"]
    assert "rabbitmq_prometheus" in rabbitmq["enabled_plugins"]


def test_standalone_broker_runs_the_schedulers_it_is_given() -> None:
    """One Erlang scheduler by default, as the bench measures it; 0 leaves Erlang's own."""

    def erl_args(*extra: str) -> str | None:
        broker = render("minimal", *extra).get("StatefulSet", name("rabbitmq"))
        (container,) = broker["spec"]["template"]["spec"]["containers"]
        found = [e["value"] for e in container["env"] if e["name"].endswith("ADDITIONAL_ERL_ARGS")]
        assert len(found) <= 1
        return str(found[0]) if found else None

    assert erl_args() == "+S 1:1"
    assert erl_args("--set", "rabbitmq.standalone.schedulers=4") == "+S 4:4"
    assert erl_args("--set", "rabbitmq.standalone.schedulers=0") is None


def test_production_scenario() -> None:
    manifests = render("production")
    kinds = workload_kinds(manifests)
    assert "StatefulSet" not in kinds
    cluster = manifests.get("RabbitmqCluster", name("rabbitmq"))
    assert cluster["spec"]["replicas"] == 3
    assert "rabbitmq_prometheus" in cluster["spec"]["rabbitmq"]["additionalPlugins"]
    # KEDA scales delivery on the ready jobs of PREFIX.delivery; the HPA only the ingress.
    scaled = manifests.get("ScaledObject", name("delivery"))
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "prod.delivery"
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert scaled["spec"]["scaleTargetRef"]["name"] == name("delivery")
    auth = manifests.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {
        name("rabbitmq-default-user")
    }
    assert kinds["HorizontalPodAutoscaler"] == {name("smtp-ingress")}
    assert "replicas" not in manifests.deployment("delivery")["spec"]
    assert "replicas" not in manifests.deployment("smtp-ingress")["spec"]
    certificate = manifests.get("Certificate", name("tls"))
    assert certificate["spec"]["secretName"] == name("tls")
    assert certificate["spec"]["dnsNames"] == ["mx1.example.org", "smtp.example.org"]
    assert kinds["ServiceMonitor"] == {RELEASE, name("rabbitmq")}
    assert kinds["PrometheusRule"] == {RELEASE}
    dashboards = manifests.get("ConfigMap", name("dashboards"))
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {path.name for path in (CHART / "files" / "dashboards").glob("*.json")}
    assert set(dashboards["data"]) == shipped != set()
    assert kinds["NetworkPolicy"] == {name(c) for c in (*COMPONENTS, "rabbitmq")}
    broker = manifests.get("NetworkPolicy", name("rabbitmq"))["spec"]
    assert broker["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name("rabbitmq")}}
    amqp = [
        rule
        for rule in broker["ingress"]
        if rule.get("ports") == [{"port": 5672, "protocol": "TCP"}]
    ]
    clients = amqp[0]["from"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": list(COMPONENTS)} in (
        clients
    )
    claim = manifests.get("PersistentVolumeClaim", name("maildir"))
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    image = manifests.container("router")["image"]
    assert image.startswith("staffetta/staffetta@sha256:")


def test_smarthost_scenario() -> None:
    manifests = render("smarthost")
    assert manifests.names("HorizontalPodAutoscaler") == {name("delivery")}
    assert manifests.names("Secret") == {
        name("rabbitmq"),
        name("users"),
        name("smarthost"),
        name("redis"),
        name("admin"),
    }
    environment = container_environment(manifests, "delivery")
    assert environment["STAFFETTA_SMARTHOST"] == "smtp.provider.example:587"
    assert environment["STAFFETTA_SMARTHOST_TLS"] == "starttls"
    ingress = container_environment(manifests, "smtp-ingress")
    assert ingress["STAFFETTA_SUBMISSIONS_LISTEN"] == ""
    assert ingress["STAFFETTA_TRUSTED_NETWORKS"] == ""


def test_external_broker_scenario() -> None:
    manifests = render("external-broker")
    assert {"StatefulSet", "RabbitmqCluster", "PersistentVolumeClaim"}.isdisjoint(manifests.kinds())
    assert "Secret" not in manifests.kinds()  # URL and TLS come from existing Secrets
    pod = manifests.deployment("delivery")["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"claimName": "shared-maildir"}]
    policy = manifests.get("NetworkPolicy", name("router"))
    broker = [rule for rule in policy["spec"]["egress"] if rule["ports"][0]["port"] == 5671]
    assert broker == [
        {
            "ports": [{"port": 5671, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
        }
    ]
    ingress = manifests.get("NetworkPolicy", name("smtp-ingress"))["spec"]["ingress"]
    smtp = [rule for rule in ingress if {"port": "smtp", "protocol": "TCP"} in rule["ports"]]
    assert smtp[0]["from"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    service = manifests.get("Service", name("smtp"))
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def probe_paths() -> set[str]:
    app = build_app(CollectorRegistry(), lambda: True, "test")
    return {str(getattr(route, "path", "")) for route in app.routes}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ports_and_probes_match_the_code(scenario: str) -> None:
    manifests = render(scenario)
    paths = probe_paths()
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    defaults = Settings.model_fields
    http_default = parse_host_port(str(defaults["http_listen"].default)).port
    for component in COMPONENTS:
        container = manifests.container(component)
        environment = container_environment(manifests, component)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["http"] == http_default == int(environment["STAFFETTA_HTTP_LISTEN"][-4:])
        assert container["args"] == [COMMANDS[component]]
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")} <= (
            paths
        )
    ingress = manifests.container("smtp-ingress")
    environment = container_environment(manifests, "smtp-ingress")
    ports = {port["name"]: port["containerPort"] for port in ingress["ports"]}
    smtp_default = parse_host_port(str(defaults["smtp_listen"].default)).port
    submission_default = parse_host_port(str(defaults["submission_listen"].default)).port
    assert ports["smtp"] == smtp_default == _port(environment, "STAFFETTA_SMTP_LISTEN")
    assert ports["submission"] == submission_default
    assert ports["submission"] == _port(environment, "STAFFETTA_SUBMISSION_LISTEN")
    if environment["STAFFETTA_SUBMISSIONS_LISTEN"]:
        assert ports["submissions"] == 2465 == _port(environment, "STAFFETTA_SUBMISSIONS_LISTEN")
    else:
        assert "submissions" not in ports
    service = manifests.get("Service", name("smtp"))
    mapping = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert mapping["smtp"] == (25, "smtp")
    assert mapping["submission"] == (587, "submission")
    assert mapping.get("submissions", (465, "submissions")) == (465, "submissions")
    assert set(mapping) <= set(ports)


def _port(environment: dict[str, Any], key: str) -> int:
    return parse_host_port(str(environment[key])).port


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_meet_the_restricted_profile(scenario: str) -> None:
    manifests = render(scenario)
    workloads = manifests.of_kind("Deployment") + manifests.of_kind("StatefulSet")
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        # Service links would inject STAFFETTA_<SERVICE>_* variables: unknown settings.
        assert pod["enableServiceLinks"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsUser"] >= 10000
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_deployments_roll_on_config_changes(scenario: str) -> None:
    manifests = render(scenario)
    for component in COMPONENTS:
        template = manifests.deployment(component)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert len(annotations["checksum/config"]) == 64
        assert len(annotations["checksum/secret"]) == 64
        spread = template["spec"].get("topologySpreadConstraints", [])
        for constraint in spread:
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector["app.kubernetes.io/component"] == component
    changed = render("minimal", "--set", "config.maxRecipients=10")
    before = render("minimal")
    for component in COMPONENTS:
        checksum = "checksum/config"
        old = before.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        new = changed.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert old[checksum] != new[checksum]


def test_delivery_gets_the_longest_grace_period() -> None:
    manifests = render("minimal")
    grace = {
        component: manifests.deployment(component)["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        for component in COMPONENTS
    }
    # The contract: SIGTERM drains and exits within 30 s; delivery may sit in a DATA phase.
    assert all(seconds > 30 for seconds in grace.values())
    assert grace["delivery"] == max(grace.values()) > grace["router"]


def test_maildir_volume_only_with_local_domains() -> None:
    without = render("minimal").deployment("delivery")["spec"]["template"]["spec"]
    assert {v["name"] for v in without["volumes"]} == {"tmp"}
    local = render("minimal", "--set", "config.localDomains={example.org}")
    pod = local.deployment("delivery")["spec"]["template"]["spec"]
    claim = local.get("PersistentVolumeClaim", name("maildir"))
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert {"name": "maildir", "persistentVolumeClaim": {"claimName": name("maildir")}} in pod[
        "volumes"
    ]
    mounts = {m["name"]: m["mountPath"] for m in local.container("delivery")["volumeMounts"]}
    environment = container_environment(local, "delivery")
    assert mounts["maildir"] == environment["STAFFETTA_MAILDIR_ROOT"]
    for component in ("smtp-ingress", "router", "bounce"):
        assert "maildir" not in {m["name"] for m in local.container(component)["volumeMounts"]}


def test_notes_explain_a_first_mail_and_warn_about_rwo_maildir() -> None:
    result = run_helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--values",
        str(values_file("minimal")),
        "--set",
        "config.localDomains={example.org}",
    )
    notes = result.stdout.partition("NOTES:")[2]
    assert f"port-forward svc/{name('smtp')} 2525:25" in notes
    assert "swaks --server 127.0.0.1:2525" in notes
    assert "postmaster@example.org" in notes
    assert "ReadWriteMany" in notes  # two delivery replicas on a ReadWriteOnce claim


def test_ingress_keeps_accepting_while_it_leaves_the_load_balancer() -> None:
    manifests = render("production")
    ingress = manifests.container("smtp-ingress")
    assert ingress["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    grace = manifests.deployment("smtp-ingress")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert grace >= 5 + 30  # the sleep, then the contract's 30 s drain
    for component in ("router", "delivery", "bounce"):
        assert "lifecycle" not in manifests.container(component)
    disabled = render("production", "--set", "smtpIngress.preStopSleepSeconds=0")
    assert "lifecycle" not in disabled.container("smtp-ingress")


def test_secret_files_are_not_world_readable() -> None:
    for scenario, component in (
        ("production", "smtp-ingress"),
        ("production", "delivery"),
        ("smarthost", "delivery"),
    ):
        pod = render(scenario).deployment(component)["spec"]["template"]["spec"]
        secrets = [volume["secret"] for volume in pod["volumes"] if "secret" in volume]
        assert secrets
        assert all(secret["defaultMode"] == 0o440 for secret in secrets)
        assert pod["securityContext"]["fsGroup"] == 10001


def test_policy_files_of_the_ingress_are_mounted_0440_in_the_ingress_only() -> None:
    manifests = render("production")
    for component in COMPONENTS:
        pod = manifests.deployment(component)["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        policy = {
            key: volumes[key] for key in ("sender-logins", "sending-limits") if key in volumes
        }
        if component != "smtp-ingress":
            assert policy == {}
            continue
        assert {v["configMap"]["name"] for v in policy.values()} == {name("smtp-ingress-files")}
        assert all(v["configMap"]["defaultMode"] == 0o440 for v in policy.values())
    files = manifests.get("ConfigMap", name("smtp-ingress-files"))["data"]
    assert set(files) == {"sender-logins", "sending-limits"}
    # Not in the ConfigMap every service mounts.
    assert set(manifests.get("ConfigMap", name("files"))["data"]) == {"local-recipients", "aliases"}


def test_policy_file_changes_roll_the_ingress_only() -> None:
    def checksums(*extra: str) -> dict[str, str]:
        manifests = render("production", *extra)
        return {
            component: manifests.deployment(component)["spec"]["template"]["metadata"][
                "annotations"
            ]["checksum/config"]
            for component in COMPONENTS
        }

    before = checksums()
    after = checksums("--set", "sendingLimits.networks.10\\.20\\.0\\.0/16.hour=600")
    assert before["smtp-ingress"] != after["smtp-ingress"]
    assert all(before[c] == after[c] for c in ("router", "delivery", "bounce"))


def test_ingress_and_delivery_may_reach_redis() -> None:
    manifests = render("production")
    redis = {
        "ports": [{"port": 6379, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}],
    }
    for component in COMPONENTS:
        egress = manifests.get("NetworkPolicy", name(component))["spec"]["egress"]
        assert (redis in egress) == (component in ("smtp-ingress", "delivery"))


def test_standalone_broker_accepts_amqp_only_from_our_services() -> None:
    manifests = render("minimal", "--set", "networkPolicy.enabled=true")
    policy = manifests.get("NetworkPolicy", name("rabbitmq"))
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert set(rules) == {"amqp", "prometheus"}
    expressions = rules["amqp"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/instance", "operator": "In", "values": [RELEASE]} in (
        expressions
    )
    assert policy["spec"]["egress"] == []
    router = manifests.get("NetworkPolicy", name("router"))["spec"]["egress"]
    to_broker = [rule for rule in router if rule["ports"] == [{"port": 5672, "protocol": "TCP"}]]
    selector = to_broker[0]["to"][0]["podSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "rabbitmq"
