"""End-to-end SFT at tiny settings: accuracy goes up, resume reproduces an uninterrupted run, bad input is named."""
import json
import os
import subprocess
import sys

import pytest

import train_sft
from nanoreason.tasks import make_problems
from train_sft import SFTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(min_steps=1, max_steps=1, max_value=30, ops="+-", vocab_size=300, n_layer=2, n_head=2, n_embd=64,
            block_size=96, batch_size=32, eval_problems=64, max_new_tokens=24, warmup_iters=10)


def test_sft_fits_a_small_gsm8k_file(tmp_path):
    """The whole pipeline (GSM8K loader, loss mask, tokenizer, greedy eval) can fit 32 problems: 0% -> > 60%."""
    with open(tmp_path / "train.jsonl", "w") as f:
        for p in make_problems(32, "train", seed=5):
            f.write(json.dumps({"question": p.question, "answer": p.solution}) + "\n")
    data = str(tmp_path / "train.jsonl")
    cfg = SFTConfig(out_dir=str(tmp_path / "out"), gsm8k_train=data, gsm8k_test=data, iters=300, eval_interval=150,
                    vocab_size=512, n_layer=2, n_head=2, n_embd=64, block_size=160, eval_problems=32,
                    max_new_tokens=48, warmup_iters=10)
    summary = train_sft.train(cfg)
    rows = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    accs = [r["accuracy"] for r in rows if "accuracy" in r]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert accs[0] < 0.05 and summary["accuracy_after"] > 0.6, accs
    assert losses[-1] < 0.2 * losses[0]
    for f in ("ckpt.pt", "tokenizer.json", "sft.png", "summary.json"):
        assert (tmp_path / "out" / f).exists()
    s = json.load(open(tmp_path / "out" / "summary.json"))
    assert s["eval_problems"] == 32 and s["params"] > 0 and s["wall_seconds"] > 0 and s["accuracy_after"] == accs[-1]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--bogus=1"], "unknown config key --bogus"),
    (["--n_layer=abc"], "--n_layer must be int"),
    (["--min_steps=-1"], "min_steps"),
    (["--vocab_size=100"], "vocab_size must be >= 256"),
    (["--n_embd=100", "--n_head=3"], "n_embd (100) must be divisible by n_head (3)"),
    (["--gsm8k_train=/nope.jsonl"], "/nope.jsonl: no such file"),
    (["--numbers=whole", "--init_from=out/sft/ckpt.pt"], "with --gpt2_dir or --init_from the tokenizer comes from"),
])
def test_bad_input_is_one_clear_line(args, message, entry):
    r = entry("train_sft.py", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_resume_with_another_config_names_the_field_and_keeps_the_checkpoint(tmp_path):
    train_sft.train(SFTConfig(out_dir=str(tmp_path), iters=2, eval_interval=2, **TINY))
    before = open(tmp_path / "ckpt.pt", "rb").read()
    args = [f"--{k}={v}" for k, v in TINY.items() if k != "n_embd"]
    r = run("train_sft.py", f"--out_dir={tmp_path}", "--resume", "--n_embd=32", "--iters=4", *args)
    assert r.returncode == 2 and "n_embd (saved 64, now 32)" in r.stderr, r.stderr
    assert open(tmp_path / "ckpt.pt", "rb").read() == before


def test_too_long_questions_name_block_size(tmp_path):
    fixture = os.path.join(ROOT, "tests", "data", "gsm8k_tiny.jsonl")
    r = run("train_sft.py", f"--out_dir={tmp_path}", f"--gsm8k_train={fixture}", f"--gsm8k_test={fixture}",
            "--block_size=64", "--vocab_size=260")
    assert r.returncode == 2 and "needs block_size >=" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_sample_shows_verdicts(tmp_path):
    train_sft.train(SFTConfig(out_dir=str(tmp_path), iters=2, eval_interval=2, **TINY))
    r = run("sample.py", f"--ckpt={tmp_path}/ckpt.pt", "--test_problems=2", "--max_new_tokens=8")
    assert r.returncode == 0 and r.stdout.count("Q: ") == 2 and "truth" in r.stdout, r.stderr
    r = run("sample.py", f"--ckpt={tmp_path}/nothing.pt")
    assert r.returncode == 2 and "no such checkpoint" in r.stderr


def test_repeat_a_step_pads_with_a_step_the_oracle_accepts():
    import random

    from nanoreason.tasks import TaskConfig, check_steps, make_problems, split_steps
    from train_sft import repeat_a_step
    for i, p in enumerate(make_problems(20, "train", 0, TaskConfig())):
        q = repeat_a_step(p, random.Random(i))
        assert len(split_steps(q.solution)) == len(split_steps(p.solution)) + 1
        assert all(check_steps(q, q.solution)) and q.solution.endswith(f"#### {p.answer}")
