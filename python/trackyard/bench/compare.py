"""`trackyard bench compare A.json B.json`: two results side by side as a markdown table."""

from __future__ import annotations

from pathlib import Path

from .report import load

ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("server", ("scenario", "url")),
    ("joins ok", ("joins", "succeeded")),
    ("joins failed", ("joins", "failed")),
    ("JoinResponse ms p50", ("joins", "join_response_ms", "p50")),
    ("JoinResponse ms p99", ("joins", "join_response_ms", "p99")),
    ("connected ms p50", ("joins", "connected_ms", "p50")),
    ("first packet ms p50", ("first_packet_ms", "p50")),
    ("subscriptions made", ("subscriptions", "made")),
    ("subscriptions expected", ("subscriptions", "expected")),
    ("subscriber kbit/s p50", ("subscriber_kbps", "p50")),
    ("egress pkt/s", ("totals", "egress_pps")),
    ("egress Mbit/s", ("totals", "egress_mbps")),
    ("loss %", ("totals", "loss_pct")),
    ("audio latency ms p50", ("media", "audio", "latency_ms", "p50")),
    ("audio latency ms p99", ("media", "audio", "latency_ms", "p99")),
    ("video latency ms p50", ("media", "video", "latency_ms", "p50")),
    ("video latency ms p99", ("media", "video", "latency_ms", "p99")),
    ("audio jitter ms p50", ("media", "audio", "jitter_ms", "p50")),
    ("video jitter ms p50", ("media", "video", "jitter_ms", "p50")),
    ("server CPU % of one core", ("server", "cpu_pct_of_one_core")),
    ("server CPU µs / egress packet", ("server", "cpu_us_per_egress_packet")),
    ("server CPU µs / subscriber-second", ("server", "cpu_us_per_subscriber_second")),
    ("load generator CPU %", ("loadgen", "cpu_pct_of_one_core")),
]


def _get(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _ratio(a, b) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and a:
        return f"{b / a:.2f}×"
    return ""


def compare(a_path: Path, b_path: Path) -> str:
    a, b = load(a_path), load(b_path)
    head = [
        f"| metric | A: {a['scenario'].get('preset') or 'custom'} ({a.get('commit') or '?'}) | "
        f"B: {b['scenario'].get('preset') or 'custom'} ({b.get('commit') or '?'}) | B / A |",
        "|---|---:|---:|---:|",
    ]
    rows = []
    for label, path in ROWS:
        va, vb = _get(a, path), _get(b, path)
        if va is None and vb is None:
            continue
        rows.append(f"| {label} | {'–' if va is None else va} | {'–' if vb is None else vb} | {_ratio(va, vb)} |")
    return "\n".join([f"A = {a_path}, B = {b_path}", "", *head, *rows]) + "\n"
