"""The default task: GSM8K-style multi-step word problems with exact step-level truth.

A problem is a starting quantity followed by `n_steps` operations (+, -, *, exact /), told as a short story:

    Question: Mia has 12 pens. She gets 5 more pens. She gives away 3 pens. How many pens does Mia have now?
    Solution (GSM8K form, one step per line, calculator annotation, final `#### N` line):
        12+5=<<12+5=17>>17
        17-3=<<17-3=14>>14
        #### 14

Everything is deterministic from a seed. Train and test come from one stream of problems split by a hash of the
problem's *arithmetic* (start value and operations), so no test problem can appear in train, even reworded.

`load_gsm8k(path)` reads real GSM8K files (`question`, `answer`) into the same `Problem` type, so every stage runs
on either. No function here ever calls `eval`: annotations are parsed by the small `parse_arith` below.
"""
from __future__ import annotations

import functools
import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice

from nanoreason.config import ConfigError

# ----------------------------------------------------------------------------------------------------------------
# Problem types


@dataclass(frozen=True)
class Step:
    """One calculation: `expr` (e.g. "12+5"), its numeric operands, the operator ("+", "-", "*", "/", or "expr" for
    a compound GSM8K expression) and the exact result."""
    expr: str
    operands: tuple
    op: str
    result: Fraction


@dataclass(frozen=True)
class Problem:
    question: str
    solution: str          # GSM8K form: one step per line with <<a+b=c>>, last line "#### N"
    answer: int
    steps: tuple = field(default_factory=tuple)   # tuple[Step, ...]
    gsm8k: bool = False    # real GSM8K text: prose lines are not steps; check_steps grounds words and units (below)


# ----------------------------------------------------------------------------------------------------------------
# A tiny exact arithmetic parser (never eval): numbers, + - * /, parentheses, unary minus. Returns a Fraction.

_TOKEN = re.compile(r"\s*(?:(\d[\d,]*\.?\d*|\.\d+)|(//|.))")


def _num(s: str) -> Fraction:
    return Fraction(s.replace(",", ""))


def parse_arith(expr: str) -> Fraction:
    """Exact value of an arithmetic expression like "48/2+3" (also unary + and -, and // as GSM8K's calculator, which
    was Python, reads it); raises ValueError on anything else."""
    toks = []
    for num, ch in _TOKEN.findall(expr.strip()):
        if num:
            toks.append(_num(num))
        elif ch in ("+", "-", "*", "/", "//", "(", ")"):
            toks.append(ch)
        elif ch.strip():
            raise ValueError(f"unexpected character {ch!r} in {expr!r}")
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def eat():
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"unexpected end of {expr!r}")
        pos += 1
        return toks[pos - 1]

    def atom():
        t = peek()
        if t in ("-", "+"):
            eat()
            return -atom() if t == "-" else atom()
        if t == "(":
            eat()
            v = expression()
            if eat() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return v
        if isinstance(t, Fraction):
            return eat()
        raise ValueError(f"expected a number in {expr!r}")

    def term():
        v = atom()
        while peek() in ("*", "/", "//"):
            op = eat()
            if op == "*":
                v = v * atom()
            else:
                d = atom()
                if d == 0:
                    raise ValueError(f"division by zero in {expr!r}")
                v = v / d if op == "/" else Fraction(v // d)
        return v

    def expression():
        v = term()
        while peek() in ("+", "-"):
            v = v + term() if eat() == "+" else v - term()
        return v

    if not toks:
        raise ValueError("empty expression")
    value = expression()
    if pos != len(toks):
        raise ValueError(f"trailing input in {expr!r}")
    return value


_NUMBER = re.compile(r"(?<![\d.])\d[\d,]*(?:\.\d+)?|(?<![\d])\.\d+")
ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_BARE = re.compile(r"\s*-?(?:\d[\d,]*\.?\d*|\.\d+)\s*")                   # <<24=24>>: a number restated


def numbers_in(text: str) -> list[Fraction]:
    return [_num(m.rstrip(",")) for m in _NUMBER.findall(text)]


def parse_step(expr: str, result: str) -> Step:
    """A Step from the two halves of a calculator annotation `<<expr=result>>` (the result is taken as written)."""
    ops = [c for c in expr if c in "+-*/"]
    op = ops[0] if len(ops) == 1 and "(" not in expr else "expr"
    return Step(expr=expr.strip(), operands=tuple(numbers_in(expr)), op=op, result=_num(result.strip()))


# ----------------------------------------------------------------------------------------------------------------
# The final answer and the step oracle

_ANSWER = re.compile(r"^\s*([-\u2212]?)\s*(\d{1,3}(?:,\d{3})+|\d+)\s*$")


def extract_answer(text: str) -> int | None:
    """The integer after the last `####` (on the rest of that line), e.g. "#### 1,234" -> 1234, "#### -5" -> -5.
    None if there is no `####` or the rest of its line is not exactly one integer."""
    if not isinstance(text, str) or "####" not in text:
        return None
    rest = text.rsplit("####", 1)[1].split("\n", 1)[0]
    m = _ANSWER.match(rest)
    if m is None:
        return None
    value = int(m.group(2).replace(",", ""))
    return -value if m.group(1) else value


def lines_before_answer(completion: str) -> list[str]:
    """The lines of a completion before its first `####` line."""
    out = []
    for line in completion.split("\n"):
        if line.strip().startswith("####"):
            break
        out.append(line)
    return out


def is_step(line: str, prose: bool = False) -> bool:
    """Whether a line before the answer is a reasoning step: any non-empty line; with `prose` (real GSM8K text) only
    a line with a calculator annotation that is more than a number restated (`<<3*4=12>>`, not `<<12=12>>`); the
    others are prose, neither right nor wrong."""
    return bool(line.strip()) and (not prose or any(not _BARE.fullmatch(e) for e, _ in ANNOTATION.findall(line)))


def split_steps(completion: str, prose: bool = False) -> list[str]:
    """The reasoning steps of a completion (`is_step` lines before the first `####` line)."""
    return [line for line in lines_before_answer(completion) if is_step(line, prose)]


_CALCULATION = re.compile(r"\d\s*[-+*/×−]\s*\$?\(?\d[\d\s+\-*/×−().,$]*=\s*\$?-?\d")   # "15-3=12", "15-3=<<15-3=12>>12"


def shows_work(completion: str) -> bool:
    """Whether `completion` writes worked steps: at least one calculation line (`15-3=12`, with or without the
    calculator annotation `<<15-3=12>>`) before its final answer (anywhere, if it has none), right or wrong: the
    behaviour pure RL selects.
    `check_steps` says whether the steps hold."""
    return any(_CALCULATION.search(line) for line in split_steps(completion))


# Real GSM8K writes some numbers as words and uses everyday constants without stating them.
WORD_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORD_NUMBERS.update({w: 10 * i for i, w in enumerate(TENS, 2)})
WORD_NUMBERS.update(hundred=100, thousand=1000, million=10**6, half=2, halve=2, halves=2, twice=2, double=2, pair=2,
                    triple=3, thrice=3, third=3, quarter=4, fourth=4, quadruple=4, fifth=5, sixth=6, seventh=7,
                    eighth=8, ninth=9, tenth=10, dozen=12)
UNITS = {"%": (100,), "percent": (100,), "cent": (100,), "dollar": (100,), "second": (60,), "minute": (60,),
         "hour": (60, 24), "day": (24, 7, 30, 365), "week": (7, 52), "month": (12, 30), "year": (12, 52, 365),
         "decade": (10,), "century": (100,), "inch": (12,), "foot": (12, 3), "feet": (12, 3), "yard": (3, 36),
         "ounce": (16,), "pound": (16,), "quart": (4,), "gallon": (4, 128), "meter": (100, 1000), "kilogram": (1000,)}


_WORDS = set(WORD_NUMBERS) | set(UNITS)


def everyday_numbers(text: str) -> set[Fraction]:
    """The numbers a GSM8K question gives without digits: number words ("three", "twenty-five", "two hundred",
    "twice", "half", "a dozen") and the constants of the units it names (60 for minutes, 100 for a percentage)."""
    words = [w[:-1] if w.endswith("s") and w[:-1] in _WORDS else w for w in re.findall(r"[a-z]+|%", text.lower())]
    out = set()
    for i, w in enumerate(words):
        out.update(UNITS.get(w, ()))
        if w in WORD_NUMBERS:
            out.add(WORD_NUMBERS[w])
            nxt = WORD_NUMBERS.get(words[i + 1]) if i + 1 < len(words) else None
            if nxt is not None and 20 <= WORD_NUMBERS[w] <= 90 and nxt < 10:
                out.add(WORD_NUMBERS[w] + nxt)                                   # twenty-five
            if nxt in (100, 1000) and WORD_NUMBERS[w] < 100:
                out.add(WORD_NUMBERS[w] * nxt)                                   # two hundred
    return {Fraction(x) for x in out}


def check_steps(problem: Problem, completion: str) -> list[bool]:
    """One verdict per step (see `split_steps`) of `completion` — the oracle process reward.

    The rule. A step is correct iff every calculator annotation `<<expr=r>>` on its line (at least one) satisfies:
      1. arithmetic: `expr` parses and equals `r` exactly;
      2. relevance: `r` is the result of one of the problem's reference steps (it computes a quantity the
         reference solution needs, so "12-5" where the story says "gets 5 more" is wrong even though 12-5=7);
      3. grounding: every number in `expr` is known at that point: stated in the question, produced by an earlier
         *correct* step of this completion, or a constant the reference uses without stating it (GSM8K's 60 minutes).
    A line without an annotation is incorrect (it computes nothing that can be checked). A correct step repeated
    is still correct: that is exactly what a summed process reward can be hacked with (Gao et al. 2024).

    On real GSM8K text (`problem.gsm8k`), written by people, the same rule with four allowances, so that the gold
    solutions pass while a wrong result still fails (`bench/gsm8k_oracle.py` measures both):
      a. a line without an annotation (or with restatements only, c.) is prose, not a step: no verdict (`is_step`, which
         `split_steps(..., prose=True)` and the step rewards share);
      b. grounding also accepts number words and the constants of the units the question names
         (`everyday_numbers`), and a reference result the completion has already written on an earlier line, even
         in prose ("The wife took 60 cookies." then "200-60=<<200-60=140>>140");
      c. an annotation that only restates a number (`<<24=24>>24`) computes nothing: on a line of its own it is
         prose (a.); beside a calculation it needs the arithmetic and relevance checks only;
      d. a compound expression is checked as a whole: its value, not its intermediate values, must be relevant.
    An annotation that does not parse is a failed step, never an exception.
    """
    ref_results = {s.result for s in problem.steps}
    stated = set(numbers_in(problem.question)) | (everyday_numbers(problem.question) if problem.gsm8k else set())
    constants = {x for s in problem.steps for x in s.operands} - ref_results - stated
    known = stated | constants
    written = set()                          # GSM8K: numbers on earlier lines, prose included
    verdicts = []
    for line in lines_before_answer(completion):
        if not is_step(line, problem.gsm8k):
            written.update(numbers_in(line))
            continue
        annotations = ANNOTATION.findall(line)
        ok = bool(annotations)
        produced = []
        for expr, claimed in annotations:
            try:
                value, claim = parse_arith(expr), parse_arith(claimed)
            except ValueError:
                ok = False
                break
            restated = problem.gsm8k and _BARE.fullmatch(expr) is not None
            grounded = restated or all(x in known or (problem.gsm8k and x in ref_results and x in written)
                                       for x in numbers_in(expr))
            ok = ok and value == claim and value in ref_results and grounded
            produced.append(value)
        if ok:
            known.update(produced)
        written.update(numbers_in(line))
        verdicts.append(ok)
    return verdicts


# ----------------------------------------------------------------------------------------------------------------
# The generator

NAMES = ["Mia", "Leo", "Ava", "Noah", "Emma", "Liam", "Zoe", "Omar", "Ivy", "Sam", "Nina", "Ben", "Lily", "Max",
         "Ruby", "Jack", "Ella", "Finn", "Rosa", "Hugo"]
PRONOUNS = {"Mia": "She", "Ava": "She", "Emma": "She", "Zoe": "She", "Ivy": "She", "Nina": "She", "Lily": "She",
            "Ruby": "She", "Ella": "She", "Rosa": "She"}  # everyone else: "He"
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "coins", "cards", "shells", "cookies", "stamps",
         "pencils", "beads", "eggs", "candies", "toys", "rocks", "flowers", "buttons", "balloons", "cupcakes"]

# Sentence templates per operation; {p} pronoun, {n} name, {x} operand, {i} items.
TEMPLATES = {
    "+": ["{p} gets {x} more {i}.", "{p} finds {x} {i}.", "A friend gives {n} {x} {i}.", "{p} buys {x} more {i}."],
    "-": ["{p} gives away {x} {i}.", "{p} loses {x} {i}.", "{p} sells {x} {i}.", "{p} uses {x} {i}."],
    "*": ["Then {p_lower} has {x} times as many {i}.", "{p} makes the number of {i} {x} times bigger."],
    "/": ["{p} splits the {i} into {x} equal groups and keeps one group.",
          "{p} keeps one of {x} equal shares of the {i}."],
}
STARTS = ["{n} has {x} {i}.", "{n} starts with {x} {i}.", "{n} owns {x} {i}."]
ASKS = ["How many {i} does {n} have now?", "How many {i} does {n} have in the end?"]


@dataclass
class TaskConfig:
    min_steps: int = 2        # operations per problem (= solution lines before "####")
    max_steps: int = 2
    max_value: int = 20       # every quantity (start, operands, intermediate results) stays in [0, max_value]
    max_factor: int = 5       # multipliers and divisors are drawn from [2, max_factor]
    ops: str = "+-*"          # "/" (exact division) is there to add: --ops=+-*/
    data: str = ""            # a local GSM8K-format file (.jsonl/.parquet): its problems, not generated ones
    test_data: str = ""       # ... held out: this file's ("": a fixed 20% of `data`, by a hash of the question)

    def __post_init__(self):
        if not (1 <= self.min_steps <= self.max_steps):
            raise ConfigError(f"task steps must satisfy 1 <= min_steps <= max_steps, got min_steps={self.min_steps}, "
                              f"max_steps={self.max_steps}")
        if self.max_value < 10:
            raise ConfigError(f"max_value must be >= 10, got {self.max_value}")
        if not (2 <= self.max_factor <= self.max_value // 2):
            raise ConfigError(f"max_factor must be in [2, max_value/2], got {self.max_factor}")
        if not self.ops or set(self.ops) - set("+-*/") or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"ops must be a non-empty subset of '+-*/' without repeats, got {self.ops!r}")
        if self.test_data and not self.data:
            raise ConfigError("test_data needs data (the GSM8K-format file to train on)")


def check_data(data: str, test_data: str = ""):
    """A stage's --data/--test_data, checked before any work (a saved task's files are checked only when read, so a
    checkpoint stays loadable after its files move)."""
    if test_data and not data:
        raise ConfigError("test_data needs data (the GSM8K-format file to train on)")
    for name, path in (("data", data), ("test_data", test_data)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"--{name}={path}: no such file")


def task_from_config(d: dict) -> TaskConfig:
    """The TaskConfig a stage was trained on, from the `config` dict saved in its checkpoint (an older SFT run names
    its GSM8K files gsm8k_train and gsm8k_test)."""
    if d.get("gsm8k_train") and not d.get("data"):
        d = {**d, "data": d["gsm8k_train"], "test_data": d.get("gsm8k_test", "")}
    return TaskConfig(**{k: d[k] for k in TaskConfig.__dataclass_fields__ if k in d})


def _operands(op: str, v: int, cfg: TaskConfig) -> range | list:
    """Every operand x that keeps `v op x` (and x) within the task's ranges; empty if `op` is impossible at `v`."""
    if op == "+":
        return range(2, cfg.max_value - v + 1)
    if op == "-":
        return range(2, v + 1)
    if op == "*":
        return [x for x in range(2, cfg.max_factor + 1) if v * x <= cfg.max_value]
    return [x for x in range(2, cfg.max_factor + 1) if v > 0 and v % x == 0]


def _apply(op: str, a: int, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def make_problem(rng: random.Random, cfg: TaskConfig) -> Problem:
    n_steps = rng.randint(cfg.min_steps, cfg.max_steps)
    chain = []
    while len(chain) < n_steps:                     # restart on a dead end (e.g. only "+" and v at the maximum)
        v = start = rng.randint(2, cfg.max_value)
        chain = []
        while len(chain) < n_steps:
            choices = [op for op in cfg.ops if _operands(op, v, cfg)]
            if not choices:
                break
            op = rng.choice(choices)
            x = rng.choice(_operands(op, v, cfg))
            chain.append((op, x, v, _apply(op, v, x)))
            v = chain[-1][3]
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    p = PRONOUNS.get(name, "He")
    fill = dict(n=name, p=p, p_lower=p.lower(), i=items)
    sentences = [rng.choice(STARTS).format(x=start, **fill)]
    sentences += [rng.choice(TEMPLATES[op]).format(x=x, **fill) for op, x, _, _ in chain]
    sentences.append(rng.choice(ASKS).format(**fill))
    steps, lines = [], []
    for op, x, a, r in chain:
        expr = f"{a}{op}{x}"
        steps.append(Step(expr=expr, operands=(Fraction(a), Fraction(x)), op=op, result=Fraction(r)))
        lines.append(f"{expr}=<<{expr}={r}>>{r}")
    lines.append(f"#### {v}")
    return Problem(question=" ".join(sentences), solution="\n".join(lines), answer=v, steps=tuple(steps))


def signature(p: Problem) -> str:
    """The arithmetic of a problem, independent of names, items and wording."""
    return ";".join(s.expr for s in p.steps)


def is_test(p: Problem, test_fraction: float = 0.2) -> bool:
    """Whether a problem is held out: by the hash of its arithmetic (generated), or of its question (from a file)."""
    key = p.question if p.gsm8k else signature(p)
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return h / 2**64 < test_fraction


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> tuple:
    return tuple(load_gsm8k(path))


def file_problems(cfg: TaskConfig, split: str) -> list[Problem]:
    """The `split` problems of a file-backed task: test_data's, or the held-out 20% of data (`is_test`) and the rest."""
    read = lambda path: _read(path, os.path.getmtime(path))            # noqa: E731  (read once per file version)
    if cfg.test_data:
        return list(read(cfg.test_data if split == "test" else cfg.data))
    problems = [p for p in read(cfg.data) if is_test(p) == (split == "test")]
    if not problems:
        raise ConfigError(f"{cfg.data}: no {split} problems in its fixed 20% held-out slice; give --test_data")
    return problems


def make_problems(n: int, split: str = "train", seed: int = 0, cfg: TaskConfig | None = None) -> list[Problem]:
    """`n` distinct problems of `split` ("train" or "test"), deterministic in (split, seed, cfg). A problem belongs
    to test iff the hash of its arithmetic falls in the test bucket, so the splits cannot overlap whatever the seeds."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if cfg is not None and cfg.data:          # a file: the test problems in its order (the same for every seed)
        return file_problems(cfg, split)[:n] if split == "test" else list(islice(stream(split, seed, cfg),
                                                                               min(n, len(file_problems(cfg, split)))))
    out, seen, misses = [], set(), 0
    for p in stream(split, seed, cfg):
        if len(out) == n:
            return out
        if signature(p) in seen:
            misses += 1
            if misses > 100 * n + 10_000:
                raise ConfigError(f"asked for {n} distinct {split} problems, but this task config seems to have only "
                                  f"{len(out)}; widen max_value, steps or ops")
        else:
            seen.add(signature(p))
            out.append(p)


def stream(split: str = "train", seed: int = 0, cfg: TaskConfig | None = None):
    """An endless iterator of fresh problems (what SFT and RL draw from)."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    cfg = cfg or TaskConfig()
    rng = random.Random(f"{split}:{seed}")
    if cfg.data:                              # a file: shuffled passes over its problems of this split
        problems = file_problems(cfg, split)
        while True:
            yield from rng.sample(problems, len(problems))
    while True:
        p = make_problem(rng, cfg)
        if is_test(p) == (split == "test"):
            yield p


# ----------------------------------------------------------------------------------------------------------------
# Real GSM8K from local files


def parse_gsm8k_answer(answer: str, where: str) -> tuple[str, int, tuple]:
    """(solution, integer answer, steps) from a GSM8K `answer` field; `where` names the record in errors."""
    if not isinstance(answer, str):
        raise ConfigError(f"{where}: field 'answer' must be a string, got {type(answer).__name__}")
    lines = answer.strip().split("\n")
    if not lines[-1].strip().startswith("####"):
        raise ConfigError(f"{where}: field 'answer' must end with a '#### N' line, got {lines[-1]!r}")
    value = extract_answer(lines[-1])
    if value is None:
        raise ConfigError(f"{where}: field 'answer' has a malformed final line {lines[-1]!r} (want '#### <integer>')")
    steps = []
    for expr, res in ANNOTATION.findall(answer):
        try:
            steps.append(parse_step(expr, res))
        except (ValueError, ZeroDivisionError):
            continue   # an annotation we cannot parse carries no step truth; the line is still kept as text
    return answer.strip(), value, tuple(steps)


def load_gsm8k(path: str) -> list[Problem]:
    """Problems from a local GSM8K-format file (.jsonl/.json or .parquet with `question` and `answer`), read through
    `datasets` (set HF_DATASETS_OFFLINE=1 to be sure nothing is fetched). Errors name the file, the physical line
    (JSON lines; blank lines counted) or row, and the field."""
    import json
    import os

    from datasets import load_dataset

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    kind = "parquet" if path.endswith(".parquet") else "json"
    lines = []                                  # JSON lines: the physical line number of each record
    if kind == "json":
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            text = f.read()
        if not text.strip():
            raise ConfigError(f"{path}: empty file, no GSM8K records")
        if not text.lstrip().startswith("["):
            for n, line in enumerate(text.split("\n"), 1):             # JSON lines end at \n only
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}:line {n}: not valid JSON ({e.msg})") from None
                    if not isinstance(record, dict):
                        raise ConfigError(f"{path}:line {n}: not a JSON object with 'question' and 'answer'")
                    for col in ("question", "answer"):
                        if record.get(col) is not None and not isinstance(record[col], str):
                            raise ConfigError(f"{path}:line {n}: field '{col}' must be text, got {record[col]!r}")
                    lines.append(n)
    try:
        ds = load_dataset(kind, data_files=path, split="train")
    except Exception as e:  # datasets wraps parse errors in several types
        raise ConfigError(f"{path}: cannot be read as GSM8K {kind}: {e.__class__.__name__}: {str(e)[:300]}") from None
    if len(ds) == 0:
        raise ConfigError(f"{path}: no GSM8K records")
    for col in ("question", "answer"):
        if col not in ds.column_names:
            raise ConfigError(f"{path}: missing field '{col}' (columns: {ds.column_names})")
    problems = []
    for i, row in enumerate(ds):
        where = f"{path}:line {lines[i]}" if i < len(lines) else f"{path}:{'record' if kind == 'json' else 'row'} {i + 1}"
        for col in ("question", "answer"):
            if row[col] is None:
                raise ConfigError(f"{where}: missing field '{col}'")
            if not isinstance(row[col], str):
                raise ConfigError(f"{where}: field '{col}' must be text, got {row[col]!r}")
        solution, value, steps = parse_gsm8k_answer(row["answer"], where)
        problems.append(Problem(question=row["question"].strip(), solution=solution, answer=value, steps=steps,
                                gsm8k=True))
    return problems
