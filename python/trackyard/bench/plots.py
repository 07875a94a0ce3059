"""PNG plots of a run (matplotlib, no display): server CPU and loss against the number of
connected subscribers over the run (a ramp when the join rate is low), and the end-to-end
latency distribution per kind."""

from __future__ import annotations

from pathlib import Path


def write_plots(r: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    title = r["scenario"].get("preset") or "custom"
    series = r.get("series", [])
    if series:
        subs = [e["subscribers"] for e in series]
        fig, ax = plt.subplots(figsize=(7, 4))
        cpu = [(s, e["server_cpu_pct"]) for s, e in zip(subs, series) if e.get("server_cpu_pct") is not None]
        if cpu:
            ax.plot([c[0] for c in cpu], [c[1] for c in cpu], "o-", ms=3, label="server CPU % (of one core)")
        ax.set_xlabel("subscribers connected")
        ax.set_ylabel("server CPU %")
        ax2 = ax.twinx()
        ax2.plot(subs, [e["loss_pct"] for e in series], "x-", color="tab:red", ms=3, label="loss %")
        ax2.set_ylabel("loss % (per second)")
        ax2.set_ylim(bottom=0, top=max(1.0, max(e["loss_pct"] for e in series) * 1.1))
        ax.set_ylim(bottom=0)
        ax.set_title(f"{title}: server CPU and loss vs subscribers (one point per second)")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
        ax.legend(lines, labels, loc="lower right")
        fig.tight_layout()
        files.append(out / "cpu_loss_vs_subscribers.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    media = r.get("media", {})
    if media:
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind, m in media.items():
            hist = m.get("latency_histogram_ms", [])
            total = sum(c for _, c in hist)
            if not total:
                continue
            xs, ys, seen = [], [], 0
            for value, count in hist:
                seen += count
                xs.append(value)
                ys.append(100 * seen / total)
            ax.step(xs, ys, where="post", label=f"{kind} (p50 {m['latency_ms']['p50']} ms, p99 {m['latency_ms']['p99']} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency, ms (publisher send → subscriber receive)")
        ax.set_ylabel("% of packets ≤ x")
        ax.set_title(f"{title}: latency")
        ax.legend(loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        files.append(out / "latency.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    return files
