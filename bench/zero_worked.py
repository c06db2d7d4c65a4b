"""What does pure RL need from pretraining? Bases pretrained with different shares of worked steps in their corpus,
then pure RL (train_zero.py) from each.

    python bench/zero_worked.py                      # 0%, 1%, 10%, 30% (the default base) and 50%; about 10 minutes
                                                     # a fraction; writes out/zero_worked/table.md
    python bench/zero_worked.py --worked=0,0.5

Each fraction W is `python train_base.py --worked=W --out_dir=out/zero_worked/base_W`, then `python train_zero.py
--init_from=out/zero_worked/base_W/ckpt.pt --out_dir=out/zero_worked/zero_W`; the rest of the corpus is the default
mix (half the problems followed by only the final answer, the rest by nothing). The default fraction reuses
out/base/ and out/zero/ (the same commands). A run whose summary.json exists is kept, not re-run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from nanoreason.config import parse_args, run_main, run_stage
from nanoreason.corpus import CorpusMix
from nanoreason.report import write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ZeroWorkedConfig:
    out_dir: str = "out/zero_worked"
    worked: str = "0,0.01,0.1,0.3,0.5"     # shares of the corpus's word problems shown with worked steps
    seed: int = 0


def main(c: ZeroWorkedConfig):
    rows = []
    for w in [float(x) for x in c.worked.split(",")]:
        if w == CorpusMix.worked and c.seed == 0:                 # the default base and pure RL from it
            base_dir, zero_dir = "out/base", "out/zero"
        else:
            base_dir, zero_dir = (os.path.join(c.out_dir, f"{kind}_{w:g}") for kind in ("base", "zero"))
        base = run_stage(f"{ROOT}/train_base.py", reuse=True, out_dir=base_dir, worked=w, seed=c.seed)
        zero = run_stage(f"{ROOT}/train_zero.py", reuse=True, init_from=os.path.join(base_dir, "ckpt.pt"),
                         out_dir=zero_dir, seed=c.seed)
        rows.append((w, base, zero))
    lines = [f"Bases pretrained with a share of their word problems shown with worked steps (`train_base.py "
             f"--worked=W`, seed {c.seed}), then pure RL from each (`train_zero.py`, defaults). Held-out greedy "
             f"answers to {rows[0][2]['eval_problems']} problems; one run per row.", "",
             "| worked in corpus | base perplexity | accuracy | worked-step rate | reasoning rate | response length "
             "| wall (base + RL) |", "|---|---|---|---|---|---|---|"]
    for w, base, z in rows:
        lines.append(f"| {w:.0%} | {base['perplexity']:.2f} | {z['accuracy_before']:.1%} → {z['accuracy_after']:.1%} "
                     f"| {z['worked_rate_before']:.1%} → {z['worked_rate_after']:.1%} | {z['reasoning_rate_before']:.1%}"
                     f" → {z['reasoning_rate_after']:.1%} | {z['response_length_before']:.1f} → "
                     f"{z['response_length_after']:.1f} | {base['wall_seconds']:.0f} + {z['wall_seconds']:.0f} s |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroWorkedConfig)))
