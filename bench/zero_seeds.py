"""Pure RL from the base (train_zero.py) on several seeds: mean and spread of what it changes.

    python bench/zero_seeds.py                 # seeds 0,1,2 from out/base/ckpt.pt; writes out/zero_seeds/table.md

Each seed is `python train_zero.py --seed=S --out_dir=out/zero_seeds/seed<S>`; a seed whose summary.json exists is
kept, not re-run. The base is shared (pretrained once, with its defaults, if missing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from nanoreason.config import int_list, parse_args, run_main, run_stage
from nanoreason.report import before_after, mean_sd, write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("accuracy", "format_rate", "worked_rate", "reasoning_rate", "response_length")


@dataclass
class ZeroSeedsConfig:
    out_dir: str = "out/zero_seeds"
    init_from: str = "out/base/ckpt.pt"
    seeds: str = "0,1,2"


def main(c: ZeroSeedsConfig):
    runs = {}
    for seed in int_list(c.seeds, "seeds"):
        runs[seed] = run_stage(f"{ROOT}/train_zero.py", reuse=True, init_from=c.init_from,
                               out_dir=os.path.join(c.out_dir, f"seed{seed}"), seed=seed)

    def cell(key, fmt):
        return mean_sd([r[key] for r in runs.values()], fmt)

    pct = ".1%"
    lines = [f"Pure RL from `{c.init_from}` (`python train_zero.py`, defaults), seeds {c.seeds}: mean ± standard "
             f"deviation over seeds; held-out greedy answers to {runs[min(runs)]['eval_problems']} problems.", "",
             "| | before (the base) | after pure RL |", "|---|---|---|"]
    for k in KEYS:
        fmt = ".1f" if k == "response_length" else pct
        lines.append(f"| {k.replace('_', ' ')} | {cell(k + '_before', fmt)} | {cell(k + '_after', fmt)} |")
    lines += ["", "| seed | accuracy | worked-step rate | reasoning rate | response length | wall |",
              "|---|---|---|---|---|---|"]
    for s, r in runs.items():
        lines.append(f"| {s} | {before_after(r)} | {r['wall_seconds']:.0f} s |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroSeedsConfig)))
