"""The Helm chart (helm/trackyard) rendered by a real, pinned helm binary, for tests.

``scripts/helm-tools`` (run by ``scripts/bootstrap --tests``) puts helm into ``.tools/``.
Every helm run gets a throw-away HOME/XDG directory and an empty kubeconfig, so nothing
reads or writes the user's helm state and nothing talks to a cluster.

    docs = render({"etcd": {"bundled": {"enabled": False}, ...}})   # list of manifests
    pod = pod_spec(docs, "DaemonSet")                                # its pod template spec
    lint({...}) / helm_run(["template", ...], values) for failures
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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
