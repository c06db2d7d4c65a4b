"""Stage 4b — a process reward model (PRM): a score for every reasoning step, learnt from one of four labellings.

    python train_prm.py                       # oracle step labels -> out/prm/
    python train_prm.py --labels=mc_hard --mc_n=8 --out_dir=out/prm_mc_hard     # Math-Shepherd, hard estimation
    python train_prm.py --labels=mc_soft --mc_n=8 --out_dir=out/prm_mc_soft     # ... soft estimation
    python train_prm.py --labels=perturbed --out_dir=out/prm_perturbed          # reference steps vs corrupted ones
    torchrun --nproc_per_node=2 train_prm.py --labels=mc_hard --device=cpu     # DDP: the sampling and the MC
                                                             # rollouts split over processes, as train_orm.py

Sample `group_size` answers per training problem from the SFT policy, label every step (see nanoreason/reward_models.py),
add `references` reference solutions (every step right), and train a copy of the policy to give each label. Default
read-out: the verifier's probability of the step's line; `--readout=head`: its `reward_head` at the token that ends
the step. Reported: the PRM's step
accuracy against the oracle on answers sampled for held-out problems — possible only because our task has exact
step truth — and, for Monte-Carlo labels, how often the labels themselves agree with the oracle as N grows.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass

import torch

from nanoreason import reward_models as rm
from nanoreason import distributed
from nanoreason.checkpoint import load_start, stage_config
from nanoreason.config import check, parse_args, run_main
from nanoreason.report import plot_curves, write_summary
from nanoreason.rundir import RunDir
from nanoreason.tasks import check_data, make_problems
from nanoreason.training import DTYPES, pick_device

SFT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_sft.py")   # makes a missing start


@dataclass
class PRMConfig:
    out_dir: str = "out/prm"
    init_from: str = "out/sft/ckpt.pt"    # the policy whose answers are judged; trained first if missing
    data: str = ""                        # a GSM8K-format .jsonl/.parquet to train and test on ("": the start's task)
    test_data: str = ""                   # ... and its held-out problems ("": a fixed 20% of --data)
    seed: int = 0
    labels: str = "oracle"                # oracle, mc_hard, mc_soft, perturbed
    mc_n: int = 8                         # completions per step prefix for the Monte-Carlo labels
    problems: int = 512                   # training problems
    group_size: int = 4                   # sampled answers per problem
    temperature: float = 1.0
    max_new_tokens: int = 64
    references: int = 4096                # + reference solutions of other training problems: free, exact positives
    readout: str = "likelihood"           # likelihood: the verifier's probability of the text; head: reward_head
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    eval_problems: int = 128              # held-out problems, group_size answers each
    device: str = "auto"
    dtype: str = "float32"                # bfloat16: autocast for the training forwards (weights, Adam stay fp32)
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory

    def __post_init__(self):
        check_data(self.data, self.test_data)
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.readout in rm.READOUTS, f"unknown readout {self.readout!r}; choose from {', '.join(rm.READOUTS)}")
        check(self.references >= 0, f"references must be >= 0, got {self.references}")
        check(self.labels in rm.LABELS, f"unknown labels {self.labels!r}; choose from {', '.join(rm.LABELS)}")
        check(self.mc_n >= 1, f"mc_n must be >= 1, got {self.mc_n}")
        check(self.problems > 0 and self.group_size > 0 and self.epochs > 0 and self.eval_problems > 0,
              "problems, group_size, epochs and eval_problems must be > 0")
        check(self.lr > 0 and self.temperature > 0, "lr and temperature must be > 0")


def train(cfg: PRMConfig) -> dict:
    torch.manual_seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    run = RunDir(cfg.out_dir, "prm", inputs=[cfg.init_from])   # checks only, before any work
    policy, tok, task, task_seed = load_start(cfg.init_from, device, SFT_SCRIPT, cfg.data, cfg.test_data)
    t0 = time.time()
    log = run.start() if main else None           # every check has passed: now the folder may change
    # ---- data: step labels for the policy's own answers (or for corrupted reference solutions)
    train_problems = make_problems(cfg.problems, "train", cfg.seed + 1, task)
    agreement = {}
    if cfg.labels == "perturbed":
        examples = rm.perturbed_examples(train_problems, cfg.seed)
    else:
        mine = distributed.shard(train_problems, rank, world, "problems")          # this rank's share of the work
        reps, texts, _ = rm.policy_samples(policy, tok, mine, cfg.group_size, cfg.temperature, cfg.max_new_tokens,
                                           distributed.rank_seed(cfg.seed, rank))
        hits = rm.mc_hits(policy, tok, list(zip(reps, texts)), cfg.mc_n, cfg.temperature, cfg.max_new_tokens) \
            if cfg.labels != "oracle" else [None] * len(reps)
        reps, texts, hits = zip(*distributed.all_gather(list(zip(reps, texts, hits))))  # all ranks' answers
        oracle = [rm.oracle_labels(p, t) for p, t in zip(reps, texts)]
        if cfg.labels == "oracle":
            labels = oracle
        else:
            soft = cfg.labels == "mc_soft"
            labels = [[rm.mc_label(h, soft) for h in item] for item in hits]
            n = 1
            while n <= cfg.mc_n:                   # how well do hard MC labels from the first n rollouts match?
                pairs = [(rm.mc_label(h[:n], False), y) for item, ys in zip(hits, oracle) for h, y in zip(item, ys)]
                agreement[n] = sum(int(a == y) for a, y in pairs) / max(1, len(pairs))
                if main:
                    log.log(mc_n=n, agreement=agreement[n])
                    print(f"Monte-Carlo hard labels from {n} rollouts agree with the oracle on {agreement[n]:.1%} of steps")
                n *= 2
        examples = [(p, t, y) for p, t, y in zip(reps, texts, labels) if y]
    examples += rm.reference_examples(task, cfg.references, cfg.seed + 2, "prm")
    pos = [y for _, _, ys in examples for y in ys]
    if main:
        print(f"{len(examples)} labelled answers (with {cfg.references} reference solutions), {len(pos)} steps, "
              f"mean label {sum(pos) / max(1, len(pos)):.2f}")
    # ---- train a copy of the policy as the PRM
    model = copy.deepcopy(policy)
    model.activation_checkpointing = cfg.activation_checkpointing
    losses = rm.fit(model, tok, examples, "prm", cfg.epochs, cfg.batch_size, cfg.lr, log, cfg.seed, cfg.dtype,
                    cfg.readout)
    distributed.cleanup()
    if not main:
        return {}
    # ---- held-out step accuracy against the oracle
    test = make_problems(cfg.eval_problems, "test", task_seed, task)
    t_reps, t_texts, _ = rm.policy_samples(policy, tok, test, cfg.group_size, cfg.temperature, cfg.max_new_tokens, cfg.seed + 1)
    acc = rm.step_accuracy(model, tok, t_reps, t_texts)
    oracle_test = [y for p, t in zip(t_reps, t_texts) for y in rm.oracle_labels(p, t)]
    base = rm.majority_baseline(oracle_test)
    run.save(model, tok, None, len(losses), stage_config(task, task_seed, cfg), kind="reward_model",
             extra={"rm": "prm", "labels": cfg.labels, "readout": cfg.readout,
                    "policy": cfg.init_from})
    panels = [("PRM loss (binary cross-entropy)", ["loss"])]
    if agreement:
        panels.append(("MC hard labels = oracle (fraction of steps)", ["agreement"], {"x": "mc_n"}))
    plot_curves(os.path.join(cfg.out_dir, "prm.png"), log.rows, panels,
                title=f"PRM ({cfg.labels} labels): held-out step accuracy {acc:.1%} (majority guess {base:.1%})")
    summary = {"labels": cfg.labels, "step_accuracy": acc, "majority_baseline": base, "eval_steps": len(oracle_test),
               "train_answers": len(examples), "mc_agreement_with_oracle": agreement,
               "wall_seconds": round(time.time() - t0, 1), "checkpoint": run.ckpt, "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: PRM ({cfg.labels}) step verdicts agree with the oracle on {acc:.1%} of {len(oracle_test)} held-out "
          f"steps (always guessing the majority label: {base:.1%}) -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(PRMConfig)))
