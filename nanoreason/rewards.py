"""Rewards: pure functions from (problem, completion text) to numbers, and their placement on tokens.

    outcome  1 if the final `#### N` is the right answer, else 0
    format   1 if the completion ends with exactly one well-formed `#### <integer>` line, else 0
    steps    one reward per reasoning step: 1 if the step oracle (`tasks.check_steps`) calls it correct, else 0

A *step* is a non-empty line before the `####` line (`tasks.split_steps`); its reward lands on the token that ends the
line. Outcome and format land on the last token of the completion. `nanoreason/env.py` uses the same definitions.
"""
from __future__ import annotations

import re

import torch

from nanoreason.config import ConfigError
from nanoreason.tasks import Problem, check_steps, extract_answer, is_step

REWARD_NAMES = ("outcome", "format", "steps")
SHAPINGS = ("none", "clip", "delta", "clip+delta")
_FINAL = re.compile(r"\n?####[ \t]*[-\u2212]?\d[\d,]*[ \t]*$")


def outcome_reward(problem: Problem, completion: str) -> float:
    return float(extract_answer(completion) == problem.answer)


def format_reward(completion: str) -> float:
    """1 iff the text ends with a single `#### <integer>` line (what `extract_answer` needs), whatever its value."""
    return float(completion.count("####") == 1 and extract_answer(completion) is not None
                 and bool(_FINAL.search(completion.rstrip("\n"))))


def step_rewards(problem: Problem, completion: str) -> list[float]:
    """The dense process reward: 1.0 / 0.0 per step from the oracle."""
    return [float(v) for v in check_steps(problem, completion)]


def shape_step_rewards(r: list[float], shaping: str = "none", eta: float = 0.5) -> list[float]:
    """Step-reward shaping of Gao et al. 2024 ("On designing effective RL reward at training time for LLM reasoning").
    clip:  r_k <- min(r_k - eta, 0)       (no step can earn a positive reward: no profit from extra steps)
    delta: r_k <- r_k - r_{k+1}, last keeps its own   (the sum telescopes to r_1: repeating steps pays nothing)"""
    if shaping not in SHAPINGS:
        raise ConfigError(f"unknown shaping {shaping!r}; choose from {', '.join(SHAPINGS)}")
    r = list(r)
    if "clip" in shaping:
        r = [min(x - eta, 0.0) for x in r]
    if "delta" in shaping:
        r = [r[k] - r[k + 1] for k in range(len(r) - 1)] + r[-1:]
    return r


def parse_weights(spec: str) -> dict[str, float]:
    """"outcome=1,format=0.1" -> {"outcome": 1.0, "format": 0.1}; names and numbers are checked."""
    weights = {}
    for part in [p for p in spec.split(",") if p.strip()]:
        name, eq, value = part.partition("=")
        name = name.strip()
        if name not in REWARD_NAMES:
            raise ConfigError(f"unknown reward {name!r} in rewards={spec!r}; choose from {', '.join(REWARD_NAMES)}")
        try:
            w = float(value) if eq else 1.0
        except ValueError:
            raise ConfigError(f"reward weight for {name!r} must be a number, got {value!r}") from None
        if w != w or w in (float("inf"), float("-inf")):
            raise ConfigError(f"reward weight for {name!r} must be finite, got {value!r}")
        weights[name] = w
    if not weights:
        raise ConfigError(f"rewards={spec!r} names no reward")
    return weights


def compound_reward(problem: Problem, completion: str, weights: dict[str, float], shaping: str = "none",
                    eta: float = 0.5, step_r: list[float] | None = None) -> tuple[float, list[float]]:
    """(sequence reward = weighted outcome + format, per-step rewards = weight * shaped step rewards). `step_r`: the
    raw step rewards from elsewhere (a learned PRM) instead of the oracle's."""
    seq = weights.get("outcome", 0.0) * outcome_reward(problem, completion) + \
        weights.get("format", 0.0) * format_reward(completion)
    steps = []
    if weights.get("steps", 0.0):
        raw = step_rewards(problem, completion) if step_r is None else step_r
        steps = [weights["steps"] * x for x in shape_step_rewards(raw, shaping, eta)]
    return seq, steps


def step_end_tokens(token_bytes: list[bytes], prose: bool = False) -> list[int]:
    """Index of the token that ends each step (a `split_steps` line: non-empty, before the `####` line; with `prose`,
    real GSM8K text, only a line with a calculator annotation), in order."""
    ends, total = [], 0
    for b in token_bytes:                          # ends[i] = byte offset just past token i
        total += len(b)
        ends.append(total)
    out, offset = [], 0
    for line in b"".join(token_bytes).split(b"\n"):
        end, offset = offset + len(line), offset + len(line) + 1      # `end` = offset of this line's newline
        text = line.decode("utf-8", errors="replace").strip()
        if text.startswith("####"):
            break
        if is_step(text, prose):                   # the token holding the newline (or the last token)
            out.append(next((i for i, e in enumerate(ends) if e > end), len(ends) - 1))
    return out


def token_rewards(seq_reward: float, step_r: list[float], step_ends: list[int], length: int) -> torch.Tensor:
    """(length,) tensor: each step reward on its end token, the sequence reward on the last token."""
    r = torch.zeros(length)
    for x, i in zip(step_r, step_ends):
        r[min(i, length - 1)] += x
    if length:
        r[length - 1] += seq_reward
    return r
