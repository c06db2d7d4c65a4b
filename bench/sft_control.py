"""The honest control for PPO: continue SFT from the same start for the same wall time, on the same test set.

    python train_ppo.py            # writes out/ppo/summary.json (accuracy_before/after, wall_seconds)
    python bench/sft_control.py    # continues out/sft/ckpt.pt for that many seconds -> out/sft_control/

It prints both held-out accuracies side by side: what RL adds beyond simply training longer on reference solutions.
"""
import json
import os
from dataclasses import dataclass

from nanoreason.checkpoint import continued_sft_settings
from nanoreason.config import ConfigError, parse_args, run_main, run_stage
from nanoreason.report import write_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where train_sft.py is


@dataclass
class ControlConfig:
    ppo_summary: str = "out/ppo/summary.json"
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/sft_control"
    time_limit: float = 0.0       # seconds; 0 = PPO's wall time from ppo_summary


def main(c: ControlConfig):
    ppo = {}
    if os.path.exists(c.ppo_summary):
        ppo = json.load(open(c.ppo_summary))
    seconds = c.time_limit or ppo.get("wall_seconds", 0)
    if not seconds:
        raise ConfigError(f"{c.ppo_summary}: not found; run train_ppo.py first or pass --time_limit")
    s = run_stage(f"{ROOT}/train_sft.py", **continued_sft_settings(c.init_from), out_dir=c.out_dir, time_limit=seconds)
    s.update(ppo_accuracy_before=ppo.get("accuracy_before"), ppo_accuracy_after=ppo.get("accuracy_after"),
             seconds=seconds)
    json.dump(s, open(os.path.join(c.out_dir, "summary.json"), "w"), indent=2)
    before = ppo.get("accuracy_before", float("nan"))
    write_table(os.path.join(c.out_dir, "table.md"), [
        f"Equal wall time ({seconds:.0f} s) from the same SFT start, {s['eval_problems']} held-out problems, greedy:", "",
        "| method | held-out accuracy | steps |", "|---|---|---|",
        f"| PPO (`{c.ppo_summary}`) | {before:.1%} → {ppo.get('accuracy_after', float('nan')):.1%} | "
        f"{ppo.get('iters', '?')} iterations |",
        f"| continued SFT | {before:.1%} → {s['accuracy_after']:.1%} | {s['steps']} SFT steps |"])


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ControlConfig)))
