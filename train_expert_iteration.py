"""Stage 3b — expert iteration (rejection-sampling fine-tuning): sample, keep what a verifier accepts, imitate it.

    python train_expert_iteration.py                    # from out/sft/ckpt.pt -> out/expert_iteration/
    python train_expert_iteration.py --verify=steps     # keep only answers whose every step the oracle accepts
    torchrun --nproc_per_node=2 train_expert_iteration.py --device=cpu   # DDP: each samples half the problems;
                                                         # both fine-tune on all kept answers, half a minibatch each

One iteration (Anthony et al. 2017; STaR, Zelikman et al. 2022; ReST-EM, Singh et al. 2023; Havrilla et al. 2024):
  1. sample `group_size` completions for each of `prompts_per_iter` fresh training problems;
  2. keep the verified-correct ones (`verify=outcome`: the final answer; `verify=steps`: the answer and every step),
     dropping duplicates of the same completion for the same problem;
  3. fine-tune on the kept set with the SFT loss (`epochs` passes), then repeat with the improved model.
No reward model, no critic, no advantage: the only RL ingredient is that the model trains on its own filtered samples.
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from nanoreason import distributed
from nanoreason.checkpoint import load_start, stage_config
from nanoreason.config import check, parse_args, run_main
from nanoreason.evaluate import evaluate_and_show
from nanoreason.report import plot_curves, write_summary
from nanoreason.rollouts import keep_verified, sample_groups
from nanoreason.rundir import RunDir
from nanoreason.tasks import check_data, make_problems
from nanoreason.training import DTYPES, encode_pairs, finetune, pick_device

SFT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_sft.py")   # makes a missing start


@dataclass
class EIConfig:
    out_dir: str = "out/expert_iteration"
    init_from: str = "out/sft/ckpt.pt"    # the start; trained with the default SFT config if missing
    data: str = ""                        # a GSM8K-format .jsonl/.parquet to train and test on ("": the start's task)
    test_data: str = ""                   # ... and its held-out problems ("": a fixed 20% of --data)
    seed: int = 0
    iters: int = 8
    prompts_per_iter: int = 256
    group_size: int = 4                   # samples per problem
    temperature: float = 1.0
    max_new_tokens: int = 64
    verify: str = "outcome"               # outcome: the final answer is right; steps: ... and every step is
    epochs: int = 1                       # passes over each iteration's kept set
    batch_size: int = 32
    lr: float = 1e-4
    eval_problems: int = 256
    show_samples: int = 2
    device: str = "auto"
    dtype: str = "float32"                # bfloat16: autocast for the training forwards (weights, Adam stay fp32)
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory

    def __post_init__(self):
        check_data(self.data, self.test_data)
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.group_size >= 1, f"group_size (samples per problem) must be >= 1, got {self.group_size}")
        check(self.iters > 0 and self.prompts_per_iter > 0 and self.epochs > 0 and self.batch_size > 0,
              "iters, prompts_per_iter, epochs and batch_size must be > 0")
        check(self.verify in ("outcome", "steps"), f"verify must be 'outcome' or 'steps', got {self.verify!r}")
        check(self.lr > 0 and self.temperature > 0, "lr and temperature must be > 0")


def train(cfg: EIConfig) -> dict:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    run = RunDir(cfg.out_dir, "expert_iteration", inputs=[cfg.init_from])   # checks only, before any work

    policy, tok, task, task_seed = load_start(cfg.init_from, device, SFT_SCRIPT, cfg.data, cfg.test_data)
    t0 = time.time()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    policy.activation_checkpointing = cfg.activation_checkpointing
    ddp = distributed.wrap(policy, world)                      # no head trained; DDP averages gradients over ranks
    test = make_problems(cfg.eval_problems, "test", task_seed, task)
    log, acc_before = None, None
    if main:                                                   # rank 0 evaluates and logs
        log = run.start()                              # every check has passed: now the folder may change
        acc_before = evaluate_and_show(policy, tok, test, 0, cfg.show_samples)
        log.log(step=0, accuracy=acc_before, samples=0, wall=0.0)
    acc, gen, samples = acc_before, torch.Generator(device=device), 0
    for it in tqdm(range(cfg.iters), desc="expert iteration", disable=not main):
        torch.manual_seed(cfg.seed * 1_000_003 + it)
        # ---- 1. sample group_size per problem
        problems, b = sample_groups(policy, tok, task, cfg.prompts_per_iter, cfg.group_size, cfg.seed * 1_000_003 + it,
                                    {"outcome": 1.0}, cfg.max_new_tokens, cfg.temperature, gen, rank=rank, world=world)
        samples += len(problems) * world                  # this rank sampled its share of the problems
        # ---- 2. keep the verified ones, deduplicated (every rank gets all ranks' kept ones)
        kept = distributed.all_gather(keep_verified(problems, b.texts, b.correct.tolist(), cfg.verify))
        # ---- 3. imitate them
        examples = encode_pairs(tok, kept)
        losses = finetune(ddp, optimizer, tok, examples, cfg.epochs, cfg.batch_size, step=it,
                          dtype=cfg.dtype) if examples else []
        train_acc = distributed.mean(b.correct.mean().item())   # over all ranks' samples
        if not main:
            continue
        acc = evaluate_and_show(policy, tok, test, it + 1, cfg.show_samples)
        log.log(step=it + 1, samples=samples, train_accuracy=train_acc, kept=len(kept),
                solved=len({p.question for p, _ in kept}) / cfg.prompts_per_iter,
                loss=sum(losses) / max(1, len(losses)), accuracy=acc, wall=time.time() - t0)
        run.save(policy, tok, optimizer, it + 1, stage_config(task, task_seed, cfg),
                 extra={"wall_seconds": time.time() - t0, "accuracy_before": acc_before})

    distributed.cleanup()
    if not main:
        return {}
    wall = time.time() - t0
    plot_curves(os.path.join(cfg.out_dir, "expert_iteration.png"), log.rows,
                [("held-out / sampled accuracy", ["accuracy", "train_accuracy"]),
                 ("problems with a kept solution", ["solved"])],
                title=f"expert iteration: held-out accuracy {acc_before:.1%} -> {acc:.1%}", x="samples")
    summary = {"algo": "expert_iteration", "accuracy_before": acc_before, "accuracy_after": acc,
               "gain": acc - acc_before, "eval_problems": len(test), "wall_seconds": round(wall, 1),
               "samples": samples, "checkpoint": run.ckpt, "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: expert iteration held-out accuracy {acc_before:.1%} -> {acc:.1%} in {wall:.0f}s -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(EIConfig)))
