"""What every stage writes to out/<stage>/: metrics.jsonl (one JSON object per log line), a PNG of the curves a
learner should look at, and summary.json with the headline figures."""
from __future__ import annotations

import json
import os
import statistics


class JsonlLogger:
    """Appends one JSON object per call to `path`; `resume` continues an existing log (rundir.RunDir decides what an
    earlier run's log becomes), otherwise the log starts empty."""

    def __init__(self, path: str, resume: bool = False):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.rows = read_jsonl(path) if resume and os.path.exists(path) else []
        if not resume:
            open(path, "w").close()

    def find(self, key: str, step: int | None = None) -> dict | None:
        """The last logged row that has `key` (and the given step): e.g. a resumed run's last evaluation."""
        return next((r for r in reversed(self.rows) if key in r and (step is None or r.get("step") == step)), None)

    @staticmethod
    def line(row: dict) -> str:
        return json.dumps(row) + "\n"

    def log(self, **row):
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(self.line(row))


def read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass                                # a line cut short by a crash: skip it
    return rows


def write_table(path: str, lines: list[str]) -> str:
    """A bench's result as Markdown at `path` (runs/make_docs.py copies it into docs/), printed too."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)
    return text


ANSWER_STATS = ("accuracy", "worked_rate", "reasoning_rate", "response_length")   # what pure RL changes


def before_after(summary: dict, keys=ANSWER_STATS) -> str:
    """Table cells "before → after" for each of `keys` from a stage summary's `<key>_before`/`<key>_after`
    (rates as percentages, the response length in tokens), joined by " | "."""
    fmt = lambda k, v: f"{v:.1f}" if k == "response_length" else f"{v:.1%}"  # noqa: E731
    return " | ".join(f"{fmt(k, summary[k + '_before'])} → {fmt(k, summary[k + '_after'])}" for k in keys)


def mean_sd(xs: list[float], fmt: str = ".1%") -> str:
    """A table cell for one figure over seeds: "mean ± sample standard deviation" (only the mean for one seed)."""
    spread = f" ± {statistics.stdev(xs):{fmt.lstrip('+')}}" if len(xs) > 1 else ""
    return f"{statistics.mean(xs):{fmt}}{spread}"


def write_summary(path: str, summary: dict):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, path)


def plot_curves(path: str, rows: list[dict], panels: list[tuple[str, list[str]]], title: str = "", x: str = "step"):
    """One subplot per (ylabel, [metric keys]), (ylabel, [keys], "log") or (ylabel, [keys], {"x": key, "scale": "log",
    "xscale": "log"}); each key is drawn over the rows that have it (and the x key)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crowded = any(len(p[1]) > 5 for p in panels)            # many curves: the legend goes beside the plot
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 2.5 * crowded, 3.6), squeeze=False)
    for ax, (ylabel, keys, *opts) in zip(axes[0], panels):
        o = opts[0] if opts and isinstance(opts[0], dict) else {"scale": opts[0] if opts else None}
        px = o.get("x", x)
        for k in keys:
            pts = [(r[px], r[k]) for r in rows if k in r and px in r and r[k] is not None]
            if len(pts) >= 30:                   # many noisy points: faint raw curve + a rolling mean of 10
                xs, ys = zip(*pts)
                line, = ax.plot(xs, ys, alpha=0.25)
                smooth = [sum(ys[max(0, i - 9):i + 1]) / len(ys[max(0, i - 9):i + 1]) for i in range(len(ys))]
                ax.plot(xs, smooth, color=line.get_color(), label=f"{k} (mean of 10)")
            elif pts:
                ax.plot(*zip(*pts), marker="o", label=k)
        if o.get("scale") == "log":
            ax.set_yscale("log")
        if o.get("xscale") == "log":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(px)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:         # a panel whose keys were never logged stays empty
            ax.legend(**({"fontsize": "small", "loc": "center left", "bbox_to_anchor": (1, 0.5)} if len(keys) > 5
                         else {}))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
