"""Writes a run's results: `result.json`, `summary.md` and PNG plots into the output
directory; `markdown` is also what the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path


def _v(x, unit: str = "") -> str:
    return "–" if x is None else f"{x}{unit}"


def markdown(r: dict) -> str:
    sc = r["scenario"]
    j = r["joins"]
    lines = [
        f"# trackyard bench: {sc.get('preset') or 'custom scenario'}",
        "",
        f"Server {sc['url']} · commit {r.get('commit') or '?'} · {r['started']} · "
        f"{r['machine'].get('cpu_model', '')} ({r['machine'].get('cpus')} CPUs)",
        "",
        f"Scenario: {sc['rooms']} room(s) × ({sc['video_publishers']} video + {sc['audio_publishers']} audio "
        f"publishers, {sc['subscribers']} subscribers); video {sc['video_resolution']}"
        f"{' simulcast' if sc['simulcast'] else ''}, layout {sc['layout']}; join rate {sc['join_rate']}/s; "
        f"measured {r['window_seconds']} s after {r['settle_seconds']} s settling.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| joins ok / attempted | {j['succeeded']} / {j['attempted']} |",
        f"| JoinResponse ms p50 / p99 | {_v(j['join_response_ms']['p50'])} / {_v(j['join_response_ms']['p99'])} |",
        f"| connected (ICE+DTLS) ms p50 / p99 | {_v(j['connected_ms']['p50'])} / {_v(j['connected_ms']['p99'])} |",
        f"| first packet ms p50 / p99 | {_v(r['first_packet_ms']['p50'])} / {_v(r['first_packet_ms']['p99'])} |",
        f"| subscriptions made / expected | {r['subscriptions']['made']} / {r['subscriptions']['expected']} |",
        f"| SCTP associations / peer connections; data channels open | {r['data_channels']['sctp_connected']} / "
        f"{r['data_channels']['peer_connections']}; {r['data_channels']['channels_open']} |",
        f"| subscriber kbit/s p50 / min | {_v(r['subscriber_kbps']['p50'])} / "
        f"{_v(min((s['kbps'] for s in r['subscribers']), default=None))} |",
        f"| egress (received by subscribers) | {r['totals']['egress_pps']} pkt/s, {r['totals']['egress_mbps']} Mbit/s |",
        f"| ingress (sent by publishers) | {r['totals']['ingress_pps']} pkt/s |",
        f"| loss (sequence numbers) | {r['totals']['loss_pct']} % |",
    ]
    for kind, m in r["media"].items():
        lines += [
            f"| {kind}: latency ms p50 / p99 | {_v(m['latency_ms']['p50'])} / {_v(m['latency_ms']['p99'])} |",
            f"| {kind}: jitter ms p50 / p99 | {_v(m['jitter_ms']['p50'])} / {_v(m['jitter_ms']['p99'])} |",
            f"| {kind}: forwarded received / expected (other layers) | {m['forwarded_received']} / "
            f"{m['forwarded_expected']} ({m.get('forwarded_other_layer', 0)}) |",
        ]
    s = r["server"]
    if "cpu_seconds" in s:
        lines += [
            f"| server CPU (PIDs {', '.join(map(str, s['pids']))}) | {s['cpu_pct_of_one_core']} % of one core "
            f"({s['cpu_pct_of_machine']} % of the machine) |",
            f"| server CPU µs per egress packet | {_v(s['cpu_us_per_egress_packet'])} |",
            f"| server CPU µs per subscriber-second | {_v(s['cpu_us_per_subscriber_second'])} |",
        ]
    lines.append(f"| load generator CPU | {r['loadgen']['cpu_pct_of_one_core']} % of one core |")
    lag = r["loadgen"].get("event_loop_lag_ms")
    if lag and lag.get("count"):
        lines.append(f"| bench event-loop lag ms p50 / p99 / max (in the join timings too) | "
                     f"{lag['p50']} / {lag['p99']} / {lag['max']} |")
    if j["failure_reasons"]:
        lines += ["", "Join failures: " + "; ".join(f"{k} (×{v})" for k, v in j["failure_reasons"].items())]
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path) -> list[Path]:
    """result.json, summary.md and the plots; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "result.json", out / "summary.md"]
    files[0].write_text(json.dumps(r, indent=1) + "\n")
    files[1].write_text(markdown(r))
    from .plots import write_plots

    files += write_plots(r, out)
    return files


def load(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != "trackyard-bench/1":
        raise ValueError(f"{path}: not a trackyard bench result (schema trackyard-bench/1)")
    return data
