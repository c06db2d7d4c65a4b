"""Checkpoints: one file with everything needed to resume or to sample.

    {"kind": "policy" | "reward_model", "model": state_dict, "model_config": {...}, "tokenizer": {...},
     "optimizer": state_dict | None, "step": int, "rng": {...}, "config": {...the script's config...}}

Saved atomically (write `path.tmp`, then rename): a crash mid-save never destroys the previous checkpoint. The stages
save through `rundir.RunDir.save`, which also refuses non-finite weights and records the stage and its log length.
Loaded with `torch.load(weights_only=True)`: a checkpoint file cannot run code.
"""
from __future__ import annotations

import dataclasses
import os
import random

import torch

from nanoreason.config import ConfigError, run_stage
from nanoreason.model import GPT, GPTConfig
from nanoreason.tasks import TaskConfig, task_from_config
from nanoreason.tokenizer import Tokenizer


def save_checkpoint(path: str, model: GPT, tokenizer: Tokenizer, optimizer=None, step: int = 0, config=None,
                    kind: str = "policy", extra: dict | None = None):
    model = getattr(model, "module", model)          # unwrap DDP
    ckpt = {
        "kind": kind,
        "model": model.state_dict(),
        "model_config": dataclasses.asdict(model.cfg),
        "tokenizer": tokenizer.to_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else (config or {}),
        "extra": extra or {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)                            # atomic on POSIX


def load_checkpoint(path: str, kind: str | None = None) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {str(e)[:200]})") from None
    missing = [k for k in ("kind", "model", "model_config", "tokenizer", "step") if k not in ckpt]
    if missing:
        raise ConfigError(f"{path}: not a nanoreason checkpoint (missing field {missing[0]!r})")
    if kind is not None and ckpt["kind"] != kind:
        raise ConfigError(f"{path}: is a {ckpt['kind']} checkpoint, but a {kind} checkpoint is needed here")
    return ckpt


def load_model(path: str, kind: str | None = "policy", device="cpu") -> tuple[GPT, Tokenizer, dict]:
    """(model, tokenizer, checkpoint dict) from a checkpoint file."""
    ckpt = load_checkpoint(path, kind)
    try:
        cfg = GPTConfig(**ckpt["model_config"])
    except TypeError as e:
        raise ConfigError(f"{path}: model_config does not fit this version of GPTConfig ({e})") from None
    tok = Tokenizer.from_dict(ckpt["tokenizer"], where=f"{path}: tokenizer")
    model = GPT(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device), tok, ckpt


def check_compatible(path: str, ckpt: dict, model_cfg: GPTConfig | None = None, tokenizer: Tokenizer | None = None):
    """Raise a ConfigError naming the first field where `ckpt` differs from the model or tokenizer asked for."""
    if model_cfg is not None:
        for k, v in dataclasses.asdict(model_cfg).items():
            if ckpt["model_config"].get(k) != v:
                raise ConfigError(f"{path}: made with model config {k}={ckpt['model_config'].get(k)!r}, "
                                  f"but this run asks for {k}={v!r}")
    if tokenizer is not None and ckpt["tokenizer"] != tokenizer.to_dict():
        raise ConfigError(f"{path}: made with a different tokenizer than this run's")


def stage_config(task: TaskConfig, task_seed: int, cfg) -> dict:
    """What a stage saves as its checkpoint's config: its own settings, the task it trained on, and the task's seed
    (it fixes the held-out test set) under its own key — a stage's own --seed must not move the next stage's test set.
    The task's fields come last: a stage's empty --data means "the start's task", which is what it trained on."""
    return {**dataclasses.asdict(cfg), **dataclasses.asdict(task), "task_seed": task_seed}


def task_of(config: dict) -> tuple[TaskConfig, int]:
    """(task, task seed) from a checkpoint's config (an SFT checkpoint's own seed is its task seed)."""
    return task_from_config(config), config.get("task_seed", config.get("seed", 0))


def with_data(task: TaskConfig, data: str = "", test_data: str = "") -> TaskConfig:
    """`task`, or with --data given the problems of that GSM8K-format file instead (and of --test_data held out;
    TaskConfig refuses --test_data alone)."""
    return dataclasses.replace(task, data=data, test_data=test_data) if data or test_data else task


def load_start(path: str, device="cpu", make_with: str | None = None, data: str = "", test_data: str = ""):
    """A stage's start: (policy, tokenizer, task config, task seed) from a policy checkpoint; the task is the one the
    start trained on, or the file `data` (`with_data`). If there is none and `make_with` names the stage script that
    makes it (train_sft.py for the RL stages), that script runs first with its defaults and `--out_dir` set to the
    checkpoint's folder (and says so), so `python train_<rl>.py` works on a fresh clone."""
    if not os.path.exists(path) and make_with:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"{path}: no such checkpoint; under torchrun make it first: python "
                              f"{os.path.basename(make_with)} --out_dir={os.path.dirname(path) or '.'}")
        print(f"no checkpoint at {path}: making it first with python {os.path.basename(make_with)}")
        run_stage(make_with, out_dir=os.path.dirname(path) or ".")
    policy, tok, ckpt = load_model(path, kind="policy", device=device)
    if tok.n_vocab != policy.cfg.vocab_size:
        raise ConfigError(f"{path}: its tokenizer has {tok.n_vocab} tokens but its model expects "
                          f"{policy.cfg.vocab_size}: the tokenizer does not match the model")
    task, task_seed = task_of(ckpt.get("config", {}))
    return policy, tok, with_data(task, data, test_data), task_seed


def continued_sft_settings(path: str) -> dict:
    """train_sft.py settings that continue the SFT run in `path` (its weights, optimizer, task and model) at the
    learning rate its schedule ended on; add --out_dir and --iters or --time_limit (the equal-compute controls)."""
    saved = load_checkpoint(path)["config"]
    drop = ("out_dir", "resume", "init_from", "time_limit", "iters", "max_iters", "lr", "min_lr", "warmup_iters",
            "eval_interval", "task_seed")
    lr = saved.get("min_lr", 3e-4)
    return {**{k: v for k, v in saved.items() if k not in drop}, "init_from": path, "lr": lr, "min_lr": lr,
            "warmup_iters": 1, "eval_interval": 10**9}


def resume(ckpt: dict, path: str, tok: Tokenizer, model: GPT, optimizer) -> dict:
    """Load a run's own checkpoint `ckpt` (from rundir.RunDir.checked_resume) back into `model` and `optimizer` and
    restore the RNGs; returns it."""
    if ckpt["tokenizer"] != tok.to_dict():
        raise ConfigError(f"{path}: made from a start with a different tokenizer than this run's")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng(ckpt)
    print(f"resuming from {path} at iteration {ckpt['step']}")
    return ckpt


def restore_rng(ckpt: dict):
    torch.set_rng_state(ckpt["rng"]["torch"])
    random.setstate(ckpt["rng"]["python"])
