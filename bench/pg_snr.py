"""How much of a policy gradient is signal? Compare independent batch gradients of RL and of SFT.

    python bench/pg_snr.py                                   # the default SFT start (out/sft)
    python bench/pg_snr.py --init_from=out/sft_whole/ckpt.pt  # the whole-number start

For each estimator, take the gradient of its loss at the SFT start on `batches` independent batches of fresh
training problems and average the cosine between every pair. If each batch gradient is g_i = s + n_i (the true
gradient s plus independent noise of variance sigma^2), then E[cos(g_i, g_j)] ~ |s|^2 / (|s|^2 + sigma^2): the
fraction of the gradient's squared length that is signal. From it follow the signal-to-noise ratio
|s| / sigma = sqrt(c / (1 - c)) and the batch that would make it 1: B (1 - c) / c.

Estimators (all token-mean losses over the same completion tokens, trunk parameters only):
  sft        cross-entropy on the reference solutions (imitation; what continued SFT follows)
  outcome    REINFORCE on sampled answers, outcome reward whitened over the batch (PPO's first step)
  steps      per-token credit from the oracle's step verdicts with Delta shaping: each token's return is its own
             step's verdict (Gao et al. 2024); the `####` line after the last step returns 0, as in
             `train_ppo.py --rewards=steps=1 --shaping=delta` with a zero critic
  group      outcome reward minus the mean of `group_size` samples of the same problem (GRPO / REINFORCE group baseline)

The batches differ in their *problems* as well as in their samples, so a cosine near 0 can mean either noise or a
gradient that is about each batch's own problems (its arithmetic facts) and shares nothing with the next batch's.
Two more figures tell these apart for `outcome`:
  same problems   the pairwise cosine of `batches` outcome gradients on the first batch's problems, each from fresh
                  samples: only the sampling noise differs;
  vs SFT          the cosine between each batch's outcome gradient and the SFT gradient on the same problems: how
                  far RL's step points where imitation's would.
"""
import itertools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nanoreason import rl
from nanoreason.checkpoint import load_start
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import write_summary, write_table
from nanoreason.rewards import parse_weights
from nanoreason.rollouts import collect, completion_forward, sample_groups
from nanoreason.training import sft_batch, sft_loss


@dataclass
class SNRConfig:
    init_from: str = "out/sft/ckpt.pt"
    out_dir: str = "out/pg_snr"
    batches: int = 6                  # independent batches per estimator: batches * (batches - 1) / 2 pairs
    batch_size: int = 128             # completions (or reference solutions) per batch
    group_size: int = 8               # samples per problem for `group`
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self):
        check(self.batches >= 2, f"batches must be >= 2 (cosines need pairs), got {self.batches}")
        check(self.group_size >= 2 and self.batch_size % self.group_size == 0,
              f"group_size must be >= 2 and divide batch_size={self.batch_size}, got {self.group_size}")


def pairwise_cosine(grads: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of rows of `grads` (N, D)."""
    return sum(F.cosine_similarity(grads[i], grads[j], 0).item()
               for i, j in itertools.combinations(range(len(grads)), 2)) / (len(grads) * (len(grads) - 1) / 2)


def trunk_grad(model, loss) -> torch.Tensor:
    """The gradient of `loss` over the transformer's own weights (not the value / reward heads), flattened."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "head" not in n and p.grad is not None])


def pg_loss(model, b, adv, temperature: float):
    """PPO's clipped loss at its first step (old = new log-probs, ratio 1): its gradient is REINFORCE's."""
    logp, _, _ = completion_forward(model, b.ids, b.mask, b.P, temperature, with_entropy=False)   # (B, T)
    return rl.ppo_policy_loss(logp, logp.detach(), adv, b.completion_mask)[0]


def outcome(b):
    return rl.outcome_advantages(b.correct, b.completion_mask)                  # (B, T)


def main(c: SNRConfig):
    torch.manual_seed(c.seed)
    model, tok, task, task_seed = load_start(c.init_from, "cpu")
    model.eval()                                      # throughout: no dropout, every gradient is the sampling policy's
    gen, grads = torch.Generator(), {"sft": [], "outcome": [], "steps": [], "group": []}
    first = None
    for r in range(c.batches):
        seed = 10_000 + c.seed * 100 + r
        problems, b = sample_groups(model, tok, task, c.batch_size, 1, seed, parse_weights("steps=1"), 64,
                                    c.temperature, gen, shaping="delta")
        first = first or problems
        x, y = sft_batch(tok, problems, model.cfg.block_size)          # imitation on the very same problems
        grads["sft"].append(trunk_grad(model, sft_loss(model, x, y)))
        grads["outcome"].append(trunk_grad(model, pg_loss(model, b, outcome(b), c.temperature)))
        m = b.completion_mask
        own_step = b.scores.flip(1).cumsum(1).flip(1)           # return-to-go of Delta-shaped verdicts (B, T)
        grads["steps"].append(trunk_grad(model, pg_loss(model, b, rl.masked_whiten(own_step, m), c.temperature)))
        _, b = sample_groups(model, tok, task, c.batch_size // c.group_size, c.group_size, seed, parse_weights("outcome=1"), 64,
                             c.temperature, gen)
        adv = rl.group_advantages(b.correct.float(), c.group_size, scale=False)[:, None].expand_as(b.completion_mask)
        grads["group"].append(trunk_grad(model, pg_loss(model, b, adv, c.temperature)))
    same = [grads["outcome"][0]]                     # the first batch's problems again, with fresh samples
    for r in range(1, c.batches):
        gen.manual_seed(20_000 + c.seed * 100 + r)
        b = collect(model, tok, first, parse_weights("outcome=1"), "none", 64, c.temperature, gen)
        same.append(trunk_grad(model, pg_loss(model, b, outcome(b), c.temperature)))
    rows = {}
    print(f"{c.init_from}: {c.batches} batches of {c.batch_size}, mean pairwise cosine of the batch gradients")
    for name, g in grads.items():
        cos = pairwise_cosine(torch.stack(g))
        snr = (max(cos, 0.0) / (1 - cos)) ** 0.5
        need = c.batch_size * (1 - cos) / cos if cos > 0 else float("inf")
        rows[name] = {"cosine": round(cos, 4), "snr": round(snr, 3), "batch_for_snr_1": round(need)
                      if need != float("inf") else None}
        print(f"  {name:8s} cos {cos:+.3f}   signal/noise {snr:.2f}   batch for signal = noise: "
              + (f"{need:,.0f}" if need != float("inf") else "never (no signal seen)"))
    same_cos = pairwise_cosine(torch.stack(same))
    along = [F.cosine_similarity(o, f, 0).item() for o, f in zip(grads["outcome"], grads["sft"])]
    rows["outcome_same_problems"] = {"cosine": round(same_cos, 4)}
    rows["outcome_vs_sft"] = {"mean": round(sum(along) / len(along), 4), "min": round(min(along), 4),
                              "max": round(max(along), 4)}
    print(f"  outcome on one batch's problems, {c.batches} fresh sets of samples: cos {same_cos:+.3f}")
    print(f"  outcome vs SFT on the same problems: cos {rows['outcome_vs_sft']['mean']:+.3f} "
          f"(batches from {min(along):+.3f} to {max(along):+.3f})")
    os.makedirs(c.out_dir, exist_ok=True)
    lines = [f"{c.batches} batches of {c.batch_size} from `{c.init_from}`", "",
             "| estimator | mean pairwise cosine | signal / noise | batch for signal = noise |", "|---|---|---|---|"]
    for name in grads:
        r = rows[name]
        lines.append(f"| {name} | {r['cosine']:+.3f} | {r['snr']:.2f} | "
                     + (f"{r['batch_for_snr_1']:,}" if r["batch_for_snr_1"] is not None else "never") + " |")
    lines += ["", f"Outcome gradient on one batch's problems with fresh samples: cosine {same_cos:+.3f}. Outcome vs "
              f"SFT on the same problems: {rows['outcome_vs_sft']['mean']:+.3f} ({min(along):+.3f} to {max(along):+.3f})."]
    write_table(os.path.join(c.out_dir, "table.md"), lines)
    write_summary(os.path.join(c.out_dir, "summary.json"), {"init_from": c.init_from, "batches": c.batches,
                                                            "batch_size": c.batch_size, "group_size": c.group_size, **rows})


if __name__ == "__main__":
    run_main(lambda: main(parse_args(SNRConfig)))
