"""Stage 0 — pretraining a base model: next-token prediction on a synthetic "web" corpus (nanoreason/corpus.py).

    python train_base.py                      # a few minutes on a 2-core CPU; writes out/base/
    python train_base.py --worked=0.5         # half the problems in the corpus shown with worked steps
    python train_base.py --worked=0 --answer_only=0.6    # none: can pure RL still find reasoning?
    python train_base.py --resume

No question/answer template, no instruction: stories, arithmetic worksheets and word problems, some followed by
worked steps, some by only the final number, some by nothing, packed into blocks as in nanoGPT. The base model
never sees a held-out test problem (the corpus draws its problems from the train split). What it does when shown a
held-out question — answer in the right format? reason first? get it right? — is measured at every evaluation and
is where pure RL (train_zero.py) starts.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nanoreason import corpus
from nanoreason.checkpoint import load_model, restore_rng
from nanoreason.config import ConfigError, check, parse_args, run_main
from nanoreason.evaluate import answer_stats
from nanoreason.model import GPT, GPTConfig
from nanoreason.report import plot_curves, write_summary
from nanoreason.rundir import RunDir
from nanoreason.tasks import TaskConfig, make_problems
from nanoreason.tokenizer import PATTERNS, Tokenizer
from nanoreason.training import check_finite, clip_gradients, cosine_lr, make_optimizer, pick_device


@dataclass
class BaseConfig:
    out_dir: str = "out/base"
    seed: int = 0
    # the task's world (nanoreason/tasks.py holds its defaults)
    min_steps: int = TaskConfig.min_steps
    max_steps: int = TaskConfig.max_steps
    max_value: int = TaskConfig.max_value
    max_factor: int = TaskConfig.max_factor
    ops: str = TaskConfig.ops
    # the corpus (nanoreason/corpus.py): document kinds, and how its word problems are shown
    stories: float = corpus.CorpusMix.stories
    worksheets: float = corpus.CorpusMix.worksheets
    problems: float = corpus.CorpusMix.problems
    worked: float = corpus.CorpusMix.worked
    answer_only: float = corpus.CorpusMix.answer_only
    corpus_docs: int = 60_000             # training documents (generated once, packed, sampled in random windows)
    # tokenizer and model (the SFT defaults, so every later stage can start from it)
    vocab_size: int = 512
    numbers: str = "digits"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 160
    # optimisation
    batch_size: int = 16                  # blocks of block_size tokens per step
    iters: int = 1100
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_iters: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # evaluation, logging
    eval_interval: int = 550
    eval_problems: int = 256              # held-out problems: zero-shot accuracy, format, reasoning, length
    val_docs: int = 500                   # held-out documents (made from held-out problems): perplexity
    max_new_tokens: int = 64
    resume: bool = False
    device: str = "auto"

    def __post_init__(self):
        self.mix()
        self.task()
        check(self.numbers in PATTERNS, f"numbers must be one of {sorted(PATTERNS)}, got {self.numbers!r}")
        check(self.vocab_size >= 256, f"vocab_size must be >= 256 (one token per byte), got {self.vocab_size}")
        check(self.corpus_docs >= 100 and self.val_docs >= 10, "corpus_docs must be >= 100 and val_docs >= 10")

    def mix(self) -> corpus.CorpusMix:
        return corpus.CorpusMix(self.stories, self.worksheets, self.problems, self.worked, self.answer_only)

    def task(self) -> TaskConfig:
        return TaskConfig(self.min_steps, self.max_steps, self.max_value, self.max_factor, self.ops)


@torch.no_grad()
def val_loss(model, val: torch.Tensor, block_size: int, device) -> float:
    """Mean next-token loss over the held-out text, in consecutive blocks."""
    model.eval()
    n = (len(val) - 1) // block_size
    x = val[:n * block_size].view(n, block_size).to(device)            # (n, T)
    y = val[1:n * block_size + 1].view(n, block_size).to(device)
    loss = sum(F.cross_entropy(model(x[i:i + 64]).flatten(0, 1).float(), y[i:i + 64].flatten(), reduction="sum")
               for i in range(0, n, 64)) / y.numel()
    model.train()
    return loss.item()


def train(cfg: BaseConfig) -> dict:
    t0 = time.time()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train_base.py runs in one process: start it with python, not torchrun")
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    run = RunDir(cfg.out_dir, "base", resume=cfg.resume)               # checks only, before any work
    task, mix = cfg.task(), cfg.mix()
    test = make_problems(cfg.eval_problems, "test", cfg.seed, task)
    config = {**dataclasses.asdict(task), **dataclasses.asdict(cfg), "task_seed": cfg.seed}

    # ---- build: corpus, tokenizer, model, optimizer (or all of it back from --resume)
    docs = corpus.documents(cfg.corpus_docs, cfg.seed, task, mix)
    if cfg.resume:
        ckpt = run.checked_resume(config)
        model, tok, _ = load_model(run.ckpt, device=device)
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt)
        start, wall_before = ckpt["step"], ckpt["extra"]["wall_seconds"]
        print(f"resuming from {run.ckpt} at step {start}")
    else:
        tok = Tokenizer.train("\n".join(docs[:4000]), cfg.vocab_size, cfg.numbers)
        model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd)).to(device)
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        start, wall_before = 0, 0.0
    data = corpus.pack(tok, docs)                                            # (N,) token ids
    val = corpus.pack(tok, corpus.documents(cfg.val_docs, cfg.seed, task, mix, split="test"))
    if len(val) <= cfg.block_size:
        raise ConfigError(f"--val_docs={cfg.val_docs} makes {len(val)} held-out tokens, less than one block of "
                          f"block_size={cfg.block_size}; use more --val_docs")
    log = run.start()                                  # every check has passed: now the folder may change
    tok.save(os.path.join(cfg.out_dir, "tokenizer.json"))
    print(f"corpus: {len(docs)} documents, {len(data) / 1e6:.2f}M tokens ({cfg.worked:.0%} of problems worked, "
          f"{cfg.answer_only:.0%} answer only); model {model.num_params() / 1e6:.2f}M parameters; device {device}")

    def evaluate(step):
        done = log.find("perplexity", step)
        if done:                                       # a resumed run that had already evaluated this step
            return done
        vl = val_loss(model, val, cfg.block_size, device)
        if step == 0:                                  # random weights: perplexity only, they answer nothing yet
            tqdm.write(f"step 0: held-out perplexity {math.exp(vl):.2f}")
            stats = {}
        else:
            stats = answer_stats(model, tok, test, max_new_tokens=cfg.max_new_tokens)
            tqdm.write(f"step {step}: held-out perplexity {math.exp(vl):.2f}; zero-shot accuracy "
                       f"{stats['accuracy']:.1%}, format {stats['format_rate']:.1%}, worked steps "
                       f"{stats['worked_rate']:.1%}, reasoning {stats['reasoning_rate']:.1%}, "
                       f"{stats['response_length']:.1f} tokens per answer")
        row = dict(step=step, val_loss=vl, perplexity=math.exp(vl), **stats, wall=wall_before + time.time() - t0)
        log.log(**row)
        return row

    model.train()
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc="base")
    for step in bar:
        if step % cfg.eval_interval == 0:
            evaluate(step)
        for g in optimizer.param_groups:
            g["lr"] = cosine_lr(step, cfg.iters, cfg.lr, cfg.min_lr, cfg.warmup_iters)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)     # resumable: the same windows
        x, y = (t.to(device) for t in corpus.random_blocks(data, cfg.batch_size, cfg.block_size, gen))
        loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())   # every token is a target
        check_finite(loss, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), cfg.grad_clip, step)
        optimizer.step()
        if step % 10 == 0:
            log.log(step=step, loss=loss.item(), lr=optimizer.param_groups[0]["lr"])
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % cfg.eval_interval == 0:
            run.save(model, tok, optimizer, step + 1, config, extra={"wall_seconds": wall_before + time.time() - t0})
    final = evaluate(cfg.iters)
    wall = wall_before + time.time() - t0
    run.save(model, tok, optimizer, cfg.iters, config, extra={"wall_seconds": wall})
    plot_curves(os.path.join(cfg.out_dir, "base.png"), log.rows,
                [("training loss (all tokens)", ["loss"], "log"), ("held-out perplexity", ["perplexity"]),
                 ("zero-shot on held-out problems", ["accuracy", "format_rate", "worked_rate", "reasoning_rate"])],
                title=f"base model: perplexity {final['perplexity']:.2f}, zero-shot accuracy {final['accuracy']:.1%}")
    first = next(r for r in log.rows if "perplexity" in r)
    summary = {"perplexity": final["perplexity"], "perplexity_before": first["perplexity"],
               **{k: final[k] for k in ("accuracy", "format_rate", "worked_rate", "reasoning_rate", "response_length")},
               "eval_problems": len(test), "corpus_tokens": len(data), "corpus_docs": len(docs),
               "params": model.num_params(), "wall_seconds": round(wall, 1), "steps": cfg.iters,
               "checkpoint": run.ckpt, "config": dataclasses.asdict(cfg)}
    write_summary(os.path.join(cfg.out_dir, "summary.json"), summary)
    print(f"done: held-out perplexity {final['perplexity']:.2f}; zero-shot accuracy {final['accuracy']:.1%}, format "
          f"{final['format_rate']:.1%}, worked steps {final['worked_rate']:.1%}, reasoning "
          f"{final['reasoning_rate']:.1%} in {wall:.0f}s -> {cfg.out_dir}/")
    return summary


if __name__ == "__main__":
    run_main(lambda: train(parse_args(BaseConfig)))
