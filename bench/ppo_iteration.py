"""Where a PPO iteration's time goes on the CPU, and what the sampler's own log-probs save.

    python bench/ppo_iteration.py                   # 12 batches of 64 completions from out/sft/ckpt.pt

Each round samples the default batch (64 fresh problems, one completion each, up to 64 tokens at T = 0.7) and then
times, on that same batch, the no-grad passes that PPO's advantages need:
  - the old log-probs and hidden states taken from the sampler (rollouts.old_logprobs, what train_ppo.py does),
  - the same computed by one more forward of the policy over the batch (what it would cost without them),
  - the frozen reference's forward (the KL penalty), which runs either way,
and one forward + backward of the policy over the batch (an epoch of the update costs about this). Every part of a
round runs on the same batch, one after the other, so a drift in the machine's speed touches all of them.
Writes out_dir/table.md; the last line is the saving.
"""
import copy
import dataclasses
import os
import time
from dataclasses import dataclass

import torch

from nanoreason.checkpoint import load_start
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import write_table
from nanoreason.rollouts import completion_forward, old_logprobs, sample_groups


@dataclass
class IterationConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/ppo_iteration"
    rounds: int = 12
    batch_size: int = 64
    max_new_tokens: int = 64
    temperature: float = 0.7

    def __post_init__(self):
        check(self.rounds > 0 and self.batch_size > 0, "rounds and batch_size must be > 0")


def without_sampler(b):
    """The same batch without the sampler's log-probs: old_logprobs then runs the policy's forward."""
    return dataclasses.replace(b, rollout=dataclasses.replace(b.rollout, logprobs=None, hidden=None))


def main(c: IterationConfig):
    policy, tok, task, _ = load_start(c.init_from, "cpu")
    ref = copy.deepcopy(policy).eval().requires_grad_(False)          # the frozen start, as in train_ppo.py
    gen, seconds = torch.Generator(), {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return out

    tokens = 0
    for r in range(c.rounds):
        _, b = timed(f"sample {c.batch_size} completions (with their log-probs)", lambda: sample_groups(
            policy, tok, task, c.batch_size, 1, 1000 + r, {"outcome": 1.0}, c.max_new_tokens, c.temperature, gen,
            with_logprobs=True))
        tokens += int(b.mask.sum())
        with torch.no_grad():
            timed("old log-probs from the sampler", lambda: old_logprobs(policy, b, c.temperature))
            timed("old log-probs from a forward", lambda: old_logprobs(policy, without_sampler(b), c.temperature))
            timed("reference forward", lambda: completion_forward(ref, b.ids, b.mask, b.P, c.temperature, False))
        policy.train()
        timed("forward + backward (about one epoch of the update)", lambda: completion_forward(
            policy, b.ids, b.mask, b.P, c.temperature)[0].sum().backward())
        policy.zero_grad(set_to_none=True)
    per = {k: v / c.rounds for k, v in seconds.items()}
    lines = [f"One PPO round's parts from `{c.init_from}`: {c.batch_size} completions of up to {c.max_new_tokens} "
             f"tokens, {tokens / c.rounds:.0f} real tokens a batch (prompt + completion); mean of {c.rounds} rounds "
             f"on {torch.get_num_threads()} threads.", "", "| part | seconds a round |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in per.items()]
    before = per["old log-probs from a forward"] + per["reference forward"]
    after = per["old log-probs from the sampler"] + per["reference forward"]
    lines += ["", f"the advantages' no-grad passes: {before:.3f} s a round with one more forward of the policy, "
              f"{after:.3f} s with the sampler's log-probs ({before / after:.1f}x)"]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(IterationConfig)))
