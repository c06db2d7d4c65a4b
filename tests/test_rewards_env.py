from fractions import Fraction

import pytest

from nanoreason.config import ConfigError
from nanoreason.env import BatchedCoTEnv, CoTEnv
from nanoreason.rewards import (compound_reward, format_reward, outcome_reward, parse_weights, shape_step_rewards,
                                step_end_tokens, step_rewards, token_rewards)
from nanoreason.tasks import Problem, Step, make_problems
from nanoreason.tokenizer import Tokenizer


def problem():
    steps = (Step("12+5", (Fraction(12), Fraction(5)), "+", Fraction(17)),
             Step("17-3", (Fraction(17), Fraction(3)), "-", Fraction(14)))
    return Problem("Mia has 12 pens. She gets 5 more pens. She gives away 3 pens. How many pens does Mia have now?",
                   "12+5=<<12+5=17>>17\n17-3=<<17-3=14>>14\n#### 14", 14, steps)


GOOD = "12+5=<<12+5=17>>17\n17-3=<<17-3=14>>14\n#### 14"
BAD = "12+5=<<12+5=17>>17\n17-3=<<17-3=15>>15\n#### 15"


def test_outcome_format_and_steps():
    p = problem()
    assert outcome_reward(p, GOOD) == 1 and outcome_reward(p, BAD) == 0
    assert format_reward(BAD) == 1 and format_reward("17\n#### 14 pens") == 0 and format_reward("#### 1\n#### 2") == 0
    assert format_reward("no answer") == 0
    assert step_rewards(p, GOOD) == [1, 1] and step_rewards(p, BAD) == [1, 0]


@pytest.mark.parametrize("r, shaping, out", [
    ([1, 1, 0], "none", [1, 1, 0]),
    ([1, 1, 0], "clip", [0, 0, -0.5]),                 # min(r - 0.5, 0)
    ([1, 1, 0], "delta", [0, 1, 0]),                   # r_k - r_{k+1}; the last keeps its own
    ([1, 1, 0], "clip+delta", [0, 0.5, -0.5]),         # delta of the clipped rewards
    ([1, 1, 1, 1, 1], "delta", [0, 0, 0, 0, 1]),       # repeating good steps earns no more than one
    ([], "delta", []),
])
def test_shapings_by_hand(r, shaping, out):
    assert shape_step_rewards(r, shaping, eta=0.5) == out


def test_clip_and_delta_bound_the_return_of_repeated_steps():
    for n in (1, 5, 20):
        r = [1.0] * n
        assert sum(shape_step_rewards(r, "none")) == n                 # the hack: more steps, more reward
        assert sum(shape_step_rewards(r, "delta")) == 1.0               # telescopes to r_1
        assert sum(shape_step_rewards(r, "clip")) == 0.0                # nothing positive to collect


def test_parse_weights_errors_name_the_problem():
    assert parse_weights("outcome=1, format=0.1") == {"outcome": 1.0, "format": 0.1}
    with pytest.raises(ConfigError, match="unknown reward 'correctness'"):
        parse_weights("correctness=1")
    with pytest.raises(ConfigError, match="reward weight for 'format' must be a number, got 'high'"):
        parse_weights("outcome=1,format=high")
    with pytest.raises(ConfigError, match="must be finite"):
        parse_weights("outcome=nan")
    with pytest.raises(ConfigError, match="unknown shaping"):
        shape_step_rewards([1.0], "square")


def test_compound_reward():
    seq, steps = compound_reward(problem(), BAD, {"outcome": 1.0, "format": 0.1, "steps": 0.5}, "none")
    assert seq == pytest.approx(0.1) and steps == [0.5, 0.0]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train("\n".join(p.question + "\n" + p.solution for p in make_problems(300, "train")), 400)


def test_token_placement_agrees_with_the_env(tok):
    """The trainers' token rewards and the line-by-line env give the same rewards for the same completion."""
    p = problem()
    weights = {"outcome": 1.0, "format": 0.1, "steps": 0.5}
    for text in (GOOD, BAD, "12+5=<<12+5=17>>17\n\n17-3=<<17-3=14>>14\n#### 14", "12+5=<<12+5=17>>17\n17"):
        for shaping in ("none", "delta", "clip+delta"):
            ids = tok.encode(text)
            seq, steps = compound_reward(p, text, weights, shaping)
            ends = step_end_tokens([tok.enc.decode_single_token_bytes(t) for t in ids])
            r = token_rewards(seq, steps, ends, len(ids))
            for k, e in enumerate(ends):                    # each step's reward sits on the token ending its line
                assert "\n" in tok.decode(ids[e:e + 1]) or e == len(ids) - 1
            env = CoTEnv(p, weights=weights, shaping=shaping, max_steps=10)
            env_total = 0.0
            for line in [ln for ln in text.split("\n") if ln.strip()]:
                _, rew, term, trunc, info = env.step(line)
                env_total += rew
                if term or trunc:
                    break
            if not env.done:                            # the text ended without an answer line: truncate here
                env_total += seq
            assert env_total == pytest.approx(r.sum().item()), (text, shaping)


def test_env_episode():
    p = problem()
    env = CoTEnv(p, weights={"outcome": 1.0, "steps": 0.5}, max_steps=3)
    s = env.reset()
    assert s.endswith("now?\n")
    s, r, term, trunc, _ = env.step("12+5=<<12+5=17>>17")
    assert (r, term, trunc) == (0.5, False, False) and s.endswith("17")
    s, r, term, trunc, _ = env.step("#### 17")
    assert (r, term, trunc) == (0.0, True, False)                # wrong answer, no step reward for the answer line
    with pytest.raises(RuntimeError):
        env.step("more")
    env = CoTEnv(p, weights={"outcome": 1.0}, max_steps=2)
    env.step("1+1=<<1+1=2>>2")
    _, r, term, trunc, _ = env.step("2+2=<<2+2=4>>4")
    assert (term, trunc, r) == (False, True, 0.0)                # step budget reached


def test_batched_env():
    envs = BatchedCoTEnv([problem(), problem()], weights={"outcome": 1.0})
    envs.reset()
    _, r, term, _, _ = envs.step(["#### 14", "12+5=<<12+5=17>>17"])
    assert r == [1.0, 0.0] and term == [True, False]
    _, r, term, _, _ = envs.step(["ignored", "#### 14<|endoftext|>"])
    assert r == [0.0, 1.0] and term == [True, True]
