"""What does pure RL need from pretraining? Bases pretrained with different shares of worked steps in their corpus,
then pure RL (train_zero.py) from each.

    python bench/zero_worked.py                      # 0%, 1%, 10%, 30% (the default base) and 50%; about 10 minutes
                                                     # a fraction; writes out/zero_worked/table.md
    python bench/zero_worked.py --worked=0,0.5

Beside what RL did, the table shows what each base's samples offered it (`evaluate.sampled_work_stats`: 4 answers at
temperature 1 to each of `sampled_problems` held-out problems): how many show worked steps, and how often those and the bare
answers are right. Each fraction W is `python train_base.py --worked=W --out_dir=out/zero_worked/base_W`, then `python train_zero.py
--init_from=out/zero_worked/base_W/ckpt.pt --out_dir=out/zero_worked/zero_W`; the rest of the corpus is the default
mix (half the problems followed by only the final answer, the rest by nothing). The default fraction reuses
out/base/ and out/zero/ (the same commands). A run whose summary.json exists is kept, not re-run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import parse_args, run_main, run_stage
from nanoreason.corpus import CorpusMix
from nanoreason.evaluate import sampled_work_stats
from nanoreason.report import before_after, write_table
from nanoreason.tasks import make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ZeroWorkedConfig:
    out_dir: str = "out/zero_worked"
    worked: str = "0,0.01,0.1,0.3,0.5"     # shares of the corpus's word problems shown with worked steps
    seed: int = 0
    sampled_problems: int = 128            # held-out problems whose 4 sampled answers show what each base offers RL


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
        model, tok, ckpt = load_model(os.path.join(base_dir, "ckpt.pt"))
        task, task_seed = task_of(ckpt["config"])
        torch.manual_seed(c.seed)
        offered = sampled_work_stats(model, tok, make_problems(c.sampled_problems, "test", task_seed, task))
        rows.append((w, base, zero, offered))
    lines = [f"Bases pretrained with a share of their word problems shown with worked steps (`train_base.py "
             f"--worked=W`, seed {c.seed}), then pure RL from each (`train_zero.py`, defaults). Held-out greedy "
             f"answers to {rows[0][2]['eval_problems']} problems; one run per row. The base's samples: 4 answers at "
             f"temperature 1 to {c.sampled_problems} held-out problems.", "",
             "| worked in corpus | base's samples: worked | right if worked | right if bare | accuracy | "
             "worked-step rate | reasoning rate | response length | wall (base + RL) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w, base, z, o in rows:
        lines.append(f"| {w:.0%} | {o['sampled_worked']:.1%} | {o['worked_right']:.1%} | {o['bare_right']:.1%} | "
                     f"{before_after(z)} | {base['wall_seconds']:.0f} + {z['wall_seconds']:.0f} s |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroWorkedConfig)))
