"""PNG charts of a run (``--plot``); needs matplotlib (the ``bench-plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(results: list[dict[str, Any]], directory: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    subjects = [r for r in results if "drain" in r]
    if subjects:
        labels = [f"{r['system']}\n{r['setting']}" for r in subjects]
        figure, axes = plt.subplots(1, 2, figsize=(max(8, len(labels) * 0.9), 5))
        for procs, offset in (("1", -0.2), ("2", 0.2)):
            rates = [(r["drain"].get(procs) or {}).get("rate") or 0 for r in subjects]
            axes[0].bar(
                [i + offset for i in range(len(labels))], rates, width=0.4, label=f"{procs} proc"
            )
        axes[0].set_title("drain of no-op jobs (jobs/s)")
        axes[0].set_yscale("log")
        axes[0].legend()
        p50 = [r["latency"].get("p50_ms") or 0 for r in subjects]
        p99 = [r["latency"].get("p99_ms") or 0 for r in subjects]
        axes[1].bar([i - 0.2 for i in range(len(labels))], p50, width=0.4, label="p50")
        axes[1].bar([i + 0.2 for i in range(len(labels))], p99, width=0.4, label="p99")
        axes[1].set_title("pickup latency (ms)")
        axes[1].set_yscale("log")
        axes[1].legend()
        for axis in axes:
            axis.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        figure.tight_layout()
        path = directory / "throughput-latency.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    claims = [r for r in results if r.get("claim_cost")]
    if claims:
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for r in claims:
            points = r["claim_cost"]
            axis.plot(
                [p["depth"] for p in points],
                [p["claim_us_median"] for p in points],
                marker="o",
                label=r["system"],
            )
        axis.set_xscale("log")
        axis.set_xlabel("waiting jobs")
        axis.set_ylabel("claim of one job (us, median)")
        axis.set_title("claim cost as the queue grows")
        axis.legend()
        figure.tight_layout()
        path = directory / "claim-cost.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
