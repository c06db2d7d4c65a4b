"""The speedrun's report card: every stage's headline figure and wall time, from the files the stages wrote.

    python runs/report.py                # reads out/<stage>/summary.json, out/eval/sft_k16.json, out/speedrun_times.tsv
                                         # writes out/report.md and out/report.png

A stage that has not run yet shows as "not run"; the card is rebuilt from whatever is in out/.
"""
import csv
import json
import os
from dataclasses import dataclass

from nanoreason.config import parse_args, run_main
from nanoreason.report import write_table


@dataclass
class ReportConfig:
    out_dir: str = "out"                 # the speedrun's folder


def load(path: str) -> dict | None:
    return json.load(open(path)) if os.path.isfile(path) else None


def pct(x) -> str:
    return f"{100 * x:.1f}%"


def rows(out: str) -> list[dict]:
    """One dict per stage: name, command, headline (text), bars {label: accuracy} for the figure."""
    s = {n: load(f"{out}/{n}/summary.json") for n in ("sft", "ppo", "grpo", "expert_iteration", "orm", "prm",
                                                       "distill")}
    ev = load(f"{out}/eval/sft_k16.json")
    card = []

    def add(name, command, headline, bars=None):
        card.append({"stage": name, "command": command, "headline": headline, "bars": bars or {}})

    if s["sft"]:
        add("sft", "python train_sft.py", f"held-out accuracy {pct(s['sft']['accuracy_after'])}",
            {"SFT": s["sft"]["accuracy_after"]})
    for name, label in (("ppo", "PPO"), ("grpo", "GRPO"), ("expert_iteration", "expert iteration")):
        if s[name]:
            r = s[name]
            add(name, f"python train_{name}.py", f"{pct(r['accuracy_before'])} → {pct(r['accuracy_after'])} "
                f"({100 * (r['accuracy_after'] - r['accuracy_before']):+.1f} points)", {label: r["accuracy_after"]})
    if s["orm"]:
        add("orm", "python train_orm.py", f"verdicts right on {pct(s['orm']['verdict_accuracy'])} of held-out answers "
            f"(majority label: {pct(s['orm']['majority_baseline'])})")
    if s["prm"]:
        add("prm", "python train_prm.py", f"step verdicts agree with the oracle on {pct(s['prm']['step_accuracy'])} "
            f"(majority label: {pct(s['prm']['majority_baseline'])})")
    if ev:
        t, k = ev["table"], ev["k"]
        add("eval", f"python eval.py --k={k} --orm_ckpt=... --prm_ckpt=...",
            f"SFT model: greedy {pct(t['maj@1 (greedy)'])}, maj@{k} {pct(t[f'maj@{k}'])}, "
            f"rerank@{k} ORM {pct(t.get(f'rerank@{k} ORM', float('nan')))}, "
            f"PRM-min {pct(t.get(f'rerank@{k} PRM-min', float('nan')))}, pass@{k} {pct(t[f'pass@{k}'])}",
            {f"SFT maj@{k}": t[f"maj@{k}"], **{f"SFT rerank@{k} {n}": t[f"rerank@{k} {n}"] for n in ("ORM", "PRM-min")
                                               if f"rerank@{k} {n}" in t}, f"SFT pass@{k}": t[f"pass@{k}"]})
    if s["distill"]:
        r = s["distill"]
        add("distill", "python train_distill.py", f"{r['student_params'] / 1e6:.2f}M student {pct(r['accuracy_before'])} "
            f"→ {pct(r['accuracy_after'])} (teacher {pct(r['teacher_accuracy'])})", {"distilled student": r["accuracy_after"]})
    return card


def wall_times(out: str) -> dict:
    path = f"{out}/speedrun_times.tsv"
    times = {}
    if os.path.isfile(path):
        for row in csv.reader(open(path), delimiter="\t"):
            if len(row) == 2:
                times[row[0]] = int(row[1])                   # a stage run again: its last time
    return times


def plot(path: str, card: list[dict], times: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bars = {k: v for r in card for k, v in r["bars"].items()}
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    a.barh(list(bars)[::-1], [100 * v for v in bars.values()][::-1], color="tab:blue")
    for i, v in enumerate(list(bars.values())[::-1]):
        a.text(100 * v + 1, i, f"{100 * v:.1f}%", va="center")
    a.set_xlim(0, 110)
    a.set_xlabel("held-out accuracy (%)")
    a.set_title("what each stage reached")
    names = [r["stage"] for r in card if r["stage"] in times]
    b.barh(names[::-1], [times[n] / 60 for n in names][::-1], color="tab:gray")
    b.set_xlabel("wall time (minutes, 2-core CPU)")
    b.set_title(f"{sum(times.get(n, 0) for n in names) / 60:.1f} minutes in all")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(c: ReportConfig):
    card, times = rows(c.out_dir), wall_times(c.out_dir)
    total = sum(times.get(r["stage"], 0) for r in card)
    lines = ["| stage | command | headline (held-out problems) | wall time |", "|---|---|---|---|"]
    for r in card:
        t = times.get(r["stage"])
        lines.append(f"| {r['stage']} | `{r['command']}` | {r['headline']} | "
                     + (f"{t // 60} min {t % 60:02d} s" if t is not None else "—") + " |")
    lines.append(f"| **all** | `bash runs/speedrun.sh` | | **{total // 60} min {total % 60:02d} s** |")
    missing = [n for n in ("sft", "ppo", "grpo", "expert_iteration", "orm", "prm", "eval", "distill")
               if n not in {r["stage"] for r in card}]
    if missing:
        lines.append(f"\nnot run yet: {', '.join(missing)}")
    write_table(f"{c.out_dir}/report.md", lines)
    if card:
        plot(f"{c.out_dir}/report.png", card, times)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ReportConfig)))
