"""Configs are dataclasses; `parse_args` turns one into a command line (`--key=value` or `--key value`).

Every problem a user can cause is a `ConfigError` whose message names the key, field, file or line; the scripts turn
it into a one-line `error: ...` and exit code 2 instead of a traceback (see `run_main`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile


class ConfigError(ValueError):
    """A user-facing error: bad config value, bad file, mismatched checkpoint."""


def _convert(name: str, typ, raw: str):
    typ = typ if isinstance(typ, type) else {"int": int, "float": float, "str": str, "bool": bool}.get(
        str(typ).replace("typing.", "").split(" ")[0], str)
    if typ is bool:
        if raw.lower() in ("1", "true", "yes", ""):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"--{name} must be true or false, got {raw!r}")
    try:
        value = typ(raw)
    except ValueError:
        raise ConfigError(f"--{name} must be {typ.__name__}, got {raw!r}") from None
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"--{name} must be a finite number, got {raw!r}")
    return value


# One name per concept in every script. An old spelling gets one line naming the new one.
RENAMED = {"sft_ckpt": "--init_from", "student_init": "--init_from", "init": "--scratch or --init_from",
           "max_iters": "--iters", "rounds": "--iters", "problems_per_round": "--prompts_per_iter",
           "ppo_epochs": "--epochs", "k": "--group_size", "orm": "--orm_ckpt", "prm": "--prm_ckpt", "out": "--out_dir",
           "seconds": "--time_limit"}


# One rule per concept, checked for every script that has the key (its own __post_init__ checks the rest).
COUNTS = ("iters", "eval_interval", "eval_problems", "max_new_tokens", "batch_size", "minibatch_size", "epochs",
          "prompts_per_iter", "group_size", "k", "num_samples", "problems", "warmup_iters", "grad_accum", "expand",
          "mc_n")                                 # whole numbers > 0 (a float of the same name is another concept)
POSITIVE = ("lr",)
NON_NEGATIVE = ("temperature", "temperature_end", "min_lr", "critic_lr", "time_limit", "mmr", "top_k",
                "test_problems", "show_samples", "kl_coef")


def check_shared(cfg):
    """The rules every script shares, by key: counts and intervals > 0, no negative temperature or rate, a device
    that exists here and a --dtype it can run, an output folder we can write. One ConfigError naming the key."""
    from nanoreason.rundir import check_out_dir          # (imports torch; config itself stays light)
    from nanoreason.training import check_dtype, pick_device

    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        count = isinstance(v, int) and not isinstance(v, bool)
        if (count and f.name in COUNTS or f.name in POSITIVE) and not v > 0:
            raise ConfigError(f"--{f.name} must be > 0, got {v}")
        if f.name in NON_NEGATIVE and v < 0:
            raise ConfigError(f"--{f.name} must be >= 0, got {v}")
    if hasattr(cfg, "device"):
        device = pick_device(cfg.device)
        if hasattr(cfg, "dtype"):
            check_dtype(device, cfg.dtype)
    if hasattr(cfg, "tool"):
        from nanoreason.tools import check_tool
        check_tool(cfg.tool)
    if hasattr(cfg, "out_dir"):
        check_out_dir(cfg.out_dir)


def parse_args(cls, argv=None):
    """Build a `cls` (a dataclass) from `--key=value` arguments. Unknown keys and bad values raise ConfigError;
    validation in the dataclass's own `__post_init__` runs afterwards, then the shared rules (`check_shared`).
    `--help` lists keys and defaults."""
    argv = sys.argv[1:] if argv is None else list(argv)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if "-h" in argv or "--help" in argv:
        print(f"{cls.__name__} options (--key=value):")
        for f in fields.values():
            print(f"  --{f.name}={f.default!r}")
        sys.exit(0)
    values = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; options look like --key=value")
        key, eq, raw = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in fields and key in RENAMED:
            raise ConfigError(f"--{key} is now {RENAMED[key]} (the same name in every script)")
        if key not in fields:
            raise ConfigError(f"unknown config key --{key}; known keys: {', '.join(fields)}")
        ftype = fields[key].type
        is_bool = ftype in (bool, "bool")
        if not eq:
            if is_bool and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
                raw = "true"
            elif i + 1 < len(argv):
                i += 1
                raw = argv[i]
            else:
                raise ConfigError(f"--{key} needs a value")
        values[key] = _convert(key, ftype, raw)
        i += 1
    cfg = cls(**values)
    check_shared(cfg)
    return cfg


def check(cond: bool, msg: str):
    if not cond:
        raise ConfigError(msg)


def int_list(text: str, key: str) -> list[int]:
    """A comma-separated list of integers such as --seeds=0,1,2, or one line naming the key."""
    try:
        xs = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{key} must be comma-separated integers, got {text!r}") from None
    check(bool(xs), f"{key} is empty")
    return xs


def run_main(main):
    """Run a script's main(), turning ConfigError into one clear line on stderr and exit code 2."""
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def to_flags(**settings) -> list[str]:
    """The inverse of `parse_args`: {"iters": 5, "resume": True} -> ["--iters=5", "--resume=True"]."""
    return [f"--{k}={v}" for k, v in settings.items()]


def run_stage(script: str, quiet: bool = False, reuse: bool = False, **settings) -> dict:
    """Run a stage exactly as from the shell (`python <script> --key=value ...`) and return the summary.json it wrote
    in `out_dir` ({} when no out_dir is given: a stage's default folder may hold an older run's summary).
    `reuse`: a finished run (a summary.json in `out_dir` whose config has these settings) is kept and its summary
    returned, not run again; one made with other settings is one line, never silently reused.
    The script's printed lines pass through (unless `quiet`); its tqdm bars do not. A failing stage raises a
    ConfigError with the stage's own last error line, so a caller stops with one line naming the stage."""
    path = os.path.join(str(settings["out_dir"]), "summary.json") if "out_dir" in settings else ""
    if reuse and path and os.path.isfile(path):
        done = json.load(open(path))
        saved = done.get("config", {})
        changed = [f"--{k}={saved[k]} (asked: {v})" for k, v in settings.items()
                   if k in saved and saved[k] != v and k != "out_dir"]           # a copied run may sit elsewhere
        if changed:
            raise ConfigError(f"{path} was made with {', '.join(changed)}: move it away to run it again")
        return done
    cmd = [sys.executable, script, *to_flags(**settings)]
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for line in p.stdout:                            # printed here, so a notebook shows it too
            if not quiet:
                print(line, end="", flush=True)
        p.wait()
        err.seek(0)
        lines = [ln for ln in err.read().replace("\r", "\n").splitlines() if ln.strip()]
    if p.returncode != 0:
        why = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "no message")
        raise ConfigError(f"{os.path.basename(script)} failed (exit {p.returncode}): {why.removeprefix('error: ')}")
    return json.load(open(path)) if path and os.path.isfile(path) else {}   # never another run's summary
