import json
from fractions import Fraction

import pytest

from nanoreason.config import ConfigError
from nanoreason.tasks import (Problem, Step, TaskConfig, check_steps, extract_answer, make_problems, load_gsm8k,
                              parse_arith, signature)

FIXTURE = __file__.rsplit("/", 1)[0] + "/data/gsm8k_tiny.jsonl"


def test_generator_is_deterministic_and_seeded():
    a, b, c = make_problems(50, "train", seed=1), make_problems(50, "train", seed=1), make_problems(50, "train", seed=2)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]


def test_train_and_test_never_share_a_problem():
    test = make_problems(1000, "test", seed=0)
    train = make_problems(4000, "train", seed=7)       # the default task has only a few thousand distinct chains
    assert not {signature(p) for p in test} & {signature(p) for p in train}
    assert not {p.question for p in test} & {p.question for p in train}
    assert len({signature(p) for p in test}) == 1000          # the test set has no duplicates either


@pytest.mark.parametrize("cfg", [TaskConfig(), TaskConfig(1, 1, 40, 3, "+"), TaskConfig(3, 6, 200, 9, "*/-+")])
def test_reference_solutions_are_right_and_respect_the_knobs(cfg):
    for p in make_problems(300, "train", seed=3, cfg=cfg):
        lines = p.solution.split("\n")
        assert cfg.min_steps <= len(p.steps) == len(lines) - 1 <= cfg.max_steps
        assert extract_answer(p.solution) == p.answer == p.steps[-1].result
        assert check_steps(p, p.solution) == [True] * len(p.steps)
        for s in p.steps:
            assert s.op in cfg.ops and parse_arith(s.expr) == s.result
            assert all(0 <= x <= cfg.max_value for x in (*s.operands, s.result))
            assert s.result.denominator == 1                   # exact division only
        assert f"<<{p.steps[0].expr}={p.steps[0].result}>>" in lines[0]


def problem_12_5_3():
    # "Mia has 12 pens. She gets 5 more pens. She gives away 3 pens."  12+5=17, 17-3=14
    steps = (Step("12+5", (Fraction(12), Fraction(5)), "+", Fraction(17)),
             Step("17-3", (Fraction(17), Fraction(3)), "-", Fraction(14)))
    return Problem("Mia has 12 pens. She gets 5 more pens. She gives away 3 pens. How many pens does Mia have now?",
                   "12+5=<<12+5=17>>17\n17-3=<<17-3=14>>14\n#### 14", 14, steps)


@pytest.mark.parametrize("completion, verdicts", [
    ("12+5=<<12+5=17>>17\n17-3=<<17-3=14>>14\n#### 14", [True, True]),
    ("12+5=<<12+5=18>>18\n18-3=<<18-3=15>>15\n#### 15", [False, False]),   # bad arithmetic, then built on it
    ("12-5=<<12-5=7>>7\n#### 7", [False]),                                  # right arithmetic, wrong quantity
    ("17-3=<<17-3=14>>14\n#### 14", [False]),                               # uses 17 before computing it
    ("12+5=<<12+5=17>>17\n12+5=<<12+5=17>>17\n17-3=<<17-3=14>>14\n#### 14", [True, True, True]),  # repeats pass
    ("I think so\n12+5=<<12+5=17>>17\n#### 17", [False, True]),            # a line with nothing to check
    ("5+12=<<5+12=17>>17\n#### 14\n17-3=<<17-3=14>>14", [True]),           # order-free; lines after #### ignored
    ("12+5=<<12+5=17>>17\n17-3=<<__import__('os')=14>>14", [True, False]), # never eval'd: just unparseable
    ("", []),
])
def test_check_steps_rule(completion, verdicts):
    assert check_steps(problem_12_5_3(), completion) == verdicts


@pytest.mark.parametrize("text, value", [
    ("a\n#### 72", 72), ("#### 1,234", 1234), ("####  -5 ", -5), ("#### \u22127", -7), ("#### 3\n#### 4", 4),
    ("#### 4.5", None), ("#### 12 apples", None), ("#### ", None), ("72", None), ("#### 1,23", None),
    ("#### 2+2", None), (None, None),
])
def test_extract_answer(text, value):
    assert extract_answer(text) == value


def test_parse_arith_is_exact_and_safe():
    assert parse_arith("48/2+3") == 27 and parse_arith("(1+2)*-3") == -9 and parse_arith("1/3*3") == 1
    assert parse_arith("0.2*50") == 10 and parse_arith("1,250-1,000") == 250
    for bad in ["__import__('os')", "2**8", "1/0", "", "(1+2", "1 2"]:
        with pytest.raises(ValueError):
            parse_arith(bad)


@pytest.mark.parametrize("kw, field", [(dict(min_steps=-1), "min_steps"), (dict(min_steps=3, max_steps=2), "max_steps"),
                                       (dict(ops="+%"), "ops"), (dict(max_value=3), "max_value"),
                                       (dict(max_factor=1), "max_factor")])
def test_bad_task_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        TaskConfig(**kw)


def test_load_gsm8k_jsonl_and_parquet(tmp_path):
    probs = load_gsm8k(FIXTURE)
    assert [p.answer for p in probs] == [72, 10, 250, -5]
    assert [s.result for s in probs[0].steps] == [24, 72] and probs[1].steps[0].result == Fraction(1, 5)
    assert all(check_steps(p, p.solution) == [True] * len(p.steps) for p in probs)
    # Weng's 60 minutes is not in the question: a constant the reference uses, so the step is still grounded
    assert check_steps(probs[1], "12/60 = <<12/60=0.2>>0.2\n#### 10") == [True]
    from datasets import Dataset
    Dataset.from_list([json.loads(line) for line in open(FIXTURE)]).to_parquet(str(tmp_path / "g.parquet"))
    assert [p.answer for p in load_gsm8k(str(tmp_path / "g.parquet"))] == [72, 10, 250, -5]


@pytest.mark.parametrize("rows, message", [
    ([{"question": "q", "answer": "1+1=<<1+1=2>>2\n#### 2"}, {"question": "q2"}], "line 2: missing field 'answer'"),
    ([{"question": "q", "answer": "so the answer is 2"}], "line 1: field 'answer' must end with a '#### N' line"),
    ([{"question": "q", "answer": "x\n#### two"}], "line 1: field 'answer' has a malformed final line"),
    ([{"answer": "#### 2"}], "missing field 'question'"),
])
def test_load_gsm8k_bad_files_name_file_line_and_field(tmp_path, rows, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ConfigError) as e:
        load_gsm8k(str(path))
    assert str(path) in str(e.value) and message in str(e.value)


def test_load_gsm8k_missing_file():
    with pytest.raises(ConfigError, match="no such file"):
        load_gsm8k("/nonexistent/gsm8k.jsonl")
