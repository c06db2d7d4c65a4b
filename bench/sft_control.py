"""The honest control for PPO: continue SFT from the same start for the same wall time, on the same test set.

    python train_ppo.py            # writes out/ppo/summary.json (accuracy_before/after, wall_seconds)
    python bench/sft_control.py    # continues out/sft/ckpt.pt for that many seconds -> out/sft_control/

It prints both held-out accuracies side by side: what RL adds beyond simply training longer on reference solutions.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataclasses import dataclass  # noqa: E402

from nanoreason.checkpoint import load_checkpoint  # noqa: E402
from nanoreason.config import ConfigError, parse_args, run_main  # noqa: E402
from train_sft import SFTConfig, train  # noqa: E402


@dataclass
class ControlConfig:
    ppo_summary: str = "out/ppo/summary.json"
    sft_ckpt: str = "out/sft/ckpt.pt"
    out_dir: str = "out/sft_control"
    seconds: float = 0.0          # 0 = PPO's wall time from ppo_summary


def continued_sft(sft_ckpt: str, out_dir: str, seconds: float = 0.0, iters: int = 10**9) -> dict:
    """Continue the SFT run in `sft_ckpt` (weights, optimizer, task) at the rate its schedule ended on, for `seconds`
    of wall time or `iters` steps, whichever comes first; returns train_sft's summary."""
    sft = load_checkpoint(sft_ckpt)["config"]
    keep = {k: v for k, v in sft.items() if k in SFTConfig.__dataclass_fields__ and k not in
            ("out_dir", "resume", "init_from", "time_limit", "max_iters", "lr", "min_lr", "warmup_iters", "eval_interval")}
    lr = sft.get("min_lr", 3e-4)
    return train(SFTConfig(**keep, out_dir=out_dir, init_from=sft_ckpt, time_limit=seconds, max_iters=iters,
                           lr=lr, min_lr=lr, warmup_iters=1, eval_interval=10**9))


def main(c: ControlConfig):
    ppo = {}
    if os.path.exists(c.ppo_summary):
        ppo = json.load(open(c.ppo_summary))
    seconds = c.seconds or ppo.get("wall_seconds", 0)
    if not seconds:
        raise ConfigError(f"{c.ppo_summary}: not found; run train_ppo.py first or pass --seconds")
    s = continued_sft(c.sft_ckpt, c.out_dir, seconds=seconds)
    s.update(ppo_accuracy_before=ppo.get("accuracy_before"), ppo_accuracy_after=ppo.get("accuracy_after"),
             seconds=seconds)
    json.dump(s, open(os.path.join(c.out_dir, "summary.json"), "w"), indent=2)
    print(f"\nequal wall time ({seconds:.0f}s) from the same SFT start, {s['eval_problems']} held-out problems:")
    print(f"  PPO:            {ppo.get('accuracy_before', float('nan')):.1%} -> {ppo.get('accuracy_after', float('nan')):.1%}")
    print(f"  continued SFT:  {ppo.get('accuracy_before', float('nan')):.1%} -> {s['accuracy']:.1%}")


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ControlConfig)))
