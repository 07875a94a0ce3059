"""The Helm chart (helm/trackyard), linted and rendered by a real helm binary (pinned,
from a PyPI package: scripts/helm-tools), for the default values and the variants an
operator picks (external etcd, bundled etcd, existing Secrets, metrics, autoscaling, pod
network). Every rendered manifest is validated offline against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields fail) for the oldest, a middle and the newest
Kubernetes version it ships. Then what an operator relies on: no key material in ConfigMaps,
a config change rolls the pods, probes on /healthz and /readyz, a grace period that lets a
media node drain, typos in values refused, and each role's config loading with trackyard's
own strict loader.

The boot test (test_helm_boot.py) runs the rendered configuration as real processes.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import re
import subprocess
import typing

import kubernetes_validate
import pytest
import yaml

from support.helm import (CHART, KUBE_VERSION, NAMESPACE, component, container, find, helm_run, lint, one,
                          pod_spec, render, render_notes, require_helm, role_config_map, role_config_text,
                          template_args, workload)
from trackyard.config import Config, load_config

require_helm()

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion), the one helm renders for, newest.
VALIDATE_VERSIONS = ("1.25", KUBE_VERSION.rsplit(".", 1)[0], "1.37")
API_SECRET = "chart-test-secret-" + "x" * 30
ETCD_PASSWORD = "etcd-pass-" + "y" * 20
METRICS_PASSWORD = "metrics-pass-" + "z" * 20

EXTERNAL_ETCD = {
    "etcd": {
        "bundled": {"enabled": False},
        "external": {
            "endpoints": ["https://etcd-0.example.internal:2379", "https://etcd-1.example.internal:2379"],
            "auth": {"username": "trackyard", "password": ETCD_PASSWORD},
            "tls": {"secretName": "etcd-client-tls", "clientCertificate": True},
        },
    },
}
VARIANTS = {
    "defaults": {},
    "external-etcd": {**EXTERNAL_ETCD, "apiKeys": {"keys": {"prodkey": API_SECRET}}},
    "bundled-etcd-single": {"etcd": {"bundled": {"enabled": True, "replicas": 1, "persistence": {"enabled": False}}},
                            "apiKeys": {"keys": {"k1": API_SECRET, "k2": API_SECRET + "2"}}},
    "existing-secrets": {
        "apiKeys": {"existingSecret": "my-trackyard-keys", "secretKey": "livekit-keys"},
        "etcd": {"bundled": {"enabled": False},
                 "external": {"endpoints": ["etcd.db.svc:2379"],
                              "auth": {"existingSecret": "my-etcd-auth", "usernameKey": "user", "passwordKey": "pass"}}},
    },
    "metrics-hpa-lb": {
        "apiKeys": {"keys": {"k": API_SECRET}},
        "metrics": {"scrapeAnnotations": True, "basicAuth": {"username": "prometheus", "password": METRICS_PASSWORD},
                    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"}},
        "control": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
                    "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
                    "ingress": {"enabled": True, "className": "nginx", "hosts": ["rtc.example.com"],
                                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                                "tls": [{"secretName": "rtc-tls", "hosts": ["rtc.example.com"]}]}},
    },
    "pod-network-fixed-ip": {
        "apiKeys": {"keys": {"k": API_SECRET}},
        "media": {"hostNetwork": False, "nodeIP": "203.0.113.7", "preStopSleepSeconds": 10,
                  "config": {"rtc": {"udp_port": 40000}, "node": {"drain_timeout": 300, "capacity": {"max_rooms": 50}}},
                  "nodeSelector": {"trackyard.io/media": "true"},
                  "tolerations": [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}]},
        "config": {"room": {"empty_timeout": 60}, "limit": {"max_api_request_body_size": 20971520}},
    },
    # null removes a default in helm: templates must cope (a known failure of other SFU charts)
    "nulls": {"control": {"podAnnotations": None, "config": None, "nodeSelector": None},
              "media": {"resources": None, "podLabels": None}, "config": {"logging": None}, "extraEnv": None},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(values) for name, values in VARIANTS.items()}


def each_variant():
    return pytest.mark.parametrize("variant", list(VARIANTS))


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def secret_data(docs: list[dict], name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", name)["data"].items()}


# ---------------------------------------------------------------- helm lint, Kubernetes schemas


@each_variant()
def test_helm_lint_strict_passes(variant):
    result = lint(VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@each_variant()
def test_every_manifest_is_valid_kubernetes(variant, rendered):
    docs = rendered[variant]
    checked = []
    skipped = []
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            skipped.append(doc["kind"])  # a CRD: kubernetes-validate has no schema; test_service_monitor checks it
            continue
        for version in VALIDATE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on any error
        checked.append(doc["kind"])
    assert {"Deployment", "DaemonSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= set(checked)
    assert set(skipped) <= {"ServiceMonitor"}


def test_the_validator_is_strict(rendered):
    """The schema check above can fail: an unknown field in a rendered pod spec is caught."""
    daemonset = copy.deepcopy(one(rendered["defaults"], "DaemonSet"))
    daemonset["spec"]["template"]["spec"]["hostNetworking"] = True  # typo of hostNetwork
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, VALIDATE_VERSIONS[1], strict=True)


def test_what_each_variant_renders(rendered):
    kinds = {name: sorted(d["kind"] for d in docs) for name, docs in rendered.items()}
    assert kinds["defaults"].count("StatefulSet") == 1 and "Secret" in kinds["defaults"]
    assert "StatefulSet" not in kinds["external-etcd"]
    assert "Secret" not in kinds["existing-secrets"], "both secrets come from the user"
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "Ingress"} <= set(kinds["metrics-hpa-lb"])
    assert not {"HorizontalPodAutoscaler", "ServiceMonitor", "Ingress"} & set(kinds["defaults"])


# ---------------------------------------------------------------- the config each role runs with


def pod_env_for_loading(docs: list[dict], role: str) -> dict[str, str]:
    """The environment trackyard's loader sees in a pod (secrets resolved where rendered)."""
    env = {}
    for name, entry in env_of(container(docs, role)).items():
        if "value" in entry:
            env[name] = re.sub(r"\$\((HOST_IP|POD_IP)\)", "10.0.0.5", entry["value"])
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            found = find(docs, "Secret", ref["name"])
            env[name] = secret_data(docs, ref["name"])[ref["key"]] if found else f"user-secret-{ref['key']}"
        else:
            env[name] = "10.0.0.5"  # fieldRef status.hostIP / status.podIP
    return env


@each_variant()
@pytest.mark.parametrize("role", ["control", "media"])
def test_role_config_loads_with_trackyards_strict_loader(variant, role, rendered, tmp_path):
    docs = rendered[variant]
    text = role_config_text(docs, role)
    raw = yaml.safe_load(text)
    etcd = raw["etcd"]
    for key in ("ca_file", "cert_file", "key_file"):  # files the pod mounts: check the mount, load from tmp
        if key in etcd:
            mount = next(m for m in container(docs, role)["volumeMounts"] if etcd[key].startswith(m["mountPath"] + "/"))
            volume = next(v for v in pod_spec(docs, role)["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == "etcd-client-tls"
            (tmp_path / key).write_text("PEM")
            text = text.replace(etcd[key], str(tmp_path / key))
    env = pod_env_for_loading(docs, role)
    if env["LIVEKIT_KEYS"].startswith("user-secret-"):
        env["LIVEKIT_KEYS"] = f"userkey: {API_SECRET}"
    cfg = load_config(body=text, env=env, role=role)
    assert cfg.node.role == role and cfg.etcd.enabled
    assert cfg.keys, "LIVEKIT_KEYS gives the node its keys"
    if role == "media":
        values = VARIANTS[variant].get("media", {})
        expected_ip = values.get("nodeIP", "10.0.0.5")
        assert cfg.rtc.node_ip == expected_ip
        assert cfg.node.grpc_address == f"10.0.0.5:{cfg.node.grpc_port}"
    if variant == "external-etcd":
        assert cfg.etcd.endpoints == EXTERNAL_ETCD["etcd"]["external"]["endpoints"]
        assert (cfg.etcd.username, cfg.etcd.password) == ("trackyard", ETCD_PASSWORD)
    if variant == "metrics-hpa-lb":
        assert (cfg.metrics.username, cfg.metrics.password) == ("prometheus", METRICS_PASSWORD)
    if variant == "pod-network-fixed-ip":
        assert cfg.limit.max_api_request_body_size == 20971520  # a large int survives helm's floats
        assert cfg.room.empty_timeout == 60
        assert (cfg.rtc.udp_port, cfg.node.drain_timeout, cfg.node.capacity.max_rooms) == (
            (40000, 300, 50) if role == "media" else (7882, 60, 0))


def test_bundled_etcd_is_the_nodes_endpoint(rendered):
    docs = rendered["defaults"]
    statefulset = one(docs, "StatefulSet")
    client = one(docs, "Service", statefulset["metadata"]["name"])
    for role in ("control", "media"):
        etcd = yaml.safe_load(role_config_text(docs, role))["etcd"]
        assert etcd["endpoints"] == [f"http://{client['metadata']['name']}.{NAMESPACE}.svc:2379"]
    assert client["spec"]["selector"] == statefulset["spec"]["template"]["metadata"]["labels"]
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    initial = next(a for a in args if a.startswith("--initial-cluster="))
    assert initial.count("=http://") == statefulset["spec"]["replicas"] == 3


def test_bundled_etcd_flags_are_etcd_flags(rendered):
    """Every flag the StatefulSet passes is one the etcd binary knows (Debian's etcd 3.4, the
    tests' etcd; the image is 3.5, whose flags are a superset of these)."""
    from support.etcd import ETCD_BINARY, etcd_available

    if not etcd_available():
        pytest.skip("no etcd binary (scripts/bootstrap --tests installs it)")
    help_text = subprocess.run([ETCD_BINARY, "--help"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", help_text.stdout + help_text.stderr, re.M))
    args = one(rendered["defaults"], "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = {a.split("=", 1)[0] for a in args}
    assert len(known) > 50 and flags <= known, flags - known


def test_generated_keys_are_a_working_livekit_keys_value(rendered):
    docs = rendered["defaults"]
    ref = env_of(container(docs, "control"))["LIVEKIT_KEYS"]["valueFrom"]["secretKeyRef"]
    keys_text = secret_data(docs, ref["name"])[ref["key"]]
    cfg = load_config(body=role_config_text(docs, "control"), env={"LIVEKIT_KEYS": keys_text})
    [(key, secret)] = cfg.keys.items()
    assert key.startswith("API") and len(secret) >= 32


# ---------------------------------------------------------------- secrets stay out of ConfigMaps


@each_variant()
def test_no_key_material_in_any_config_map_or_plain_env(variant, rendered):
    docs = rendered[variant]
    secrets = [API_SECRET, ETCD_PASSWORD, METRICS_PASSWORD]
    for secret in find(docs, "Secret"):
        secrets += [s for v in secret_data(docs, secret["metadata"]["name"]).values() for s in re.split(r"[\s:\"]+", v)
                    if len(s) >= 20]
    for cm in find(docs, "ConfigMap"):
        text = json.dumps(cm)
        for secret in secrets:
            assert secret not in text, f"secret material in ConfigMap {cm['metadata']['name']}"
        raw = yaml.safe_load(cm["data"]["config.yaml"])
        assert not {"keys", "key_file"} & set(raw)
        assert not {"username", "password"} & set(raw["etcd"])
    for role in ("control", "media"):
        plain = json.dumps([e for e in container(docs, role).get("env", []) if "value" in e])
        assert not any(secret in plain for secret in secrets)
        env = env_of(container(docs, role))
        assert "secretKeyRef" in env["LIVEKIT_KEYS"]["valueFrom"]


def test_configured_secrets_are_in_the_chart_secret(rendered):
    docs = rendered["external-etcd"]
    data = secret_data(docs, one(docs, "Secret")["metadata"]["name"])
    assert yaml.safe_load(data["keys"]) == {"prodkey": API_SECRET}
    assert (data["username"], data["password"]) == ("trackyard", ETCD_PASSWORD)
    env = env_of(container(docs, "media"))
    assert env["TRACKYARD_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": one(docs, "Secret")["metadata"]["name"], "key": "password"}


def test_existing_secrets_are_referenced_not_created(rendered):
    docs = rendered["existing-secrets"]
    for role in ("control", "media"):
        env = env_of(container(docs, role))
        assert env["LIVEKIT_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "my-trackyard-keys", "key": "livekit-keys"}
        assert env["TRACKYARD_ETCD_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "my-etcd-auth", "key": "user"}
        assert env["TRACKYARD_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-etcd-auth", "key": "pass"}


# ---------------------------------------------------------------- config changes roll the pods


def checksums(docs: list[dict]) -> dict[str, str]:
    return {role: workload(docs, role)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for role in ("control", "media")}


def test_config_checksum_follows_the_config(rendered):
    base = checksums(rendered["defaults"])
    assert checksums(render({})) == base, "same values, same checksum (no rollout)"
    shared = checksums(render({"config": {"room": {"empty_timeout": 120}}}))
    assert shared["control"] != base["control"] and shared["media"] != base["media"]
    media_only = checksums(render({"media": {"config": {"node": {"capacity": {"max_rooms": 10}}}}}))
    assert media_only["media"] != base["media"] and media_only["control"] == base["control"]
    etcd = checksums(render({"etcd": {"prefix": "/other/"}}))
    assert etcd["control"] != base["control"] and etcd["media"] != base["media"]
    for role in ("control", "media"):  # the annotation is the mounted ConfigMap's content hash
        text = role_config_text(rendered["defaults"], role)
        assert base[role] == hashlib.sha256(text.rstrip("\n").encode()).hexdigest()


# ---------------------------------------------------------------- probes, ports, drain


@each_variant()
@pytest.mark.parametrize("role", ["control", "media"])
def test_probes_are_healthz_and_readyz_on_the_http_port(variant, role, rendered):
    docs = rendered[variant]
    c = container(docs, role)
    port = yaml.safe_load(role_config_text(docs, role))["port"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    dial_timeout = yaml.safe_load(role_config_text(docs, role))["etcd"]["dial_timeout"]
    assert c["readinessProbe"]["timeoutSeconds"] > dial_timeout, "/readyz asks etcd within dial_timeout"
    assert c["command"] == ["trackyard", "server", "--config", "/etc/trackyard/config.yaml", "--role", role]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/trackyard"
    assert role_config_map(docs, role)["metadata"]["name"].endswith(f"-{role}")


@each_variant()
def test_media_grace_period_covers_the_drain(variant, rendered):
    docs = rendered[variant]
    spec = pod_spec(docs, "media")
    drain = yaml.safe_load(role_config_text(docs, "media"))["node"]["drain_timeout"]
    pre_stop = VARIANTS[variant].get("media", {}).get("preStopSleepSeconds", 0)
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain
    lifecycle = container(docs, "media").get("lifecycle")
    assert (lifecycle["preStop"]["exec"]["command"] == ["sleep", str(pre_stop)]) if pre_stop else lifecycle is None
    control = container(docs, "control")
    assert control["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"], "LB deregistration before SIGTERM"


def test_grace_period_shorter_than_the_drain_is_refused():
    # a template `fail`: `helm lint` only logs those, `helm template` / `install` stop
    result = helm_run(template_args(), {"media": {"terminationGracePeriodSeconds": 30},
                                        "config": {"node": {"drain_timeout": 60}}})
    assert result.returncode != 0 and "terminationGracePeriodSeconds (30)" in result.stdout + result.stderr
    spec = pod_spec(render({"config": {"node": {"drain_timeout": 600}}}), "media")
    assert spec["terminationGracePeriodSeconds"] >= 600


def test_media_pods_use_the_hosts_network_and_ports(rendered):
    docs = rendered["defaults"]
    daemonset = one(docs, "DaemonSet")
    spec = pod_spec(docs, "media")
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "maxSurge" not in daemonset["spec"]["updateStrategy"]["rollingUpdate"], "ports are the host's"
    rtc = yaml.safe_load(role_config_text(docs, "media"))["rtc"]
    ports = {p["name"]: p for p in container(docs, "media")["ports"]}
    assert (ports["rtc-udp"]["containerPort"], ports["rtc-udp"]["protocol"]) == (rtc["udp_port"], "UDP")
    assert (ports["rtc-tcp"]["containerPort"], ports["rtc-tcp"]["protocol"]) == (rtc["tcp_port"], "TCP")
    assert not any("hostPort" in p for p in ports.values()), "hostNetwork needs no hostPort"
    env = env_of(container(docs, "media"))
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["NODE_IP"]["value"] == "$(HOST_IP)"
    control = pod_spec(docs, "control")
    assert not control.get("hostNetwork") and "NODE_IP" not in env_of(container(docs, "control"))


def test_media_on_the_pod_network_gets_host_ports(rendered):
    docs = rendered["pod-network-fixed-ip"]
    spec = pod_spec(docs, "media")
    assert "hostNetwork" not in spec
    ports = {p["name"]: p for p in container(docs, "media")["ports"]}
    assert ports["rtc-udp"]["hostPort"] == ports["rtc-udp"]["containerPort"] == 40000
    assert "hostPort" not in ports["grpc"] and "hostPort" not in ports["http"]
    env = env_of(container(docs, "media"))
    assert env["NODE_IP"]["value"] == "203.0.113.7"
    assert env["TRACKYARD_GRPC_ADDRESS"]["value"] == "$(POD_IP):7890"
    assert spec["nodeSelector"] == {"trackyard.io/media": "true"} and spec["tolerations"][0]["key"] == "media"


def test_interfaces_mode_advertises_without_node_ip():
    docs = render({"media": {"nodeIP": "interfaces"}})
    assert "NODE_IP" not in env_of(container(docs, "media"))
    for result in (lint({"media": {"nodeIP": "interfaces", "hostNetwork": False}}),
                   helm_run(template_args(), {"media": {"nodeIP": "interfaces", "hostNetwork": False}})):
        assert result.returncode != 0 and "media.hostNetwork" in result.stdout + result.stderr


# ---------------------------------------------------------------- disruption budgets, autoscaling, metrics


@each_variant()
def test_disruption_budgets_select_their_pods(variant, rendered):
    docs = rendered[variant]
    budgets = {component(p): p for p in find(docs, "PodDisruptionBudget")}
    assert {"control", "media"} <= set(budgets)
    for role in ("control", "media"):
        labels = workload(docs, role)["spec"]["template"]["metadata"]["labels"]
        selector = budgets[role]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert budgets[role]["spec"]["maxUnavailable"] == 1
    if "etcd" in budgets:
        assert budgets["etcd"]["spec"]["maxUnavailable"] == 1  # 3 members: keep the quorum


def test_autoscaling_owns_the_replica_count(rendered):
    docs = rendered["metrics-hpa-lb"]
    deployment = workload(docs, "control")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert workload(rendered["defaults"], "control")["spec"]["replicas"] == 2


def test_service_type_and_annotations_are_configurable(rendered):
    docs = rendered["metrics-hpa-lb"]
    service = one([s for s in find(docs, "Service") if component(s) == "control"], "Service")
    assert service["spec"]["type"] == "LoadBalancer" and service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    ingress = one(docs, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}


def test_service_monitor(rendered):
    """Skipped by the schema check (a CRD): its selection is checked here instead."""
    docs = rendered["metrics-hpa-lb"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    selector = monitor["spec"]["selector"]
    [expression] = selector["matchExpressions"]
    selected = [s for s in find(docs, "Service")
                if selector["matchLabels"].items() <= s["metadata"]["labels"].items()
                and s["metadata"]["labels"][expression["key"]] in expression["values"]]
    assert sorted(component(s) for s in selected) == ["control", "media"]
    for service in selected:
        assert "http" in [p["name"] for p in service["spec"]["ports"]]
        role = component(service)
        assert service["spec"]["selector"].items() <= workload(docs, role)["spec"]["template"]["metadata"]["labels"].items()
    secret = one(docs, "Secret")["metadata"]["name"]
    assert endpoint["basicAuth"] == {"username": {"name": secret, "key": "metrics-username"},
                                     "password": {"name": secret, "key": "metrics-password"}}
    assert secret_data(docs, secret)["metrics-password"] == METRICS_PASSWORD
    annotations = workload(docs, "media")["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/path"], annotations["prometheus.io/port"]) == ("/metrics", "7880")


# ---------------------------------------------------------------- the values schema


@pytest.mark.parametrize("values, words", [
    ({"config": {"room": {"emtpy_timeout": 5}}}, "emtpy_timeout"),
    ({"control": {"replcas": 3}}, "replcas"),
    ({"media": {"nodeIP": "hostip"}}, "media.nodeIP"),
    ({"media": {"hostNetwork": "yes"}}, "media.hostNetwork"),
    ({"config": {"port": 70000}}, "config.port"),
    ({"config": {"keys": {"a": "b"}}}, "keys"),            # keys belong in apiKeys (a Secret)
    ({"etcd": {"external": {"endpoints": ["etcd:2379/x"]}}}, "etcd.external.endpoints"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
])
def test_schema_rejects_typos_and_bad_values(values, words):
    for result in (lint(values), helm_run(template_args(), values)):
        assert result.returncode != 0
        assert words in result.stdout + result.stderr, result.stdout + result.stderr


def test_external_etcd_needs_endpoints():
    for result in (lint({"etcd": {"bundled": {"enabled": False}}}),
                   helm_run(template_args(), {"etcd": {"bundled": {"enabled": False}}})):
        assert result.returncode != 0 and "etcd.external.endpoints" in result.stdout + result.stderr


CHART_OWNED = {"keys", "key_file", "development", "etcd", "node.role", "node.id", "rtc.node_ip", "node.grpc_address",
               "metrics.username", "metrics.password"}


def config_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        group = f.metadata.get("group")
        name = f"{prefix}{group + '.' if group else ''}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= config_keys(hints[f.name], name + ".")
        else:
            keys.add(name)
    return keys


def schema_keys(schema: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, sub in schema["properties"].items():
        if "properties" in sub:
            keys |= schema_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_values_schema_config_matches_trackyards_config():
    """`config` in values.schema.json is trackyard's config minus the keys the chart sets:
    a key trackyard learns must be added to the schema, and the schema knows no other."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    trackyard = {k for k in config_keys(Config) if not any(k == o or k.startswith(o + ".") for o in CHART_OWNED)}
    for section in ("config", "control", "media"):
        sub = schema["properties"][section]
        sub = sub if section == "config" else sub["properties"]["config"]
        assert sub["additionalProperties"] is False
        assert schema_keys(sub) == trackyard


# ---------------------------------------------------------------- NOTES.txt


@each_variant()
def test_notes_render(variant):
    notes = render_notes(VARIANTS[variant])
    assert "UDP " in notes and "docs/deploy.md" in notes


def test_notes_tell_which_ports_to_open():
    notes = render_notes({"media": {"config": {"rtc": {"udp_port": 40000, "tcp_port": 40001}}}})
    assert "UDP 40000" in notes and "TCP 40001" in notes and "TCP 7890" in notes
    assert "get secret ty-trackyard" in notes
    notes = render_notes(VARIANTS["existing-secrets"])
    assert "my-trackyard-keys" in notes and "etcd.db.svc:2379" in notes
