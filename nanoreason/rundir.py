"""A stage's output folder, out/<stage>/, handled so that nothing a user made is lost or misreported:

  * checked before any work (a folder we can write; not the folder of the run's own start checkpoint);
  * a fresh run keeps the earlier run's outputs in out/<stage>/old/<time>/, and only once every check has passed;
  * a checkpoint is written only from finite weights and optimizer state;
  * --resume continues only a run of the same stage with the same settings (run length and logging may change), and
    cuts metrics.jsonl back to the rows that run had logged when it saved the checkpoint, so no row appears twice;
  * a NaN or inf stops the run with one line naming the step and the newest good checkpoint on disk.

    run = RunDir(cfg.out_dir, "ppo", resume=cfg.resume, inputs=[cfg.init_from])   # first, before any work
    ...build, check everything else...
    ckpt = run.checked_resume(dataclasses.asdict(cfg)) if cfg.resume else None
    log = run.start()                                                             # JsonlLogger
    ...loop: log.log(...); run.save(model, tok, optimizer, step, config, extra=...)
"""
from __future__ import annotations

import os
import tempfile
import time

import torch

from nanoreason import distributed
from nanoreason.checkpoint import load_checkpoint, save_checkpoint
from nanoreason.config import ConfigError
from nanoreason.report import JsonlLogger, read_jsonl

# what a stage writes into its folder; a fresh run moves these (and *.png, *.prev) into old/<time>/
OUTPUTS = ("ckpt.pt", "metrics.jsonl", "summary.json", "tokenizer.json")
# settings a --resume may change: the run's length and its logging; anything else would mix two runs into one
RESUME_MAY_CHANGE = ("iters", "max_samples", "time_limit", "eval_interval", "show_samples", "resume", "out_dir",
                     "device", "activation_checkpointing")

_active = None        # the RunDir this process writes into: a NaN's message names its newest good checkpoint


class NonFiniteError(ConfigError):
    """A loss, gradient, weight or logit became NaN or inf. The run stops; the message says which checkpoint on disk
    is the newest good one (checkpoints are only written from finite weights, so the one on disk is good)."""

    def __init__(self, what: str):
        super().__init__(f"{what}; stopping. " + (_active.newest_good() if _active else ""))


def check_out_dir(path: str, flag: str = "--out_dir"):
    """One line, before any work, when `path` cannot hold a run's outputs (empty, a file, or not writable)."""
    if not path:
        raise ConfigError(f"{flag} is empty: name a folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a file, not a folder")
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        raise ConfigError(f"{flag}={path}: {p} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise ConfigError(f"{flag}={path}: cannot write in {p} ({e.strerror})") from None


def finite_state(model, optimizer=None) -> str:
    """'' when every weight and optimizer tensor is finite and the model's output on a short probe sequence is too,
    else what is not (weights can be finite yet so large that every forward overflows)."""
    model = distributed.unwrap(model)
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            return f"weight {name}"
    probe = torch.arange(min(16, model.cfg.block_size), device=next(model.parameters()).device)[None]  # (1, T)
    was_training = model.training
    with torch.no_grad():
        ok = torch.isfinite(model.eval()(probe % model.cfg.vocab_size)).all()
    model.train(was_training)
    if not ok:
        return "the model's output (its weights are finite but too large)"
    for i, state in enumerate((optimizer.state_dict()["state"] if optimizer is not None else {}).values()):
        for k, v in state.items():
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
                return f"optimizer state {k} of parameter {i}"
    return ""


class RunDir:
    def __init__(self, out_dir: str, stage: str, resume: bool = False, inputs=()):
        """Checks only; nothing on disk changes until `start()`. `inputs`: the checkpoints this run reads."""
        check_out_dir(out_dir)
        self.dir, self.stage, self.resume = out_dir, stage, resume
        self.ckpt = os.path.join(out_dir, "ckpt.pt")
        self.old_dir, self.log, self.rows_at_ckpt = "", None, None
        here = os.path.realpath(out_dir)
        for p in inputs:
            if p and os.path.realpath(os.path.dirname(os.path.abspath(p))) == here:
                raise ConfigError(f"--out_dir={out_dir} holds this run's input {p}; a run there would set it aside. "
                                  f"Choose another --out_dir")
        if resume and not os.path.isfile(self.ckpt):
            old = os.path.join(out_dir, "old")
            raise ConfigError(f"--resume: no checkpoint at {self.ckpt}"
                              + (f" (earlier runs are kept in {old}/)" if os.path.isdir(old) else ""))

    def checked_resume(self, config: dict, may_change=()) -> dict:
        """The run's own checkpoint, once it is known to come from this stage with this run's settings."""
        ckpt = load_checkpoint(self.ckpt)
        stage = ckpt.get("extra", {}).get("stage")
        if stage and stage != self.stage:
            raise ConfigError(f"{self.ckpt} was written by train_{stage}.py; --resume continues a train_{self.stage}.py"
                              f" run (to start from it, use --init_from={self.ckpt} and another --out_dir)")
        saved, free = ckpt.get("config", {}), set(RESUME_MAY_CHANGE) | set(may_change)
        changed = [f"{k} (saved {saved[k]!r}, now {v!r})" for k, v in config.items()
                   if k not in free and k in saved and saved[k] != v]
        if changed:
            raise ConfigError(f"{self.ckpt}: --resume with changed settings: {', '.join(changed)}; only run length "
                              f"and logging may change (start a fresh run for new settings)")
        self.rows_at_ckpt = ckpt.get("extra", {}).get("metrics_rows")
        return ckpt

    def start(self) -> JsonlLogger:
        """After every check has passed: a fresh run sets the earlier run's outputs aside; a resumed one cuts
        metrics.jsonl back to the rows logged before its checkpoint. Returns the run's metrics logger."""
        global _active
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "metrics.jsonl")
        if not self.resume:
            self.set_aside()
        elif self.rows_at_ckpt is not None and os.path.exists(path):
            rows = read_jsonl(path)[:self.rows_at_ckpt]
            with open(path + ".tmp", "w") as f:
                f.writelines(JsonlLogger.line(r) for r in rows)
            os.replace(path + ".tmp", path)
        self.log = JsonlLogger(path, resume=self.resume)
        _active = self
        return self.log

    def set_aside(self):
        names = sorted(n for n in os.listdir(self.dir) if os.path.isfile(os.path.join(self.dir, n)) and
                       (n in OUTPUTS or n.endswith((".png", ".prev", ".tmp"))))
        if not names:
            return
        when = max(os.path.getmtime(os.path.join(self.dir, n)) for n in names)
        base = os.path.join(self.dir, "old", time.strftime("%Y%m%d-%H%M%S", time.localtime(when)))
        self.old_dir, i = base, 1
        while os.path.exists(self.old_dir):
            i += 1
            self.old_dir = f"{base}-{i}"
        os.makedirs(self.old_dir)
        for n in names:
            os.replace(os.path.join(self.dir, n), os.path.join(self.old_dir, n))
        print(f"kept the earlier run's outputs in {self.old_dir}/")

    def save(self, model, tok, optimizer, step: int, config, kind: str = "policy", extra: dict | None = None):
        """The checkpoint, only from finite weights and optimizer state (else NonFiniteError, the old one kept)."""
        bad = finite_state(model, optimizer)
        if bad:
            raise NonFiniteError(f"{bad} became NaN or inf by step {step}")
        extra = {**(extra or {}), "stage": self.stage, "metrics_rows": len(self.log.rows) if self.log else None}
        save_checkpoint(self.ckpt, model, tok, optimizer, step, config, kind=kind, extra=extra)

    def newest_good(self) -> str:
        """A true sentence about the newest good checkpoint of this run, for a message that stops it."""
        if os.path.isfile(self.ckpt):
            try:
                step = torch.load(self.ckpt, map_location="cpu", weights_only=True)["step"]
            except Exception:
                step = "?"
            return f"The newest good checkpoint is {self.ckpt} (step {step})."
        return "No checkpoint of this run was written" + \
            (f"; the earlier run's outputs are in {self.old_dir}/." if self.old_dir else ".")
