"""The controls of pure RL from a base (docs/zero.md): supervised fine-tuning from the same base for the same wall
time, on worked solutions (imitation when they exist) and on final answers only (imitation when only outcomes are
known, as pure RL's reward).

    python train_zero.py                      # first: out/zero/summary.json (its wall time sets the budget)
    python bench/zero_controls.py             # writes out/zero_controls/table.md

Each arm is `python train_sft.py --init_from=<base> --time_limit=<pure RL's seconds> ...`; a finished arm is kept.
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
    iters: int = 1500                     # the SFT schedule's length; the time limit stops it first


def main(c: ZeroControlsConfig):
    path = os.path.join(c.zero_dir, "summary.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file; run python train_zero.py first")
    zero = json.load(open(path))
    seconds = zero["wall_seconds"]
    task, task_seed = task_of(load_checkpoint(zero["base"])["config"])       # pure RL's task and held-out set
    rows = {}
    for arm, flags in (("SFT on worked solutions", {}), ("SFT on final answers only", {"answers_only": True})):
        d = os.path.join(c.out_dir, "answers_only" if flags else "worked")
        s_path = os.path.join(d, "summary.json")
        rows[arm] = json.load(open(s_path)) if os.path.isfile(s_path) else run_stage(
            f"{ROOT}/train_sft.py", init_from=zero["base"], out_dir=d, time_limit=seconds, iters=c.iters,
            eval_interval=10**6, eval_problems=zero["eval_problems"], **dataclasses.asdict(task), seed=task_seed,
            **flags)
    lines = [f"From the base `{zero['base']}`, at most {seconds:.0f} s each (pure RL's wall time; an SFT arm whose "
             f"{c.iters}-step schedule ends first stops there), held-out greedy accuracy on {zero['eval_problems']} "
             f"problems; one run each.", "",
             "| from the base | reads worked solutions? | wall | accuracy |", "|---|---|---|---|",
             f"| the base itself | – | – | {zero['accuracy_before']:.1%} |",
             f"| pure RL (`train_zero.py`, outcome + format rewards) | no | {seconds:.0f} s | "
             f"{zero['accuracy_after']:.1%} |"]
    for arm, s in rows.items():
        lines.append(f"| {arm} ({s['steps']} steps) | {'yes' if 'worked' in arm else 'no'} | "
                     f"{s['wall_seconds']:.0f} s | {s['accuracy_after']:.1%} |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroControlsConfig)))
