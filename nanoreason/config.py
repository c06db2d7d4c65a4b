"""Configs are dataclasses; `parse_args` turns one into a command line (`--key=value` or `--key value`).

Every problem a user can cause is a `ConfigError` whose message names the key, field, file or line; the scripts turn
it into a one-line `error: ...` and exit code 2 instead of a traceback (see `run_main`).
"""
from __future__ import annotations

import dataclasses
import sys


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
        return typ(raw)
    except ValueError:
        raise ConfigError(f"--{name} must be {typ.__name__}, got {raw!r}") from None


def parse_args(cls, argv=None):
    """Build a `cls` (a dataclass) from `--key=value` arguments. Unknown keys and bad values raise ConfigError;
    validation in the dataclass's own `__post_init__` runs afterwards. `--help` lists keys and defaults."""
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
    return cls(**values)


def check(cond: bool, msg: str):
    if not cond:
        raise ConfigError(msg)


def run_main(main):
    """Run a script's main(), turning ConfigError into one clear line on stderr and exit code 2."""
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
