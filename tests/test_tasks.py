import json
import re
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
    ([{"question": "q", "answer": "x\n#### 4.5"}], "line 1: field 'answer' has a malformed final line"),   # not whole
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


def gsm8k_problem():
    """A GSM8K-style gold solution with the habits of real data: a prose line, a number written as words ("half",
    "Sixteen"), a percentage's 100, a restated number and a unary plus."""
    from nanoreason.tasks import parse_gsm8k_answer
    q = ("Sixteen boys and some girls came. Half of the boys brought a gift. The girls are 25% of the boys. "
         "How many children brought a gift or are girls?")
    answer = ("Let g be the number of girls.\n"                                         # prose: no verdict
              "Half of 16 is 16/2 = <<16/2=8>>8 boys with gifts.\n"                   # "Sixteen" and "half"
              "The girls are 25/100*16 = <<25/100*16=4>>4.\n"                           # the 100 of "25%"
              "So g = <<4=4>>4.\n"                                                    # a restatement: prose
              "Together <<+8+4=12>>12.\n#### 12")
    solution, value, steps = parse_gsm8k_answer(answer, "test")
    return Problem(q, solution, value, steps, gsm8k=True)


@pytest.mark.parametrize("completion, verdicts", [
    (None, [True, True, True]),                                                       # the gold solution
    ("I add them up.\nTogether 8+4=<<8+4=12>>12.\n#### 12", [False]),                # 8 and 4 never stated
    ("Half of 16 is 16/2 = <<16/2=9>>9.\n#### 9", [False]),                           # a wrong result
    ("Half of 16 is 16/2 = <<16/2=8>>8.\nThe girls are 4.\nTogether 8+4 = <<8+4=12>>12.\n#### 12",
     [True, True]),                                                                   # 4 written in prose first
    ("Half of 16 is 16/2 = <<16/2=8>>8.\n8+1 = <<8+1=9>>9\n#### 9", [True, False]),  # 9 is no quantity we need
    ("Half of 16 is <<16/2 8>>8.\n<<16/=8>>8\n#### 8", [False]),                      # unparseable: failed, no error
])
def test_check_steps_on_gsm8k_text(completion, verdicts):
    """Real GSM8K rules (`Problem.gsm8k`): prose lines are not steps; words and units ground numbers; a wrong result
    still fails; split_steps and step_end_tokens count the same steps."""
    from nanoreason.rewards import step_end_tokens
    from nanoreason.tasks import split_steps
    p = gsm8k_problem()
    text = p.solution if completion is None else completion
    assert check_steps(p, text) == verdicts
    assert len(split_steps(text, prose=True)) == len(verdicts)
    lines = text.split("\n")
    assert len(step_end_tokens([(ln + "\n").encode() for ln in lines], prose=True)) == len(verdicts)


def test_parse_arith_reads_unary_plus_and_floor_division():
    assert parse_arith("+12.5+25+16.5") == 54 and parse_arith("3*+6") == 18 and parse_arith("180//3") == 60
    assert parse_arith("7//2") == 3 and parse_arith("-7//2") == -4
    with pytest.raises(ValueError):
        parse_arith("7///2")


def test_synthetic_problems_keep_the_strict_rule():
    """The prose allowance is for GSM8K text only: on our task a line with nothing to check is a wrong step."""
    assert check_steps(problem_12_5_3(), "I think so\n12+5=<<12+5=17>>17\n#### 17") == [False, True]
    assert check_steps(load_gsm8k(FIXTURE)[0], "I think so\n48/2 = <<48/2=24>>24\n#### 24") == [True]


def test_a_gold_annotation_that_does_not_parse_is_a_failed_step_not_an_error(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "Ann has 3 pens and buys 4.", "answer": "3+4=<<3+4=7>>7\n"
                                "<<3+*4=7>>7\n#### 7"}) + "\n")
    p = load_gsm8k(str(path))[0]
    assert p.gsm8k and check_steps(p, p.solution) == [True, False]


def test_gsm8k_files_as_a_task_and_an_older_checkpoint_config():
    """--data problems: the test split is the file's, in its order; training streams shuffled passes over it; an SFT
    checkpoint of before --data (gsm8k_train) still names its file."""
    from itertools import islice

    from nanoreason.tasks import stream, task_from_config
    task = TaskConfig(data=FIXTURE, test_data=FIXTURE)
    assert [p.answer for p in make_problems(3, "test", 0, task)] == [72, 10, 250]
    assert make_problems(99, "test", 5, task) == load_gsm8k(FIXTURE)                  # capped at the file
    assert sorted(p.answer for p in islice(stream("train", 1, task), 8)) == sorted([72, 10, 250, -5] * 2)
    assert task_from_config({"gsm8k_train": FIXTURE, "gsm8k_test": "", "max_value": 20}).data == FIXTURE
    with pytest.raises(ConfigError, match="no test problems in its fixed 20% held-out slice"):
        make_problems(3, "test", 0, TaskConfig(data=FIXTURE))


def test_verifying_steps_on_gsm8k_needs_a_checked_step():
    """Expert iteration's --verify=steps: an answer of prose alone checks nothing and is not kept; the PRM's perturbed
    examples skip a solution without an annotated step."""
    from nanoreason.reward_models import perturbed_examples
    from nanoreason.rollouts import keep_verified
    p = gsm8k_problem()
    kept = keep_verified([p, p], ["The answer is twelve.\n#### 12", p.solution], [True, True], "steps")
    assert [t for _, t in kept] == [p.solution]
    bare = Problem("q", "It is 5.\n#### 5", 5, (), gsm8k=True)
    assert perturbed_examples([bare]) == []


def test_errors_bench_splits_accuracy_by_pattern_and_counts_every_wrong_answer(sft_ckpt, tmp_path):
    from bench.errors import ErrorsConfig, main, step_kind
    from nanoreason.checkpoint import load_start
    from nanoreason.evaluate import accuracy
    main(ErrorsConfig(ckpts=f"{sft_ckpt},{sft_ckpt}", problems=24, out_dir=str(tmp_path)))
    text = (tmp_path / "table.md").read_text()
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| `")]
    assert sum(int(r[2]) for r in rows) == 24                            # every problem in one pattern
    policy, tok, task, seed = load_start(sft_ckpt)
    acc, _ = accuracy(policy, tok, make_problems(24, "test", seed, task))
    assert text.count(f"**{acc:.1%}**") == 2                             # one column per checkpoint, both the same
    for col in (3, 4):
        assert sum(float(r[col].strip(" %")) / 100 * int(r[2]) for r in rows) == pytest.approx(24 * acc, abs=0.1)
    wrong = [line for line in text.splitlines() if line.startswith("- `")]
    assert len(wrong) == 2 and all(f": {round(24 * (1 - acc))} wrong;" in w for w in wrong)
    counts = [sum(int(n) for n in re.findall(r"(?:no wrong step|step \d+): (\d+)", w)) for w in wrong]
    assert counts == [round(24 * (1 - acc))] * 2
    # the kind of a rejected step, by hand
    assert step_kind("5+8=<<5+8=15>>15") == "wrong arithmetic"
    assert step_kind("12-5=<<12-5=7>>7") == "wrong quantity"                # right sum, not what the story needs
    assert step_kind("so she has 7") == step_kind("1+=<<1+=2>>2") == "no calculation"
