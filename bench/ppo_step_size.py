"""Why PPO on our SFT model needs a tiny learning rate: which token does one policy-gradient step knock over?

    python bench/ppo_step_size.py --init_from=out/sft_whole/ckpt.pt --lr=3e-4    # 30 single steps, 64 samples each
    python bench/ppo_step_size.py --init_from=out/sft_whole/ckpt.pt --lr=3e-4 --freeze=wte,wpe   # embeddings fixed
    python bench/ppo_step_size.py --init_from=out/sft_whole/ckpt.pt --lr=3e-5    # train_ppo's default rate

Each round samples 64 completions from the current policy, takes ONE Adam step on the PPO clipped loss with
outcome advantages (whitened over the batch; at the first step the clip is inactive, so this is plain REINFORCE),
re-scores the same 64 completions, and prints the sampled token whose log-prob moved most, with its context. The
summary line counts the rounds in which some token moved by more than 5 nats.
"""
from dataclasses import dataclass

import torch

from nanoreason import rl
from nanoreason.checkpoint import load_start
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.report import write_table
from nanoreason.rewards import parse_weights
from nanoreason.rollouts import completion_forward, sample_groups


@dataclass
class StepConfig:
    init_from: str = "out/sft/ckpt.pt"       # out/sft_whole: python train_sft.py --numbers=whole ...
    out_dir: str = "out/ppo_step_size"
    lr: float = 3e-4
    iters: int = 30
    batch_size: int = 64
    temperature: float = 0.7
    freeze: str = ""              # comma-separated parameter-name prefixes kept fixed, e.g. "wte,wpe" or "blocks.0"
    seed: int = 0

    def __post_init__(self):
        check(self.lr >= 0 and self.iters > 0 and self.batch_size > 0,
              f"need lr >= 0, iters > 0, batch_size > 0; got lr={self.lr}, iters={self.iters}, "
              f"batch_size={self.batch_size}")


def main(c: StepConfig):
    torch.manual_seed(c.seed)
    policy, tok, task, _ = load_start(c.init_from, "cpu")
    frozen = [f for f in c.freeze.split(",") if f]
    names = [n for n, _ in policy.named_parameters()]
    for f in frozen:
        if not any(n.startswith(f) for n in names):
            raise ConfigError(f"--freeze: no parameter name starts with {f!r} (names look like {names[0]!r})")
    params = [p for n, p in policy.named_parameters() if not n.startswith("value_head")
              and not any(n.startswith(f) for f in frozen)]
    opt = torch.optim.AdamW(params, lr=c.lr, betas=(0.9, 0.95), weight_decay=0.0)   # train_ppo's optimizer
    gen, big, steps = torch.Generator(), 0, 0
    for r in range(c.iters):
        _, b = sample_groups(policy, tok, task, c.batch_size, 1, 1000 + r, parse_weights("outcome=1"), 64,
                             c.temperature, gen)
        if b.correct.min() == b.correct.max():                                         # every answer scored alike
            print(f"iteration {r:2d}: all {len(b.texts)} answers {'right' if b.correct[0] else 'wrong'}: "
                  "no advantage, no step")
            continue
        steps += 1
        m = b.completion_mask                                                          # (B, T)
        adv = rl.outcome_advantages(b.correct, b.completion_mask)     # (B, T) outcome advantage per token
        logp = completion_forward(policy, b.ids, b.mask, b.P, c.temperature, with_entropy=False)[0]   # eval mode:
        old = logp.detach()                                                # no dropout, so this is the sampling policy
        loss, _ = rl.ppo_policy_loss(logp, old, adv, m, 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            new = completion_forward(policy, b.ids, b.mask, b.P, c.temperature, with_entropy=False)[0]
        moved = (new - old) * m                                                        # (B, T)
        i, t = divmod(moved.abs().flatten().argmax().item(), moved.shape[1])
        comp = b.ids[i, b.P:].tolist()
        ctx = tok.decode(comp[max(0, t - 6):t]) + "[" + tok.decode(comp[t:t + 1]) + "]"
        big += moved.abs().max().item() > 5
        print(f"iteration {r:2d}: max |change| {moved.abs().max():5.1f} nats: log p {old[i, t]:6.2f} -> {new[i, t]:6.2f}"
              f" (advantage {adv[i, t]:+.2f}) at {ctx!r}")
    write_table(f"{c.out_dir}/table.md", [
        "| start | lr | frozen | steps with a token moved > 5 nats |", "|---|---|---|---|",
        f"| `{c.init_from}` | {c.lr:g} | {', '.join(frozen) or 'nothing'} | {big} of {steps} |"])


if __name__ == "__main__":
    run_main(lambda: main(parse_args(StepConfig)))
