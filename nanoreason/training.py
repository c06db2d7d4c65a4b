"""Small pieces every train_*.py script shares: device choice, optimizer, schedules, the non-finite loss guard, and
the supervised loss on completions (SFT, expert iteration, return-conditioned RL, distillation data)."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from nanoreason import distributed
from nanoreason.config import ConfigError
from nanoreason.evaluate import prompt_text
from nanoreason.rundir import NonFiniteError


def pick_device(name: str) -> str:
    """`auto` (CUDA when there is one, else the CPU), `cpu`, `cuda` or `cuda:<index>`; one line for any other name
    and for a GPU this machine does not have."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if name == "cpu":
        return name
    if kind != "cuda" or (":" in name and not index.isdigit()):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:<index>, got {name!r}")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index or 0) >= n:
        raise ConfigError(f"--device={name}: this machine has {n} CUDA device{'s' if n != 1 else ''}"
                          + ("" if n else "; use --device=cpu or --device=auto"))
    return name


def check_dtype(device: str, dtype: str) -> None:
    """One line, before any launch, when `--dtype=bfloat16` cannot run on `device`: a GPU without bf16 (before
    Ampere), or a CPU on which a bf16 matmul fails. (A CPU without native bf16 runs it emulated: slower, correct.)"""
    if dtype != "bfloat16":
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            raise ConfigError(f"--dtype=bfloat16: {torch.cuda.get_device_name(device)} has no bf16 support; use "
                              f"--dtype=float32")
        return
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except RuntimeError as e:
        raise ConfigError(f"--dtype=bfloat16: this CPU cannot run bf16 matmuls ({e}); use --dtype=float32") from None


def make_optimizer(model, lr: float, weight_decay: float = 0.0):
    """AdamW; weight decay on matrices only (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def cosine_lr(it: int, max_iters: int, lr: float, min_lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to min_lr."""
    if it < warmup:
        return lr * (it + 1) / warmup
    t = min(1.0, (it - warmup) / max(1, max_iters - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * t)) * (lr - min_lr)


def linear(start: float, end: float, frac: float) -> float:
    """A linear schedule: start at frac=0, end at frac=1."""
    return start + (end - start) * min(1.0, max(0.0, frac))


def check_finite(loss: torch.Tensor, step: int, what: str = "loss"):
    """Stop (one line naming the step and the newest good checkpoint) when the loss is NaN or inf."""
    if not torch.isfinite(loss).all():
        raise NonFiniteError(f"{what} became {loss.item()} at step {step}")


def clip_gradients(params, max_norm: float, step: int) -> float:
    """Clip the global gradient norm to `max_norm`; a NaN or inf norm stops the run before the optimizer step could
    write NaN into the weights (a finite loss can still have an overflowing gradient)."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if not torch.isfinite(norm):
        raise NonFiniteError(f"the gradient norm became {norm.item()} at step {step}")
    return norm.item()


def completion_batch(tok, examples, block_size: int):
    """(prompt ids, completion ids) pairs -> right-padded (x, y) for next-token training, end-of-text appended to each
    completion; y = -1 on prompt tokens and padding, so only the completion is learned."""
    rows = []
    for q, a in examples:
        ids = (list(q) + list(a) + [tok.eot_id])[:block_size + 1]
        rows.append((ids, len(q)))
    T = max(len(ids) for ids, _ in rows) - 1
    x = torch.full((len(rows), T), tok.eot_id, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for i, (ids, nq) in enumerate(rows):
        ids = torch.tensor(ids)
        x[i, :len(ids) - 1] = ids[:-1]
        y[i, nq - 1:len(ids) - 1] = ids[nq:]          # predict only completion tokens (and the final eot)
    return x, y


def encode_pairs(tok, pairs) -> list[tuple[list[int], list[int]]]:
    """(problem, completion text) pairs -> (prompt ids, completion ids), the input of completion_batch / finetune."""
    return [(tok.encode(prompt_text(p.question)), tok.encode(text)) for p, text in pairs]


def sft_batch(tok, problems, block_size: int):
    """Problems -> right-padded (x, y): the question is the prompt, the reference solution the completion to learn."""
    return completion_batch(tok, encode_pairs(tok, [(p, p.solution) for p in problems]), block_size)


def sft_loss(model, x, y, n_tokens=None):
    """Next-token cross-entropy over the positions where y != -1: their mean, or (gradient accumulation, DDP) their
    sum / n_tokens, with n_tokens counted over the whole batch (rl.microbatch_agg_loss explains why)."""
    logits = model(x)                                                  # (B, T, V)
    if n_tokens is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1, reduction="sum") / n_tokens


def sft_share(model, tok, examples, device):
    """(mean SFT loss over (prompt ids, completion ids) pairs, number of tokens it averages). No examples (in
    sequence-level distillation, a rank whose teacher samples were all wrong): a zero loss that still goes through
    the (DDP) model, and 0 tokens."""
    x, y = completion_batch(tok, examples or [([tok.eot_id], [])], distributed.unwrap(model).cfg.block_size)
    if not examples:
        y = torch.full_like(y, -1)
    n = int((y != -1).sum())
    return sft_loss(model, x.to(device), y.to(device), None if n else 1.0), n


def sft_backward(model, micro, device: str, dtype: str, step: int) -> float:
    """Backward of one optimizer step's SFT loss over this process's microbatches [(x, y), ...] (gradient
    accumulation; under torchrun, `model` is DDP-wrapped and the other ranks hold the rest of the batch). Every
    microbatch's token sum is divided by the token count of the WHOLE batch — all microbatches, all ranks — so the
    accumulated gradient is the big batch's token mean (rl.microbatch_agg_loss). DDP averages gradients over ranks,
    hence the count / world. Returns the whole batch's mean token loss."""
    world = distributed.world_size()
    n_tokens = distributed.all_sum(sum(int((y != -1).sum()) for _, y in micro)).item() / world
    total = torch.zeros((), device=device)
    for i, (x, y) in enumerate(micro):
        last = i == len(micro) - 1                                 # all-reduce the gradients once, at the last
        with (model.no_sync() if world > 1 and not last else contextlib.nullcontext()), autocast(device, dtype):
            part = sft_loss(model, x.to(device), y.to(device), n_tokens)
        check_finite(part, step)
        part.backward()
        total += part.detach()                                     # no .item() per microbatch: one sync per step
    return distributed.all_sum(total.cpu()).item() / world


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def autocast(device: str, dtype: str):
    """Mixed precision for forward passes: bf16 matmuls (CPU and GPU) with fp32 weights and optimizer; a no-op for
    float32. Losses and log-softmaxes are taken in fp32 (`.float()`)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    return torch.autocast(device.split(":")[0], dtype=DTYPES[dtype], enabled=dtype != "float32")


def minibatch_epochs(model, optimizer, n: int, epochs: int, batch_size: int, loss_fn, grad_clip: float = 1.0,
                     generator=None, what: str = "loss", step: int | None = None, on_step=None,
                     dtype: str = "float32") -> list[float]:
    """`epochs` shuffled passes over `n` examples: `loss_fn(indices)` gives a minibatch's mean loss and the number
    of terms it averages (tokens, labels), then one clipped optimizer step. `on_step(losses)` after each (logging,
    progress). Returns the batch losses. `dtype="bfloat16"`: loss_fn runs under autocast.
    Under torchrun (`model` DDP-wrapped, the same examples and generator on every rank) every rank draws the same
    permutation and takes its share of each minibatch, its mean scaled to its share of the minibatch's mean over
    all ranks (distributed.token_scale). A rank whose share of a small last minibatch is empty still joins DDP's
    all-reduce: with one row and a zero weight."""
    rank, world = distributed.rank(), distributed.world_size()
    model.train()
    losses = []
    for _ in range(epochs):
        perm = distributed.broadcast(torch.randperm(n, generator=generator))     # rank 0's order on every rank
        for idx in perm.split(batch_size):
            mine = idx.tolist()[rank::world]
            with autocast(next(model.parameters()).device.type, dtype):
                loss, terms = loss_fn(mine or idx.tolist()[:1])
            if not mine:                                                       # an empty share: weight 0
                loss, terms = loss * 0.0, 0
            loss = loss * distributed.token_scale(terms)                       # 1 with one process
            check_finite(loss, len(losses) if step is None else step, what)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model.parameters(), grad_clip, len(losses) if step is None else step)
            optimizer.step()
            losses.append(distributed.mean(loss.item()))                        # the minibatch's global mean
            if on_step is not None:
                on_step(losses)
    return losses


def finetune(model, optimizer, tok, examples, epochs: int, batch_size: int, grad_clip: float = 1.0,
             step: int = 0, dtype: str = "float32") -> list[float]:
    """`epochs` shuffled passes of the SFT loss over (prompt ids, completion ids) pairs; returns the batch losses.
    `model` may be DDP-wrapped (every rank passes the same examples; see minibatch_epochs)."""
    dev = next(model.parameters()).device

    def loss_fn(idx):
        return sft_share(model, tok, [examples[i] for i in idx], dev)
    return minibatch_epochs(model, optimizer, len(examples), epochs, batch_size, loss_fn, grad_clip,
                            what="fine-tuning loss", step=step, dtype=dtype)
