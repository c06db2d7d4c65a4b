"""Pretraining a base (train_base.py) and pure RL from it (train_zero.py): the corpus keeps held-out problems out and
follows its mix; both stages run at tiny settings and write what they promise; bad input is one line."""
import json
import os

import pytest

from nanoreason import corpus
from nanoreason.config import ConfigError
from nanoreason.tasks import TaskConfig, make_problems, signature

TASK = TaskConfig(min_steps=1, max_steps=2, max_value=20, ops="+-*")
TINY_BASE = ["--min_steps=1", "--max_steps=1", "--ops=+-", "--vocab_size=300", "--n_layer=1", "--n_head=2",
             "--n_embd=32", "--block_size=96", "--batch_size=8", "--corpus_docs=600", "--val_docs=20", "--iters=40",
             "--warmup_iters=5", "--eval_interval=20", "--eval_problems=16", "--max_new_tokens=24"]


def test_no_held_out_problem_is_in_the_corpus():
    """Neither a held-out question nor the arithmetic of a held-out problem (its worked steps, whatever the wording)."""
    docs = corpus.documents(3000, 0, TASK, corpus.CorpusMix(problems=1.0, stories=0, worksheets=0, worked=0.5))
    test = make_problems(300, "test", 0, TASK)
    text = "\n".join(docs)
    assert not [p.question for p in test if p.question in text]
    worked = [";".join(line.split("=")[0] for line in d.split("\n") if "<<" in line) for d in docs if "<<" in d]
    assert len(worked) > 1000 and not {signature(p) for p in test} & set(worked)


@pytest.mark.parametrize("worked, answer_only", [(0.0, 0.5), (0.1, 0.5), (0.5, 0.3)])
def test_the_mix_sets_how_problems_are_shown(worked, answer_only):
    mix = corpus.CorpusMix(stories=0.2, worksheets=0.2, problems=0.6, worked=worked, answer_only=answer_only)
    docs = corpus.documents(4000, 1, TASK, mix)
    problems = [d for d in docs if "How many" in d]
    shown_worked = sum("<<" in d for d in problems) / len(problems)
    shown_answer = sum("####" in d and "<<" not in d for d in problems) / len(problems)
    assert len(problems) / len(docs) == pytest.approx(0.6, abs=0.03)
    assert shown_worked == pytest.approx(worked, abs=0.03) and shown_answer == pytest.approx(answer_only, abs=0.03)


@pytest.mark.parametrize("kw, message", [
    (dict(stories=0.5), "--stories, --worksheets and --problems must sum to 1"),
    (dict(worked=-0.1), "--worked must be a fraction in [0, 1]"),
    (dict(worked=0.6, answer_only=0.6), "--worked + --answer_only must be <= 1"),
])
def test_a_bad_mix_is_named(kw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("+", r"\+")):
        corpus.CorpusMix(**kw)


def test_worked_steps_are_a_form_and_reasoning_needs_the_oracle():
    """A calculation line counts as worked steps right or wrong; the reasoning rate needs a step the oracle accepts."""
    from nanoreason.evaluate import completion_stats
    from nanoreason.tasks import Problem, Step, shows_work
    p = Problem("Ella has 15 rocks. She loses 3 rocks. How many rocks does Ella have now?",
                "15-3=<<15-3=12>>12\n#### 12", 12, (Step("15-3", (15, 3), "-", 12),))
    right, wrong, bare, after = p.solution, "15-3=<<15-3=13>>13\n#### 13", "#### 12", "#### 12\n15-3=<<15-3=12>>12"
    assert [shows_work(c) for c in (right, wrong, bare, after)] == [True, True, False, False]
    assert shows_work("15-3=12\n#### 12") and shows_work("$15 - $3 = $12\n#### 12")
    assert not any(shows_work(t) for t in ("Ella has 15 rocks = 15\n#### 15", "Steps 1-2: total = 5\n#### 5"))

    class Tok:
        def encode(self, text):
            return list(text)
    s = completion_stats(Tok(), [p] * 4, [right, wrong, bare, after])
    assert (s["accuracy"], s["worked_rate"], s["reasoning_rate"]) == (0.75, 0.5, 0.25)


def test_base_then_zero_then_sft_from_the_base(tmp_path, entry, sft_ckpt):
    base, zero = tmp_path / "base", tmp_path / "zero"
    r = entry("train_base.py", f"--out_dir={base}", *TINY_BASE)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(base / "summary.json"))
    rows = [json.loads(line) for line in open(base / "metrics.jsonl")]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses[-1] < 0.8 * losses[0] and s["perplexity"] < s["perplexity_before"]
    for k in ("accuracy", "format_rate", "worked_rate", "reasoning_rate", "response_length"):
        assert 0 <= s[k] and (k == "response_length" or s[k] <= 1)
    assert (base / "base.png").exists() and (base / "ckpt.pt").exists()

    r = entry("train_zero.py", f"--init_from={base}/ckpt.pt", f"--out_dir={zero}", "--iters=2",
              "--prompts_per_iter=2", "--group_size=2", "--max_new_tokens=16", "--eval_problems=16",
              "--eval_interval=2")
    assert r.returncode == 0, r.stderr[-2000:]
    z = json.load(open(zero / "summary.json"))
    for k in ("accuracy", "format_rate", "worked_rate", "reasoning_rate", "response_length"):
        assert f"{k}_before" in z and f"{k}_after" in z
    assert z["eval_problems"] == 16 and z["wall_seconds"] > 0 and (zero / "zero.png").exists()
    row = [json.loads(line) for line in open(zero / "metrics.jsonl")][1]
    assert {"reward", "format", "worked", "reasoning", "sampled_length", "entropy"} <= set(row)

    r = entry("train_sft.py", f"--init_from={base}/ckpt.pt", f"--out_dir={tmp_path / 'sft'}", "--iters=2",
              "--eval_interval=2", "--eval_problems=16", "--max_new_tokens=24", "--min_steps=1", "--max_steps=1",
              "--ops=+-")
    assert r.returncode == 0, r.stderr[-2000:]

    # pure RL from a fine-tuned model is not R1-Zero: one line, nothing written
    r = entry("train_zero.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path / 'z2'}")
    assert r.returncode == 2 and "not a pretrained base" in r.stderr and not os.path.exists(tmp_path / "z2")


@pytest.mark.parametrize("args, message", [
    (["--rewards=outcome=1,steps=0.5"], "steps is not verifiable without a reference solution"),
    (["--rewards=vibes=1"], "vibes"),
    (["--iters=0"], "iters must be > 0"),
    (["--init_from=/nonexistent/base/ckpt.pt"], "no such base; make it first with python train_base.py"),
])
def test_zero_bad_input_is_one_line(entry, args, message):
    r = entry("train_zero.py", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_a_base_without_word_problems_is_allowed():
    from nanoreason.config import parse_args
    from train_base import BaseConfig
    assert parse_args(BaseConfig, ["--problems=0", "--stories=0.5", "--worksheets=0.5"]).problems == 0


def test_base_bad_mix_is_one_line(entry, tmp_path):
    r = entry("train_base.py", f"--out_dir={tmp_path}", "--worked=0.7", "--answer_only=0.5")
    assert r.returncode == 2 and "--worked + --answer_only must be <= 1" in r.stderr and not os.listdir(tmp_path)


def test_sft_answers_only_learns_the_final_line_alone():
    import train_sft
    cfg = train_sft.SFTConfig(answers_only=True, eval_problems=16, min_steps=1, max_steps=1, ops="+-")
    batch, _, _ = train_sft.data(cfg)
    assert all(p.solution == f"#### {p.answer}" for p in batch(3))


def test_seed_table_from_finished_runs_and_controls_need_a_zero_run(entry, tmp_path):
    for seed, (a, r) in enumerate([(0.5, 0.7), (0.6, 0.8)]):
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        json.dump({"eval_problems": 256, "wall_seconds": 9.0, **{f"{k}_before": 0.1 for k in
                   ("accuracy", "format_rate", "worked_rate", "reasoning_rate", "response_length")},
                   "accuracy_after": a, "format_rate_after": 1.0, "worked_rate_after": 0.9, "reasoning_rate_after": r,
                   "response_length_after": 30.0}, open(d / "summary.json", "w"))
    r = entry("bench/zero_seeds.py", f"--out_dir={tmp_path}", "--seeds=0,1")
    assert r.returncode == 0, r.stderr[-2000:]
    table = open(tmp_path / "table.md").read()
    assert "| accuracy | 10.0% ± 0.0% | 55.0% ± 7.1% |" in table and "| 1 | 10.0% → 60.0% |" in table
    r = entry("bench/zero_controls.py", f"--zero_dir={tmp_path}/nothing", f"--out_dir={tmp_path}/c")
    assert r.returncode == 2 and "run python train_zero.py first" in r.stderr


def test_worked_sweep_table_from_finished_runs(entry, tmp_path, sft_ckpt):
    import shutil
    for w, acc in (("0", 0.2), ("0.5", 0.6)):
        for kind in ("base", "zero"):
            (tmp_path / f"{kind}_{w}").mkdir()
        shutil.copy(sft_ckpt, tmp_path / f"base_{w}" / "ckpt.pt")          # what the base's samples offer RL
        json.dump({"perplexity": 1.9, "wall_seconds": 280.0}, open(tmp_path / f"base_{w}" / "summary.json", "w"))
        json.dump({"eval_problems": 256, "wall_seconds": 290.0, "accuracy_before": 0.1, "accuracy_after": acc,
                   **{f"{k}_{when}": 0.5 for k in ("worked_rate", "reasoning_rate", "response_length")
                      for when in ("before", "after")}}, open(tmp_path / f"zero_{w}" / "summary.json", "w"))
    r = entry("bench/zero_worked.py", f"--out_dir={tmp_path}", "--worked=0,0.5", "--sampled_problems=8")
    assert r.returncode == 0, r.stderr[-2000:]
    table = open(tmp_path / "table.md").read()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 0%") or line.startswith("| 50%")]
    assert [(r[0], r[4]) for r in rows] == [("| 0%", "10.0% → 20.0%"), ("| 50%", "10.0% → 60.0%")]
    assert all(0 <= float(x.rstrip("%")) <= 100 for r in rows for x in r[1:4])


def test_passk_of_two_models_rises_with_k(entry, tmp_path, sft_ckpt):
    r = entry("bench/zero_passk.py", f"--out_dir={tmp_path}", f"--base={sft_ckpt}", f"--rl={sft_ckpt}",
              "--problems=3", "--samples=4", "--max_new_tokens=16")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(tmp_path / "summary.json"))
    assert s["k"] == [1, 2, 4] and (tmp_path / "passk.png").exists()
    for m in (s["base"], s["rl"]):
        assert m["pass@1"] <= m["pass@2"] <= m["pass@4"] <= 1
        assert all(m[f"checked pass@{k}"] <= m[f"pass@{k}"] for k in (1, 2, 4))
    r = entry("bench/zero_passk.py", f"--out_dir={tmp_path}", "--samples=6")
    assert r.returncode == 2 and "samples must be a power of 2" in r.stderr


def test_algorithms_table_evaluates_every_model_alike(entry, tmp_path, sft_ckpt):
    """Finished runs are kept; every row (the base too) is evaluated here with the same greedy answers."""
    zero = {"base": sft_ckpt, "samples": 128, "wall_seconds": 9.0, "checkpoint": sft_ckpt,
            "zero_config": {"seed": 0, "eval_problems": 8, "max_new_tokens": 16, "rewards": "outcome=1,format=0.1",
                            "temperature": 1.0}}
    for d, s in (("zero", zero), ("c/expert_iteration", {"samples": 128, "wall_seconds": 7.0, "checkpoint": sft_ckpt}),
                 ("c/ppo", {"samples": 128, "wall_seconds": 8.0, "checkpoint": sft_ckpt})):
        (tmp_path / d).mkdir(parents=True)
        json.dump(s, open(tmp_path / d / "summary.json", "w"))
    r = entry("bench/zero_algorithms.py", f"--zero_dir={tmp_path}/zero", f"--out_dir={tmp_path}/c")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in open(tmp_path / "c" / "table.md") if line.startswith("| ") and "samples" not in line]
    assert [line.split(" | ")[0] for line in rows] == ["| the base", "| GRPO (`train_zero.py`)", "| expert iteration",
                                                       "| PPO"]
    assert len({tuple(line.split(" | ")[3:]) for line in rows}) == 1          # one model behind all 4 rows


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    from nanoreason.config import run_stage
    json.dump({"accuracy": 0.5, "config": {"worked": 0.3, "seed": 0}}, open(tmp_path / "summary.json", "w"))
    assert run_stage("never_run.py", reuse=True, out_dir=str(tmp_path), worked=0.3, seed=0)["accuracy"] == 0.5
    with pytest.raises(ConfigError, match=r"was made with --worked=0.3 \(asked: 0.5\): move it away"):
        run_stage("never_run.py", reuse=True, out_dir=str(tmp_path), worked=0.5, seed=0)
