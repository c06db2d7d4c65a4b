"""Stage 5 — distillation: a strong teacher into a smaller student.

    python train_distill.py                                  # token-level forward KL on reference solutions
    python train_distill.py --kind=reverse                   # ... reverse KL; --kind=jsd --beta=0.5 for JSD
    python train_distill.py --data=teacher                   # token-level on the teacher's own samples
    python train_distill.py --mode=sequence                  # fine-tune on the teacher's verified samples
    python train_distill.py --mode=on_policy --kind=reverse  # the student samples, the teacher grades every token
    python train_distill.py --curriculum                     # problems with fewer steps first
    python train_distill.py --resume                         # continue out/distill/ from its last checkpoint

The teacher is our best RL-trained model (out/ppo/ckpt.pt; trained with train_ppo.py's defaults first if missing).
The student is a smaller GPT with the teacher's tokenizer: a fresh one of the size below, or `--init_from=` a
checkpoint (e.g. a small SFT run). One iteration = `batch_size` sequences (see nanoreason/distill.py):

  mode        text the loss is computed on                         loss
  token       reference solutions (--data=dataset) or teacher      T^2 * mean_t D(teacher_t, student_t), D = --kind
              samples (--data=teacher)
  sequence    the teacher's samples that are right (group_size per problem)  cross-entropy on those tokens
  on_policy   the student's own samples                             T^2 * mean_t D(teacher_t, student_t)

bench/distillation.py compares the modes with the same-size student trained by SFT alone and by RL alone.

    torchrun --nproc_per_node=2 train_distill.py --device=cpu     # DDP: each process takes half of every batch
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from kernels.kl import KINDS
from nanoreason import distributed
from nanoreason.checkpoint import load_model, load_start, resume, stage_config
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.distill import curriculum_max_steps, distill_loss
from nanoreason.evaluate import evaluate_and_show
from nanoreason.model import GPT, GPTConfig
from nanoreason.report import plot_curves, write_summary
from nanoreason.rollouts import completion_hidden, keep_verified, sample_groups
from nanoreason.rundir import RunDir
from nanoreason.tasks import make_problems, stream
from nanoreason.training import (DTYPES, autocast, check_finite, clip_gradients, cosine_lr, encode_pairs,
                                 make_optimizer, pick_device, sft_batch, sft_share)

MODES = ("token", "sequence", "on_policy")

PPO_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_ppo.py")   # makes a missing teacher


@dataclass
class DistillConfig:
    out_dir: str = "out/distill"
    teacher_ckpt: str = "out/ppo/ckpt.pt"   # the teacher; trained with train_ppo.py's defaults if missing
    init_from: str = ""                     # "": a fresh student of the size below; or a policy checkpoint
    n_layer: int = 2                        # the fresh student (the default teacher: 4 layers, 128 wide)
    n_head: int = 2
    n_embd: int = 64
    seed: int = 0
    mode: str = "token"                     # token, sequence or on_policy (table above)
    data: str = "dataset"                   # token mode: dataset (reference solutions) or teacher (its samples)
    kind: str = "forward"                   # forward KL(teacher||student), reverse KL(student||teacher), jsd
    beta: float = 0.5                       # jsd's mixture weight
    temperature: float = 1.0                # softens both distributions in the divergence (loss scaled by T^2)
    sample_temperature: float = 1.0         # of the teacher's / student's samples
    group_size: int = 4                     # sequence mode: teacher samples per problem
    curriculum: bool = False                # max reasoning steps per problem rises over the first half of training
    iters: int = 600
    batch_size: int = 32                    # sequences per iteration
    lr: float = 3e-3                        # cosine schedule lr -> min_lr after warmup (as train_sft.py)
    min_lr: float = 3e-4
    warmup_iters: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_new_tokens: int = 64
    eval_interval: int = 200
    eval_problems: int = 256
    backend: str = "auto"                   # kernels.kl_div: see kernels/logprobs.py auto_backend
    device: str = "auto"
    resume: bool = False
    dtype: str = "float32"                # bfloat16: autocast for the training forwards (weights, Adam stay fp32)
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory

    def __post_init__(self):
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        check(self.data in ("dataset", "teacher"), f"data must be dataset or teacher, got {self.data!r}")
        check(self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        check(0 < self.beta < 1, f"beta must be in (0, 1), got {self.beta}")
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        check(self.sample_temperature > 0, f"sample_temperature must be > 0, got {self.sample_temperature}")
        check(self.iters > 0 and self.batch_size > 0, f"iters and batch_size must be > 0, got {self.iters}, "
              f"{self.batch_size}")
        check(self.group_size >= 1, f"group_size must be >= 1, got {self.group_size}")
        check(self.mode != "sequence" or self.batch_size >= self.group_size,
              f"mode=sequence needs batch_size >= group_size (batch_size // group_size problems), got {self.batch_size} < {self.group_size}")
        check(self.eval_interval > 0 and self.eval_problems > 0, "eval_interval and eval_problems must be > 0")
        check(self.backend in ("auto", "torch", "chunked", "triton"),
              f"backend must be auto, torch, chunked or triton, got {self.backend!r}")


def load_teacher(path: str, device: str):
    """(teacher, tokenizer, task, task seed). A missing teacher is made first: train_ppo.py with its defaults."""
    teacher, tok, task, task_seed = load_start(path, device, make_with=PPO_SCRIPT)
    return teacher.eval().requires_grad_(False), tok, task, task_seed


def make_student(cfg: DistillConfig, teacher: GPT, tok, device: str) -> GPT:
    if not cfg.init_from:
        return GPT(GPTConfig(vocab_size=teacher.cfg.vocab_size, block_size=teacher.cfg.block_size,
                             n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)).to(device)
    student, stok, _ = load_model(cfg.init_from, kind="policy", device=device)
    if stok.to_dict() != tok.to_dict():
        raise ConfigError(f"{cfg.init_from}: the student's tokenizer differs from the teacher's "
                          f"({cfg.teacher_ckpt}); distillation compares distributions token by token, so both "
                          f"need the same tokenizer")
    if student.cfg.block_size < teacher.cfg.block_size:
        raise ConfigError(f"{cfg.init_from}: block_size {student.cfg.block_size} is shorter than the teacher's "
                          f"{teacher.cfg.block_size}")
    return student


def train(cfg: DistillConfig) -> dict:
    torch.manual_seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    run = RunDir(cfg.out_dir, "distill", resume=cfg.resume, inputs=[cfg.teacher_ckpt, cfg.init_from])   # checks only

    # ---- build: frozen teacher, student, optimizer
    teacher, tok, task, task_seed = load_teacher(cfg.teacher_ckpt, device)
    student = make_student(cfg, teacher, tok, device)
    t0 = time.time()
    ns, nt = student.num_params(), teacher.num_params()
    if ns > nt and main:
        print(f"warning: the student ({ns / 1e6:.2f}M parameters) is larger than its teacher ({nt / 1e6:.2f}M); "
              f"allowed, but that is not distillation into a smaller model")
    optimizer = make_optimizer(student, cfg.lr, cfg.weight_decay)
    student.activation_checkpointing = cfg.activation_checkpointing
    ddp = distributed.wrap(student, world)                     # no head trained; DDP averages gradients over ranks
    test = make_problems(cfg.eval_problems, "test", task_seed, task)
    what = f"{cfg.mode}" + (f"/{cfg.data}" if cfg.mode == "token" else "") + \
        (f", {cfg.kind}" if cfg.mode != "sequence" else "")
    start, wall_before, acc_before, teacher_acc = 0, 0.0, None, None
    if cfg.resume:                                   # the same student, the same mode: continue where it stopped
        ck = resume(run.checked_resume(stage_config(task, task_seed, cfg)), run.ckpt, tok, student, optimizer)
        start, wall_before = ck["step"], ck["extra"]["wall_seconds"]
        acc_before, teacher_acc = ck["extra"]["accuracy_before"], ck["extra"]["teacher_accuracy"]
    log, acc = None, None
    if main:
        log = run.start()                             # every check has passed: now the folder may change
        print(f"distillation ({what}): teacher {nt / 1e6:.2f}M -> student {ns / 1e6:.2f}M parameters; device {device}"
              + (f"; {world} processes" if world > 1 else ""))
        if teacher_acc is None:
            teacher_acc = evaluate_and_show(teacher, tok, test, 0, show=0, max_new_tokens=cfg.max_new_tokens)
        print(f"teacher held-out accuracy {teacher_acc:.1%}")

    def evaluate(it):
        acc = evaluate_and_show(student, tok, test, it, show=1, max_new_tokens=cfg.max_new_tokens)
        log.log(step=it, accuracy=acc, sequences=it * cfg.batch_size, wall=wall_before + time.time() - t0)
        return acc

    if main and acc_before is None:
        acc_before = evaluate(0)
    acc = log.find("accuracy")["accuracy"] if main else None    # the start's, or a resumed run's last evaluation
    gen = torch.Generator(device=device)
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=f"distill {cfg.mode}", disable=not main)
    for it in bar:
        for g in optimizer.param_groups:
            g["lr"] = cosine_lr(it, cfg.iters, cfg.lr, cfg.min_lr, cfg.warmup_iters)
        seed = cfg.seed * 1_000_003 + it
        task_now = dataclasses.replace(task, max_steps=curriculum_max_steps(it, cfg.iters, task.min_steps,
                                                                            task.max_steps)) if cfg.curriculum else task
        row, loss = {}, None
        # ---- the text to learn from, and the loss on it (under torchrun: this rank's share of the batch; every
        # token-mean is scaled to its share of the mean over all ranks' tokens, distributed.token_scale)
        if cfg.mode == "token" and cfg.data == "dataset":
            problems = [p for p, _ in zip(stream("train", seed=seed, cfg=task_now), range(cfg.batch_size))]
            problems = distributed.shard(problems, rank, world)
            x, y = (t.to(device) for t in sft_batch(tok, problems, student.cfg.block_size))   # (B, T) each
            with torch.no_grad():
                t_logits = teacher(x)                                                        # (B, T, V)
            student.train()
            with autocast(device, cfg.dtype):
                s_logits = ddp(x)                                                            # (B, T, V)
            loss = distill_loss(s_logits, t_logits, y != -1, cfg.kind, cfg.temperature, cfg.beta, cfg.backend)
            loss = loss * distributed.token_scale(y != -1)
        elif cfg.mode == "sequence":
            problems, b = sample_groups(teacher, tok, task_now, cfg.batch_size // cfg.group_size, cfg.group_size, seed, {"outcome": 1.0},
                                        cfg.max_new_tokens, cfg.sample_temperature, gen, rank=rank, world=world)
            examples = encode_pairs(tok, keep_verified(problems, b.texts, b.correct.tolist()))
            kept = int(distributed.all_sum(len(examples)))   # over all ranks
            row.update(sampled_accuracy=b.correct.mean().item(), kept=kept)
            if kept:                                         # none on any rank: the teacher got nothing right
                student.train()
                with autocast(device, cfg.dtype):
                    loss, n = sft_share(ddp, tok, examples, device)
                loss = loss * distributed.token_scale(n)
        else:                                                # token on teacher samples, or on-policy (student's)
            sampler = student if cfg.mode == "on_policy" else teacher
            _, b = sample_groups(sampler, tok, task_now, cfg.batch_size, 1, seed, {"outcome": 1.0},
                                 cfg.max_new_tokens, cfg.sample_temperature, gen, rank=rank, world=world)
            with torch.no_grad():
                t_logits = teacher.lm_head(completion_hidden(teacher, b.ids, b.mask, b.P))   # (B, T, V)
            student.train()
            with autocast(device, cfg.dtype):
                s_logits = student.lm_head(completion_hidden(ddp, b.ids, b.mask, b.P))      # (B, T, V)
            loss = distill_loss(s_logits, t_logits, b.completion_mask,
                                cfg.kind, cfg.temperature, cfg.beta, cfg.backend)
            loss = loss * distributed.token_scale(b.completion_mask)
            row.update(sampled_accuracy=b.correct.mean().item())
        if loss is not None:
            check_finite(loss, it, "distillation loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(student.parameters(), cfg.grad_clip, it)
            optimizer.step()
            row.update(loss=loss.item())
        row = distributed.all_mean(row)                      # averaged over ranks (the loss: the global mean)
        if not main:
            continue
        if "loss" in row:
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        log.log(step=it + 1, lr=optimizer.param_groups[0]["lr"], **row, wall=wall_before + time.time() - t0)
        if (it + 1) % cfg.eval_interval == 0 or it + 1 == cfg.iters:
            acc = evaluate(it + 1)
            run.save(student, tok, optimizer, it + 1, stage_config(task, task_seed, cfg),
                     extra={"wall_seconds": wall_before + time.time() - t0, "teacher_accuracy": teacher_acc,
                            "accuracy_before": acc_before})

    distributed.cleanup()
    if not main:
        return {}
    wall = wall_before + time.time() - t0
    plot_curves(os.path.join(cfg.out_dir, "distill.png"), log.rows,
                [("loss", ["loss"], "log"), ("accuracy", ["accuracy", "sampled_accuracy"])],
                title=f"distillation ({what}): student {acc_before:.1%} -> {acc:.1%}, teacher {teacher_acc:.1%}")
    summary = {"mode": cfg.mode, "data": cfg.data, "kind": cfg.kind, "teacher_accuracy": teacher_acc,
               "accuracy_before": acc_before, "accuracy_after": acc, "student_params": ns, "teacher_params": nt,
               "eval_problems": len(test), "wall_seconds": round(wall, 1), "iters": cfg.iters,
               "sequences": cfg.iters * cfg.batch_size, "checkpoint": run.ckpt, "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: student held-out accuracy {acc_before:.1%} -> {acc:.1%} (teacher {teacher_acc:.1%}) "
          f"in {wall:.0f}s -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(DistillConfig)))
