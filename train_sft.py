"""Stage 1 — supervised fine-tuning (SFT) from scratch on our word problems.

    python train_sft.py                      # 1-2 minutes on a 2-core CPU; writes out/sft/
    python train_sft.py --iters=1500         # longer: 98.8% (docs/ppo.md)
    python train_sft.py --resume             # continue out/sft/ckpt.pt
    torchrun --nproc_per_node=2 train_sft.py --device=cpu    # DDP: each process takes half of every batch
    python train_sft.py --grad_accum=4 --dtype=bfloat16 --activation_checkpointing   # less memory per step

Each step draws fresh problems from the task generator; the loss is next-token cross-entropy on the *solution*
tokens only (the question is context, not something to imitate). Every `eval_interval` steps we greedy-decode a
fixed held-out set and count exact final answers.
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass
from itertools import islice

import torch
from tqdm import tqdm

from nanoreason import distributed
from nanoreason.checkpoint import load_model, restore_rng
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.evaluate import evaluate_and_show, prompt_text
from nanoreason.model import GPT, GPTConfig
from nanoreason.pretrained import load_gpt2
from nanoreason.report import plot_curves, write_summary
from nanoreason.rundir import RunDir
from nanoreason.tasks import TaskConfig, check_data, file_problems, make_problems, stream
from nanoreason.tokenizer import PATTERNS, Tokenizer
from nanoreason.training import DTYPES, clip_gradients, cosine_lr, make_optimizer, pick_device, sft_backward, sft_batch


@dataclass
class SFTConfig:
    out_dir: str = "out/sft"
    seed: int = 0
    # the task (nanoreason/tasks.py holds its defaults: 2 steps of + - * on numbers up to 20); or local GSM8K files
    min_steps: int = TaskConfig.min_steps
    max_steps: int = TaskConfig.max_steps
    max_value: int = TaskConfig.max_value
    max_factor: int = TaskConfig.max_factor
    ops: str = TaskConfig.ops
    data: str = ""                 # a local GSM8K-format .jsonl/.parquet to train on instead of generated problems
    test_data: str = ""            # ... and its held-out problems ("": a fixed 20% of --data, never trained on)
    gsm8k_train: str = ""          # the older spellings of --data and --test_data
    gsm8k_test: str = ""
    # tokenizer and model
    vocab_size: int = 512          # BPE tokens, before the special tokens
    numbers: str = "digits"        # digits: "23" is "2","3"; whole: a number's digits may merge into one token
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 160
    # optimisation
    batch_size: int = 32
    iters: int = 700
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_iters: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # evaluation, logging
    eval_interval: int = 350
    eval_problems: int = 256
    max_new_tokens: int = 64
    # going bigger (README "Going bigger")
    grad_accum: int = 1            # microbatches per optimizer step; the gradient is the whole batch's either way
    dtype: str = "float32"         # float32 or bfloat16 (autocast of the forward passes)
    activation_checkpointing: bool = False   # recompute each block's activations in backward instead of keeping them
    resume: bool = False
    gpt2_dir: str = ""             # start from GPT-2-family weights + tokenizer in this local Hugging Face directory
    init_from: str = ""            # start from this checkpoint's weights and optimizer (continued SFT)
    time_limit: float = 0.0        # > 0: stop after this many seconds of wall time (the equal-time control)
    repeat_step_prob: float = 0.0  # this fraction of training solutions restate one step on a second line: a start
                                   # that sometimes pads, for the reward-hacking experiment (bench/reward_hacking.py)
    answers_only: bool = False     # learn only each solution's final line "#### N": imitation when only outcomes
                                   # are known (the control of train_zero.py, docs/zero.md)
    device: str = "auto"

    def __post_init__(self):
        check(not (self.gsm8k_train and self.data) and not (self.gsm8k_test and self.test_data),
              "--gsm8k_train/--gsm8k_test are the older names of --data/--test_data: give one of each")
        self.data, self.test_data = self.data or self.gsm8k_train, self.test_data or self.gsm8k_test
        self.gsm8k_train = self.gsm8k_test = ""
        check_data(self.data, self.test_data)
        check(not (self.resume and self.init_from), "use either --resume or --init_from, not both")
        check(not (self.gpt2_dir and self.init_from), "use either --gpt2_dir or --init_from, not both")
        check(self.time_limit >= 0, f"time_limit must be >= 0, got {self.time_limit}")
        check(0 <= self.repeat_step_prob <= 1, f"repeat_step_prob must be in [0, 1], got {self.repeat_step_prob}")
        check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        check(self.grad_accum > 0, f"grad_accum must be > 0, got {self.grad_accum}")
        check(self.dtype in DTYPES, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        check(self.iters > 0, f"iters must be > 0, got {self.iters}")
        check(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")
        check(self.eval_interval > 0, f"eval_interval must be > 0, got {self.eval_interval}")
        check(self.eval_problems > 0, f"eval_problems must be > 0, got {self.eval_problems}")
        check(self.vocab_size >= 256, f"vocab_size must be >= 256 (one token per byte), got {self.vocab_size}")
        check(self.numbers in PATTERNS, f"numbers must be one of {sorted(PATTERNS)}, got {self.numbers!r}")
        check(self.numbers == "digits" or not (self.gpt2_dir or self.init_from),
              "--numbers sets how a tokenizer trained here splits numbers; with --gpt2_dir or --init_from the "
              "tokenizer comes from there, so leave --numbers out")
        self.task()   # validates the task knobs
        self.model_config(self.vocab_size + 3)

    def task(self) -> TaskConfig:
        return TaskConfig(self.min_steps, self.max_steps, self.max_value, self.max_factor, self.ops, self.data,
                          self.test_data)

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd)


def repeat_a_step(p, rng: random.Random):
    """The problem with one of its solution's step lines written twice (the oracle calls both copies correct)."""
    lines = p.solution.split("\n")
    k = rng.randrange(len(lines) - 1)                    # a step line, not the final "#### N"
    return dataclasses.replace(p, solution="\n".join(lines[:k + 1] + lines[k:]))


def data(cfg: SFTConfig):
    """(train_batch(step) -> problems, test problems, corpus text for the tokenizer)."""
    task = cfg.task()
    test = make_problems(cfg.eval_problems, "test", cfg.seed, task)

    def draw(step):                                      # a deterministic batch per step: resuming needs no replay
        it = stream("train", seed=cfg.seed * 1_000_003 + step, cfg=task)
        batch = [next(it) for _ in range(cfg.batch_size)]
        if cfg.repeat_step_prob:
            rng = random.Random(f"{cfg.seed}:{step}:repeat")
            batch = [repeat_a_step(p, rng) if rng.random() < cfg.repeat_step_prob else p for p in batch]
        return batch
    corpus = file_problems(task, "train") if task.data else list(islice(stream("train", cfg.seed - 1, task), 4000))
    text = "\n".join(prompt_text(p.question) + p.solution for p in corpus)

    def train_batch(step):                               # --answers_only: the same batch, without its worked steps
        batch = draw(step)
        return [dataclasses.replace(p, solution=f"#### {p.answer}") for p in batch] if cfg.answers_only else batch
    return train_batch, test[:cfg.eval_problems], text


def train(cfg: SFTConfig) -> dict:
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rank, world, device = distributed.setup(pick_device(cfg.device))   # world = 1 unless started by torchrun
    main = rank == 0                                                   # only rank 0 evaluates and writes files
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ConfigError(f"batch_size={cfg.batch_size} cannot be split into {world} processes x grad_accum="
                          f"{cfg.grad_accum} equal microbatches; use a multiple of {world * cfg.grad_accum}")
    run = RunDir(cfg.out_dir, "sft", resume=cfg.resume, inputs=[cfg.init_from])   # checks only, before any work
    ckpt_path = run.ckpt
    train_batch, test, corpus = data(cfg)

    if cfg.resume:                                    # the checkpoint is the start: where it came from may differ
        ckpt = run.checked_resume(dataclasses.asdict(cfg), may_change=("init_from", "gpt2_dir"))
        model, tok, _ = load_model(ckpt_path, device=device)
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt)
        start, wall_before = ckpt["step"], ckpt["extra"].get("wall_seconds", 0.0)
        print(f"resuming from {ckpt_path} at step {start}")
    else:
        if cfg.init_from:                                 # continue another run's weights and optimizer
            model, tok, ckpt = load_model(cfg.init_from, device=device)
            optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
            if ckpt.get("optimizer"):
                optimizer.load_state_dict(ckpt["optimizer"])
        elif cfg.gpt2_dir:                                 # pretrained GPT-2 weights and tokenizer (local files)
            model, tok = load_gpt2(cfg.gpt2_dir, device)
            optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        else:
            tok = Tokenizer.train(corpus, cfg.vocab_size, cfg.numbers)
            model = GPT(cfg.model_config(tok.n_vocab)).to(device)
            optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        start, wall_before = 0, 0.0
    longest = max(len(tok.encode(prompt_text(p.question))) for p in test)
    if longest + cfg.max_new_tokens > cfg.block_size:
        raise ConfigError(f"the longest test question is {longest} tokens; with max_new_tokens={cfg.max_new_tokens} "
                          f"it needs block_size >= {longest + cfg.max_new_tokens}, got block_size={cfg.block_size}")
    model.activation_checkpointing = cfg.activation_checkpointing
    ddp = distributed.wrap(model, world)                  # no head trained; DDP averages gradients over ranks
    log = run.start() if main else None                  # every check has passed: now the folder may change
    if main:
        tok.save(os.path.join(cfg.out_dir, "tokenizer.json"))
        print(f"model: {model.num_params() / 1e6:.2f}M parameters; vocabulary {tok.n_vocab}; device {device}"
              + (f"; {world} processes" if world > 1 else ""))

    def evaluate(step):
        done = log.find("accuracy", step)
        if done:                                        # a resumed run that had already evaluated this step
            return done["accuracy"]
        acc = evaluate_and_show(model, tok, test, step, show=1, max_new_tokens=cfg.max_new_tokens)
        log.log(step=step, accuracy=acc, wall=wall_before + time.time() - t0)
        return acc

    acc, tokens, train_time = None, 0, 0.0          # throughput: tokens forwarded, time in training steps
    model.train()
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc="sft", disable=not main)
    for step in bar:
        if cfg.time_limit and distributed.all_sum(time.time() - t0 > cfg.time_limit) > 0:   # every rank stops
            tqdm.write(f"time limit of {cfg.time_limit:.0f}s reached at step {step}")
            cfg.iters = step
            break
        if step % cfg.eval_interval == 0 and main:
            acc = evaluate(step)
        for g in optimizer.param_groups:
            g["lr"] = cosine_lr(step, cfg.iters, cfg.lr, cfg.min_lr, cfg.warmup_iters)
        t_step = time.time()
        mine = distributed.shard(train_batch(step), rank, world)       # this process's share of the batch,
        micro = [sft_batch(tok, mine[i::cfg.grad_accum], cfg.block_size) for i in range(cfg.grad_accum)]  # in parts
        optimizer.zero_grad(set_to_none=True)
        loss = sft_backward(ddp, micro, device, cfg.dtype, step)       # the gradient of the whole batch's mean loss
        clip_gradients(model.parameters(), cfg.grad_clip, step)
        optimizer.step()
        tokens += sum(x.numel() for x, _ in micro)
        train_time += time.time() - t_step
        if step % 10 == 0 and main:
            log.log(step=step, loss=loss, lr=optimizer.param_groups[0]["lr"])
            bar.set_postfix(loss=f"{loss:.3f}")
        if (step + 1) % cfg.eval_interval == 0 and main:
            run.save(model, tok, optimizer, step + 1, cfg, extra={"wall_seconds": wall_before + time.time() - t0})
    tokens_per_second = distributed.all_sum(tokens).item() / max(train_time, 1e-9)     # all ranks' tokens
    if not main:
        distributed.cleanup()
        return {}
    if start < cfg.iters or acc is None:
        acc = evaluate(cfg.iters)
    wall = wall_before + time.time() - t0
    run.save(model, tok, optimizer, cfg.iters, cfg, extra={"wall_seconds": wall})
    plot_curves(os.path.join(cfg.out_dir, "sft.png"), log.rows,
                [("loss (solution tokens)", ["loss"], "log"), ("held-out greedy accuracy", ["accuracy"])],
                title=f"SFT: {model.num_params() / 1e6:.2f}M params, accuracy {acc:.1%}")
    summary = {"accuracy_after": acc, "eval_problems": len(test), "wall_seconds": round(wall, 1),
               "params": model.num_params(), "steps": cfg.iters, "processes": world,
               "tokens_per_second": round(tokens_per_second), "checkpoint": ckpt_path,
               "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: accuracy {acc:.1%} on {len(test)} held-out problems in {wall:.0f}s -> {cfg.out_dir}/")
    distributed.cleanup()
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(SFTConfig)))
