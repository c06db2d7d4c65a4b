"""Run by tests/test_scale.py: one RL update (GRPO/RLOO's or PPO's, from the scripts) on one fixed batch, or
fine-tuning on fixed examples (training.finetune: expert iteration, RCRL; reward_models.fit: ORM/PRM), with
`python` (1 process, the whole batch) or under `torchrun` (each rank learns from its share, DDP). Writes the
updated weights of each; the test compares them.

    python -m tests.ddp_update SFT_CKPT OUT_DIR          # writes OUT_DIR/{grpo,rloo,ppo,finetune,orm}.pt
"""
import copy
import dataclasses
import os
import sys

import torch

import train_grpo
import train_ppo
from nanoreason import distributed
from nanoreason import reward_models as rm
from nanoreason.checkpoint import load_start
from nanoreason.rollouts import sample_groups
from nanoreason.training import encode_pairs, finetune

ALGOS = ("grpo", "rloo", "ppo", "finetune", "orm")


def learn(algo: str, rank: int, world: int):
    """One fresh copy of the start, one update of `algo` on this rank's share; returns the updated model."""
    policy, tok, task, _ = load_start(ckpt, "cpu")
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    problems, b = sample_groups(policy, tok, task, 8, 2, 123, {"outcome": 1}, 24, 1.0, torch.Generator())
    torch.manual_seed(0)                                                  # the same 16 rows on every rank, with
    b.scores = torch.rand(b.scores.shape) * b.completion_mask            # varied rewards (a tiny model is always
    rows = slice(rank * 16 // world, (rank + 1) * 16 // world)           # wrong); whole groups per rank
    mine = dataclasses.replace(b, rollout=None, texts=b.texts[rows], **{k: getattr(b, k)[rows] for k in
                               ("ids", "mask", "completion_mask", "scores", "correct", "formatted", "n_steps")})
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    if algo == "finetune":             # 5 examples in minibatches of 4 and 1: rank 1 has no row in the second
        examples = encode_pairs(tok, [(p, p.solution) for p in problems[:10:2]])
        finetune(distributed.wrap(policy, world), optimizer, tok, examples, epochs=2, batch_size=4)
    elif algo == "orm":                # reward_models.fit wraps the model itself
        rm.fit(policy, tok, [(p, t, [float(i % 3 == 0)]) for i, (p, t) in enumerate(zip(problems, b.texts))][:5],
               "orm", epochs=2, batch_size=4, lr=1e-3)
    elif algo == "ppo":
        cfg = train_ppo.PPOConfig(batch_size=16, minibatch_size=16, epochs=3, ent_coef=0.01)
        old_logp, old_values, adv, returns, _ = train_ppo.advantages(policy, ref, policy, mine, 0.05, cfg, 1.0)
        ddp = distributed.wrap(policy, world, heads=("value",))
        train_ppo.ppo_update(ddp, ddp, optimizer, list(policy.parameters()), mine, old_logp, old_values, adv, returns,
                             cfg, 1.0, cfg.ent_coef, 0)
    else:
        cfg = train_grpo.GRPOConfig(algo=algo, prompts_per_iter=8, group_size=2, minibatch_size=16, epochs=3,
                                    kl_coef=0.05, ent_coef=0.01)
        adv = train_grpo.advantages(b.scores.sum(1), cfg)[rows]           # within groups: the same on any split
        train_grpo.update(distributed.wrap(policy, world), ref, optimizer, mine, adv, cfg, 1.0, cfg.ent_coef, 0)
    return policy


ckpt, out = sys.argv[1:3]
torch.set_num_threads(1)
rank, world, _ = distributed.setup("cpu")
for algo in ALGOS:
    model = learn(algo, rank, world)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out, f"{algo}.pt"))
distributed.cleanup()
