"""Prometheus metrics of a server running in a network-namespace lab (see `netns.NetLab`)."""

from __future__ import annotations

import re
import sys


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition, summed over the samples whose
    labels include `labels` (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def scrape(lab, lab_server) -> str:
    """`/metrics` of the lab's server, fetched from inside the server's namespace."""
    code = f"import urllib.request; print(urllib.request.urlopen('{lab_server.local_url}/metrics', timeout=5).read().decode())"
    proc = lab.exec(lab.server_ns, [sys.executable, "-c", code], timeout=15)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
