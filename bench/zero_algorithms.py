"""RL without SFT, three ways: GRPO (train_zero.py), expert iteration and PPO, each from the same pretrained base, with
the same verifiable reward and the same number of sampled answers.

    python train_zero.py                  # first: out/zero/ (its base, reward and sample budget set the others')
    python bench/zero_algorithms.py       # about 10 minutes; writes out/zero_algorithms/table.md

Expert iteration keeps the sampled answers that are right and imitates them (train_expert_iteration.py); PPO learns a
critic for its baseline (train_ppo.py); GRPO's baseline is the group mean. Each keeps its own defaults otherwise
(tuned for starting from SFT: PPO's KL penalty 0.02 and 2 epochs, expert iteration's lr 1e-4), and samples at pure
RL's temperature. Every final model is evaluated here the same way (greedy answers to the held-out problems) so the
columns compare. A finished run is kept, not re-run. One run each: an anecdote, not a ranking.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from nanoreason.checkpoint import load_model, task_of
from nanoreason.config import ConfigError, parse_args, run_main, run_stage
from nanoreason.evaluate import answer_stats
from nanoreason.report import write_table
from nanoreason.tasks import make_problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ZeroAlgorithmsConfig:
    out_dir: str = "out/zero_algorithms"
    zero_dir: str = "out/zero"            # the pure-RL (GRPO) run to match
    ei_iters: int = 25                    # expert iteration: rounds of sampling then fine-tuning
    ppo_batch_size: int = 64              # PPO: completions per iteration


def main(c: ZeroAlgorithmsConfig):
    path = os.path.join(c.zero_dir, "summary.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file; run python train_zero.py first")
    zero = json.load(open(path))
    base, samples, z = zero["base"], zero["samples"], zero["zero_config"]
    common = dict(init_from=base, seed=z["seed"], eval_problems=z["eval_problems"], max_new_tokens=z["max_new_tokens"])
    group = 4                                                            # expert iteration's samples per problem
    runs = {"GRPO (`train_zero.py`)": zero}
    runs["expert iteration"] = run_stage(
        f"{ROOT}/train_expert_iteration.py", reuse=True, out_dir=os.path.join(c.out_dir, "expert_iteration"),
        iters=c.ei_iters, prompts_per_iter=samples // (c.ei_iters * group), group_size=group,
        temperature=z["temperature"], verify="outcome", **common)
    runs["PPO"] = run_stage(
        f"{ROOT}/train_ppo.py", reuse=True, out_dir=os.path.join(c.out_dir, "ppo"), rewards=z["rewards"],
        iters=samples // c.ppo_batch_size, batch_size=c.ppo_batch_size, temperature=z["temperature"],
        temperature_end=z["temperature"], **common)

    model, tok, ckpt = load_model(base)
    task, task_seed = task_of(ckpt["config"])
    test = make_problems(z["eval_problems"], "test", task_seed, task)
    stats = {"the base": answer_stats(model, tok, test)}
    for name, s in runs.items():
        model, tok, _ = load_model(s["checkpoint"])
        stats[name] = answer_stats(model, tok, test)
    lines = [f"From the base `{base}`, rewarded only for a right final answer (PPO and GRPO: `{z['rewards']}`; "
             f"expert iteration keeps the right answers), about {samples} sampled answers each, seed {z['seed']}. "
             f"Held-out greedy answers to {len(test)} problems, evaluated the same way for every row; one run each.",
             "", "| | samples | wall | accuracy | worked-step rate | reasoning rate | response length |",
             "|---|---|---|---|---|---|---|"]
    for name, st in stats.items():
        s = runs.get(name)
        n, wall = (s["samples"], f"{s['wall_seconds']:.0f} s") if s else ("–", "–")
        lines.append(f"| {name} | {n} | {wall} | {st['accuracy']:.1%} | {st['worked_rate']:.1%} | "
                     f"{st['reasoning_rate']:.1%} | {st['response_length']:.1f} |")
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(ZeroAlgorithmsConfig)))
