"""The Helm chart (helm/trackyard) rendered by a real, pinned helm binary, for tests.

``scripts/helm-tools`` (run by ``scripts/bootstrap --tests``) puts helm into ``.tools/``.
Every helm run gets a throw-away HOME/XDG directory and an empty kubeconfig, so nothing
reads or writes the user's helm state and nothing talks to a cluster.

    docs = render({"etcd": {"bundled": {"enabled": False}, ...}})   # list of manifests
    pod = pod_spec(docs, "DaemonSet")                                # its pod template spec
    lint({...}) / helm_run(["template", ...], values) for failures
    pod = local_pod(docs, "media", tmp, free_ports={7880: 41234, ...})  # the pod as a local process
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trackyard"
HELM = ROOT / ".tools" / "helm-v3.17.2" / "helm"
KUBE_VERSION = "1.31.0"    # what `helm template` renders for (Capabilities.KubeVersion)
RELEASE = "ty"
NAMESPACE = "rtc"


def helm_available() -> bool:
    return os.access(HELM, os.X_OK)


def require_helm() -> None:
    if not helm_available():  # fail loudly: the chart's acceptance tests need it
        raise RuntimeError(f"{HELM} is missing: run scripts/helm-tools (or scripts/bootstrap --tests)")


def helm_run(args: list[str], values: dict | None = None, *, chart: Path = CHART,
             timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``helm <args> <chart> [-f values.yaml]``; never raises on a helm error."""
    require_helm()
    with tempfile.TemporaryDirectory(prefix="ty-helm-") as home:
        kubeconfig = Path(home) / "kubeconfig"
        kubeconfig.write_text("")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "XDG_CACHE_HOME": home,
               "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home, "KUBECONFIG": str(kubeconfig)}
        argv = [str(HELM), *args, str(chart)]
        if values is not None:
            values_path = Path(home) / "values.yaml"
            values_path.write_text(yaml.safe_dump(values))
            argv += ["-f", str(values_path)]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def template_args(*extra: str) -> list[str]:
    return ["template", RELEASE, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *extra]


def render(values: dict | None = None, *extra: str) -> list[dict]:
    """Every manifest ``helm template`` renders, parsed; raises with helm's message on failure."""
    result = helm_run(template_args(*extra), values)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def lint(values: dict | None = None) -> subprocess.CompletedProcess:
    return helm_run(["lint", "--strict", "--namespace", NAMESPACE], values)


def render_notes(values: dict | None = None) -> str:
    """NOTES.txt as `helm install` would print it. helm 3 renders NOTES only for a real (or
    server dry-run) install, so a copy of the chart wraps it in a template of its own."""
    with tempfile.TemporaryDirectory(prefix="ty-chart-") as tmp:
        chart = Path(tmp) / "trackyard"
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "NOTES.txt").unlink()
        (chart / "templates" / "notes.yaml").write_text(
            '{{- define "test.notes" }}' + notes + '{{- end }}\nnotes: {{ include "test.notes" . | toJson }}\n')
        result = helm_run(template_args("--show-only", "templates/notes.yaml"), values, chart=chart)
    if result.returncode != 0:
        raise AssertionError(f"helm template (NOTES) failed:\n{result.stderr}")
    return yaml.safe_load(result.stdout)["notes"]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def workload(docs: list[dict], role: str) -> dict:
    """The control Deployment or the media DaemonSet."""
    return one([d for d in docs if d["kind"] in ("Deployment", "DaemonSet") and component(d) == role],
               "DaemonSet" if role == "media" else "Deployment")


def pod_spec(docs: list[dict], role: str) -> dict:
    return workload(docs, role)["spec"]["template"]["spec"]


def container(docs: list[dict], role: str) -> dict:
    containers = pod_spec(docs, role)["containers"]
    assert [c["name"] for c in containers] == ["trackyard"]
    return containers[0]


def role_config_map(docs: list[dict], role: str) -> dict:
    """The ConfigMap a role's pods mount at /etc/trackyard."""
    volume = next(v for v in pod_spec(docs, role)["volumes"] if v["name"] == "config")
    return one(docs, "ConfigMap", volume["configMap"]["name"])


def role_config_text(docs: list[dict], role: str) -> str:
    return role_config_map(docs, role)["data"]["config.yaml"]


# ---------------------------------------------------------------- a rendered pod as a local process

LOOPBACK = "127.0.0.1"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
CONFIG_PORTS = (("port",), ("rtc", "udp_port"), ("rtc", "tcp_port"), ("node", "grpc_port"))


@dataclass
class LocalPod:
    """What a pod of one role would run, translated for loopback (see `local_pod`)."""

    role: str
    argv: list[str]
    env: dict[str, str]
    root: Path                       # the pod's files (mounted ConfigMaps) live under here
    config_text: str                 # the config file the process reads
    ports: dict[int, int]            # the pod's port -> the free local port it uses here
    container: dict                  # the rendered container (probes, ports)

    def probe_url(self, probe: str) -> str:
        """The URL the kubelet would GET for this container's liveness/readiness probe."""
        get = self.container[probe]["httpGet"]
        port = get["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return f"http://{LOOPBACK}:{self.ports[port]}{get['path']}"


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of env values and args (unknown names stay as they are)."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _replace_ports(text: str, ports: dict[int, int]) -> str:
    """host:port strings with the port rewritten (etcd URLs, the gRPC address)."""
    return re.sub(r":(\d+)\b", lambda m: f":{ports.get(int(m.group(1)), int(m.group(1)))}", text)


def local_pod(docs: list[dict], role: str, root: Path, *, free_ports: dict[int, int],
              rewrite_hosts: dict[str, str] | None = None) -> LocalPod:
    """The rendered pod of `role` (control Deployment or media DaemonSet) as a local process:

    - its container command and args, with `trackyard` this venv's entry point;
    - its environment: plain values, secretKeyRef from the rendered Secret, fieldRef
      status.hostIP / status.podIP = 127.0.0.1, then $(VAR) expansion as Kubernetes does it;
    - its mounted ConfigMaps written under `root` (paths in args rewritten to there).

    Only ports change: every port in `free_ports` (pod port -> local port) is rewritten in the
    config's port keys, in host:port strings of the config's etcd endpoints and of the env.
    `rewrite_hosts` maps a host name that only Kubernetes DNS knows (the bundled etcd Service)
    to a local address."""
    spec = pod_spec(docs, role)
    c = container(docs, role)
    mounts: dict[str, Path] = {}
    for mount in c.get("volumeMounts", []):
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        if "configMap" not in volume:
            raise AssertionError(f"{role}: volume {mount['name']} is not a ConfigMap; only those are supported")
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for name, text in one(docs, "ConfigMap", volume["configMap"]["name"])["data"].items():
            (target / name).write_text(text)
        mounts[mount["mountPath"]] = target

    env: dict[str, str] = {}
    for entry in c.get("env", []):
        source = entry.get("valueFrom")
        if source is None:
            value = _expand(entry.get("value", ""), env)
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = base64.b64decode(one(docs, "Secret", ref["name"])["data"][ref["key"]]).decode()
        elif source.get("fieldRef", {}).get("fieldPath") in ("status.hostIP", "status.podIP"):
            value = LOOPBACK
        else:
            raise AssertionError(f"{role}: env {entry['name']} has a source this test cannot resolve: {source}")
        env[entry["name"]] = _replace_ports(value, free_ports) if source is None else value

    argv = [_expand(a, env) for a in [*c.get("command", []), *c.get("args", [])]]
    assert argv[0] == "trackyard", argv
    argv[0] = str(Path(sys.executable).with_name("trackyard"))
    config_path = None
    for i, arg in enumerate(argv):
        for mount_path, target in mounts.items():
            if arg.startswith(mount_path + "/"):
                argv[i] = str(target / arg[len(mount_path) + 1:])
        if i > 0 and argv[i - 1] == "--config":
            config_path = Path(argv[i])
    assert config_path is not None and config_path.exists(), argv

    config = yaml.safe_load(config_path.read_text())
    for path in CONFIG_PORTS:
        section = config
        for key in path[:-1]:
            section = section.get(key) or {}
        if path[-1] in section:
            section[path[-1]] = free_ports[section[path[-1]]]
    endpoints = []
    for endpoint in config["etcd"]["endpoints"]:
        for host, local in (rewrite_hosts or {}).items():
            endpoint = endpoint.replace(f"//{host}:", f"//{local}:")
        endpoints.append(_replace_ports(endpoint, free_ports))
    config["etcd"]["endpoints"] = endpoints
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    base["HOME"] = str(root)
    base["PYTHONUNBUFFERED"] = "1"
    return LocalPod(role, argv, {**base, **env}, root, config_path.read_text(), dict(free_ports), c)
