"""The controls of pure RL from a base (docs/zero.md): supervised fine-tuning from the same base for the same wall
time, on worked solutions (imitation when they exist) and on final answers only (imitation when only outcomes are
known, as pure RL's reward); and SFT on worked solutions from scratch for the base's and RL's time together (what
pretraining buys).

    python train_zero.py                      # first: out/zero/summary.json (its wall time sets the budget)
    python bench/zero_controls.py             # writes out/zero_controls/table.md

Each arm is `python train_sft.py [--init_from=<base>] --time_limit=<seconds> ...`; a finished arm is kept.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from nanoreason.checkpoint import load_checkpoint, task_of
from nanoreason.config import ConfigError, parse_args, run_main, run_stage
from nanoreason.report import write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ZeroControlsConfig:
    out_dir: str = "out/zero_controls"
    zero_dir: str = "out/zero"            # the pure-RL run to compare with (and its base)
    iters: int = 1500                     # the SFT schedule's length from the base; the time limit stops it first


def main(c: ZeroControlsConfig):
    path = os.path.join(c.zero_dir, "summary.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file; run python train_zero.py first")
    zero = json.load(open(path))
    seconds = zero["wall_seconds"]
    base_summary = os.path.join(os.path.dirname(zero["base"]), "summary.json")
    if not os.path.isfile(base_summary):
        raise ConfigError(f"{base_summary}: no such file; the base's pretraining time sets the from-scratch budget")
    base_seconds = json.load(open(base_summary))["wall_seconds"]
    task, task_seed = task_of(load_checkpoint(zero["base"])["config"])       # pure RL's task and held-out set
    common = dict(eval_interval=10**6, eval_problems=zero["eval_problems"], **dataclasses.asdict(task), seed=task_seed)
    rows = {}
    for arm, d, flags in (("the base, then SFT on worked solutions", "worked", {}),
                          ("the base, then SFT on final answers only", "answers_only", {"answers_only": True})):
        s = run_stage(f"{ROOT}/train_sft.py", reuse=True, init_from=zero["base"], out_dir=os.path.join(c.out_dir, d),
                      time_limit=seconds, iters=c.iters, **common, **flags)
        rows[arm] = (f"{base_seconds:.0f} + {s['wall_seconds']:.0f} s", s)
    worked = rows["the base, then SFT on worked solutions"][1]        # its pace sets a schedule that fits the time
    s = run_stage(f"{ROOT}/train_sft.py", reuse=True, out_dir=os.path.join(c.out_dir, "scratch"),
                  time_limit=base_seconds + seconds,
                  iters=int(worked["steps"] / worked["wall_seconds"] * (base_seconds + seconds)), **common)
    rows["no base: SFT on worked solutions from scratch"] = (f"{s['wall_seconds']:.0f} s", s)
    lines = [f"From the base `{zero['base']}` ({base_seconds:.0f} s of pretraining), at most {seconds:.0f} s each "
             f"(pure RL's wall time; an SFT arm whose schedule ends first stops there); SFT from scratch for both "
             f"times together, its schedule sized to fit. Held-out greedy accuracy on {zero['eval_problems']} problems; one run each.", "",
             "| run | reads worked solutions? | wall (pretraining + stage) | accuracy |", "|---|---|---|---|",
             f"| the base itself | – | {base_seconds:.0f} s | {zero['accuracy_before']:.1%} |",
             f"| the base, then pure RL (`train_zero.py`, outcome + format rewards) | no | "
             f"{base_seconds:.0f} + {seconds:.0f} s | {zero['accuracy_after']:.1%} |"]
    for arm, (wall, s) in rows.items():
        lines.append(f"| {arm} ({s['steps']} steps) | {'no' if 'answers only' in arm else 'yes'} | {wall} | "
                     f"{s['accuracy_after']:.1%} |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroControlsConfig)))
