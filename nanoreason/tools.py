"""Tools in the loop: the calculator of GSM8K's annotations `<<expr=result>>` (Cobbe et al. 2021).

GSM8K's solutions mark every calculation as `<<48/2=24>>24`. With the calculator on, when a row of the sampler has
written `<<48/2=`, the calculator (not the model) writes `24>>`, and the row goes on from there. What the tool wrote
is context, not an action: the rollout marks it (`Rollout.tool_mask`, 1 = written by the tool) and the trainers keep
it out of every loss term (policy, KL, entropy, value) while the model still reads it.

    calculator("48/2+3")          -> "27"     exact, with the task's own parser (never eval); "?" when it cannot
    open_call("6+3=<<6+3=")       -> "6+3"    the expression of a call waiting for its result, else None
    tool = make_tool("calculator", tok)       # what generate(..., tool=tool) needs: trigger ids and the reply
"""
from __future__ import annotations

from fractions import Fraction

import torch

from nanoreason.config import ConfigError
from nanoreason.tasks import parse_arith

TOOLS = ("none", "calculator")
ERROR = "?"             # the tool's reply to an expression it cannot compute: the step is then wrong, the row goes on
MAX_EXPR = 64           # characters: a longer "expression" is the model rambling inside a call
MAX_ABS = 10 ** 12      # a result beyond this is absurd for a word problem (and would be a long string of tokens)


def format_number(x: Fraction) -> str:
    """A number as the annotations write it: 17, -3, 2.5, 0.125; one that needs more than 6 decimals (1/3, 2**-20)
    rounded to 4."""
    places = next((k for k in range(7) if (x * 10 ** k).denominator == 1), 4)     # exact, or rounded
    n = round(abs(x) * 10 ** places)                                # an integer: the digits
    digits = str(n).rjust(places + 1, "0")
    whole, frac = digits[:len(digits) - places], digits[len(digits) - places:].rstrip("0")
    return ("-" if x < 0 and n else "") + whole + ("." + frac if frac else "")


def calculator(expr: str) -> str:
    """The exact value of `expr` (+, -, *, /, //, parentheses) as a string, or ERROR when it does not parse, divides
    by zero, is longer than MAX_EXPR characters or comes out beyond MAX_ABS. Never raises."""
    if len(expr) > MAX_EXPR:
        return ERROR
    try:
        value = parse_arith(expr)
    except (ValueError, ZeroDivisionError):
        return ERROR
    return ERROR if abs(value) > MAX_ABS else format_number(value)


def open_call(text: str) -> str | None:
    """The expression of the call `text` ends in (`...<<expr=`), or None: the last `<<` is not yet closed by `>>`,
    what follows it is on one line and has exactly one `=`, at the very end."""
    i = text.rfind("<<")
    if i < 0:
        return None
    body = text[i + 2:]
    if not body.endswith("=") or body.count("=") != 1 or ">>" in body or "\n" in body:
        return None
    return body[:-1]


class Calculator:
    """The calculator as the sampler uses it: `triggers` (V,) bool marks the token ids that can end `<<expr=` (those
    containing "="), so that only rows which just wrote one are looked at; `reply(ids)` is the token ids the tool
    writes after a row's completion `ids` so far: `result>>`, or [] when the row is not waiting for a result."""

    name = "calculator"

    def __init__(self, tok):
        self.tok = tok
        self.triggers = torch.zeros(tok.n_vocab, dtype=torch.bool)
        self.triggers[:len(tok.tokens)] = torch.tensor([b"=" in t for t in tok.tokens])

    def reply(self, ids: list[int]) -> list[int]:
        expr = open_call(self.tok.decode(ids))
        return [] if expr is None else self.tok.encode(calculator(expr) + ">>")


def check_tool(name: str):
    """One line naming the choices if `name` is not a tool (every script's --tool, before anything loads)."""
    if name not in TOOLS:
        raise ConfigError(f"unknown --tool {name!r}; choose from {', '.join(TOOLS)}")


def make_tool(name: str, tok) -> Calculator | None:
    """The tool called `name` ("none": no tool)."""
    check_tool(name)
    return Calculator(tok) if name == "calculator" else None


def tool_calls(text: str) -> int:
    """How many calculator calls a completion makes (`<<...=`), whoever computed their results."""
    return sum(1 for part in text.split("<<")[1:] if "=" in part.split(">>")[0])


def calls_per_answer(texts: list[str]) -> float:
    return sum(map(tool_calls, texts)) / max(len(texts), 1)
