"""Turn an experiment's results JSON into markdown tables and a curve plot, and put them into a docs file.

The tables go between ``<!-- experiment:NAME begin -->`` and ``<!-- experiment:NAME end -->`` in the docs file,
everything else in the file is kept. A ratio of times to a threshold is given only when both runs reached it; when
one did not, the report says which did not reach it within how much own time, never a ratio against a budget.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from bundlezoo.data.checks import InputDataError
from bundlezoo.data.io import atomic_write_bytes


def _key(t: float) -> str:
    return f"{t:.2f}"


def summarise_curve(curve: list[dict[str, Any]], thresholds: list[float]) -> dict[str, Any]:
    """Epoch count, seconds per epoch and validation, best and final metric, first crossing of each threshold.

    Args:
        curve: per-epoch points ``{"epoch", "time_s", "train_s", "val_s", "loss", "metric"}`` (metric None on
            epochs without validation).
        thresholds: metric values whose first crossing is reported as ``time_to[f"{t:.2f}"] = {"time_s", "epoch"}``
            (None: not reached).
    """
    vals = [p for p in curve if p.get("metric") is not None]
    train = [p["train_s"] for p in curve if p.get("train_s") is not None]
    val = [p["val_s"] for p in curve if p.get("val_s") is not None]
    best = max(vals, key=lambda p: p["metric"], default=None)
    time_to = {}
    for t in thresholds:
        hit = next((p for p in vals if p["metric"] >= t), None)
        time_to[_key(t)] = {"time_s": hit["time_s"], "epoch": hit["epoch"]} if hit else None
    return {
        "epochs": curve[-1]["epoch"] if curve else 0,
        "seconds_per_epoch": round(sum(train) / len(train), 3) if train else None,
        "seconds_per_validation": round(sum(val) / len(val), 3) if val else None,
        "best_metric": best["metric"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_metric": vals[-1]["metric"] if vals else None,
        "time_to": time_to,
    }


def _seconds(s: float) -> str:
    return f"{s:,.0f} s"


def comparisons(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Time-to-threshold comparisons of the ``compare`` pairs [a, b], per grid point and threshold.

    ``ratio`` (a's time / b's time) is set only when both reached the threshold; ``text`` says in words what was
    measured, e.g. "regular did not reach 0.90 in 17,482 s (100 epochs)".
    """
    runs = results.get("runs", {})
    out = []
    for a, b in results.get("compare", []):
        for name_a, ra in runs.items():
            if ra["arm"] != a:
                continue
            rb = next((r for n, r in runs.items() if r["arm"] == b and r["point"] == ra["point"]), None)
            if rb is None:
                continue
            name_b = next(n for n, r in runs.items() if r is rb)
            for t in results.get("thresholds", []):
                ta, tb = ra["time_to"].get(_key(t)), rb["time_to"].get(_key(t))
                parts = []
                for name, r, hit in ((name_a, ra, ta), (name_b, rb, tb)):
                    if hit:
                        parts.append(f"{name} reached {_key(t)} at {_seconds(hit['time_s'])} (epoch {hit['epoch']})")
                    else:
                        still = "" if r["status"] == "done" else ", still running"
                        parts.append(f"{name} did not reach {_key(t)} in {_seconds(r['own_time_s'])} "
                                     f"({r['epochs']} epochs{still})")
                ratio = round(ta["time_s"] / tb["time_s"], 2) if ta and tb and tb["time_s"] > 0 else None
                text = "; ".join(parts) + (f": {name_a} / {name_b} = {ratio}×" if ratio is not None else ": no ratio")
                out.append({"a": name_a, "b": name_b, "threshold": t, "ratio_time": ratio, "text": text})
    return out


def _cell_time_to(run: dict[str, Any], t: float) -> str:
    hit = run["time_to"].get(_key(t))
    if hit:
        return f"{_seconds(hit['time_s'])} (epoch {hit['epoch']})"
    return f"not reached in {_seconds(run['own_time_s'])}"


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def markdown(results: dict[str, Any]) -> str:
    """The tables and comparisons of ``results`` as markdown (deterministic: the same JSON gives the same text)."""
    thresholds = results.get("thresholds", [])
    runs = results.get("runs", {})
    kinds = sorted({r.get("data", "?") for r in runs.values()})
    lines = [f"Experiment `{results['experiment']}` ({results['experiment_file']}), schedule {results['schedule']}, "
             f"data: {', '.join(kinds)}. Every time is the run's own wall time (data caching and validation "
             "included)."]
    if results.get("historical"):
        lines += ["", f"**Historical measurement:** {results['historical']}"]
    lines += ["", "Commands:", "", "```bash"]
    lines += [s["command"] for s in results.get("sittings", [])]
    lines += ["```", ""]
    machines = {json.dumps({k: s["machine"].get(k) for k in ("cpu_model", "cpu_count", "cuda")}, sort_keys=True)
                for s in results.get("sittings", []) if s.get("machine")}
    for m in sorted(machines):
        d = json.loads(m)
        lines.append(f"Machine: {d.get('cpu_model') or 'CPU'}, {d.get('cpu_count')} cores, "
                     f"GPU: {d.get('cuda') or 'none'}.")
    lines.append("")
    head = ["run", "train / val cases", "epochs", "own time", "s / training epoch", "s / validation"]
    head += [f"time to {_key(t)}" for t in thresholds] + ["best metric (epoch)", "final metric", "peak RSS", "stopped"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in runs.items():
        row = [f"`{name}`", f"{r.get('n_train', '?')} / {r.get('n_validation', '?')}", str(r["epochs"]),
               _seconds(r["own_time_s"]), _num(r["seconds_per_epoch"], ".1f"), _num(r["seconds_per_validation"], ".1f")]
        row += [_cell_time_to(r, t) for t in thresholds]
        best = "—" if r["best_metric"] is None else f"{r['best_metric']:.3f} ({r['best_epoch']})"
        row += [best, _num(r["final_metric"], ".3f"),
                "—" if not r.get("peak_rss_mb") else f"{r['peak_rss_mb'] / 1024:.1f} GiB",
                r.get("stopped_because") or "running"]
        lines.append("| " + " | ".join(row) + " |")
    comps = results.get("comparisons") or comparisons(results)
    if comps:
        lines.append("")
        lines += [f"- {c['text']}" for c in comps]
    return "\n".join(lines) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- experiment:{name} begin -->", f"<!-- experiment:{name} end -->"


def insert(doc_text: str, name: str, block: str, doc: str = "<doc>") -> str:
    """``doc_text`` with the text between the experiment's markers replaced by ``block``.

    Raises:
        InputDataError: the markers are missing or out of order.
    """
    begin, end = _markers(name)
    i, j = doc_text.find(begin), doc_text.find(end)
    if i < 0 or j < i:
        raise InputDataError(doc, f"no '{begin}' ... '{end}' markers to write the tables between")
    return doc_text[: i + len(begin)] + "\n" + block + doc_text[j:]


def load_results(path: str | Path) -> dict[str, Any]:
    """The results JSON at ``path`` (a file, or a folder holding ``results.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        return json.loads(p.read_text())
    except OSError as e:
        raise InputDataError(p, f"cannot read the results ({e.strerror})") from None
    except ValueError as e:
        raise InputDataError(p, f"not valid JSON ({e})") from None


def plot(results: dict[str, Any], path: str | Path) -> None:
    """Validation metric against own wall time, one line per run, thresholds dashed; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, r in results["runs"].items():
        pts = [p for p in r["curve"] if p.get("metric") is not None]
        line, = ax.plot([p["time_s"] for p in pts], [p["metric"] for p in pts], marker="o", ms=3,
                        label=f"{name} ({r['epochs']} epochs)")
        ax.axvline(r["own_time_s"], color=line.get_color(), ls=":", lw=0.8)
    for t in results.get("thresholds", []):
        ax.axhline(t, color="grey", ls="--", lw=0.6)
    kinds = ", ".join(sorted({r.get("data", "?") for r in results["runs"].values()}))
    ax.set_title(f"{results['experiment']} ({kinds})", fontsize=9)
    ax.set_xlabel("own wall time (s), caching and validation included")
    ax.set_ylabel("validation key metric")
    ax.set_ylim(0, 1)
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
