"""Stage 4a — an outcome reward model (ORM): predict from the text alone whether an answer's final number is right.

    python train_orm.py                     # samples from out/sft/ckpt.pt, trains a copy of it -> out/orm/
    torchrun --nproc_per_node=2 train_orm.py --device=cpu    # DDP: each samples for half the problems; both train
                                                              # on all the answers, half a minibatch each

Cobbe et al. 2021: sample `group_size` answers per training problem from the SFT policy, label each by its final answer
(plus `references` reference solutions, right by construction), and train a copy of the policy to give the label.
Default read-out: the verifier's probability of the whole answer; `--readout=head`: its `reward_head` at every
completion token, read at the last (nanoreason/reward_models.py). Reported: on answers sampled for held-out problems, how often the ORM's verdict (p > 0.5) is right, against the
base rate of always guessing the majority label. `python eval.py` then uses it to rerank samples (best-of-N).
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
class ORMConfig:
    out_dir: str = "out/orm"
    init_from: str = "out/sft/ckpt.pt"    # the policy whose answers are judged; trained first if missing
    data: str = ""                        # a GSM8K-format .jsonl/.parquet to train and test on ("": the start's task)
    test_data: str = ""                   # ... and its held-out problems ("": a fixed 20% of --data)
    seed: int = 0
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
        check(self.problems > 0 and self.group_size > 0 and self.epochs > 0 and self.eval_problems > 0,
              "problems, group_size, epochs and eval_problems must be > 0")
        check(self.lr > 0 and self.temperature > 0, "lr and temperature must be > 0")


def train(cfg: ORMConfig) -> dict:
    torch.manual_seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    run = RunDir(cfg.out_dir, "orm", inputs=[cfg.init_from])   # checks only, before any work
    policy, tok, task, task_seed = load_start(cfg.init_from, device, SFT_SCRIPT, cfg.data, cfg.test_data)
    t0 = time.time()
    # ---- data: the policy's own answers, labelled by their final answer
    train_problems = distributed.shard(make_problems(cfg.problems, "train", cfg.seed + 1, task), rank, world, "problems")
    reps, texts, correct = rm.policy_samples(policy, tok, train_problems, cfg.group_size, cfg.temperature, cfg.max_new_tokens,
                                             distributed.rank_seed(cfg.seed, rank))
    examples = distributed.all_gather([(p, t, [float(c)]) for p, t, c in zip(reps, texts, correct)])   # all ranks'
    right = sum(y[0] for _, _, y in examples)
    if main:
        print(f"{len(examples)} sampled answers, {right / len(examples):.1%} right; + {cfg.references} reference solutions")
    examples += rm.reference_examples(task, cfg.references, cfg.seed + 2, "orm")
    # ---- train a copy of the policy as the ORM
    model = copy.deepcopy(policy)
    model.activation_checkpointing = cfg.activation_checkpointing
    log = run.start() if main else None           # every check has passed: now the folder may change
    losses = rm.fit(model, tok, examples, "orm", cfg.epochs, cfg.batch_size, cfg.lr, log, cfg.seed, cfg.dtype,
                    cfg.readout)
    distributed.cleanup()
    if not main:
        return {}
    # ---- held-out: does its verdict match the truth?
    test = make_problems(cfg.eval_problems, "test", task_seed, task)
    t_reps, t_texts, t_correct = rm.policy_samples(policy, tok, test, cfg.group_size, cfg.temperature, cfg.max_new_tokens,
                                                   cfg.seed + 1)
    acc = rm.outcome_accuracy(model, tok, t_reps, t_texts, t_correct)
    base = rm.majority_baseline(t_correct)
    run.save(model, tok, None, len(losses), stage_config(task, task_seed, cfg), kind="reward_model",
             extra={"rm": "orm", "readout": cfg.readout, "policy": cfg.init_from})
    plot_curves(os.path.join(cfg.out_dir, "orm.png"), log.rows, [("ORM loss (binary cross-entropy)", ["loss"])],
                title=f"ORM: held-out verdict accuracy {acc:.1%} (majority guess {base:.1%})")
    summary = {"verdict_accuracy": acc, "majority_baseline": base, "eval_answers": len(t_texts),
               "train_answers": len(examples), "wall_seconds": round(time.time() - t0, 1), "checkpoint": run.ckpt,
               "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: ORM verdicts right on {acc:.1%} of {len(t_texts)} held-out answers "
          f"(always guessing the majority label: {base:.1%}) -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(ORMConfig)))
