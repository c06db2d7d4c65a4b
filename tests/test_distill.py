"""Distillation: the losses against a slow per-token reference, the helpers by hand, a student that learns its
teacher's distribution, every mode of train_distill.py end to end, and bad input."""
import json
import math
import os

import pytest
import torch

from nanoreason.evaluate import prompt_text
from nanoreason.distill import curriculum_max_steps, distill_loss
from nanoreason.rollouts import keep_verified
from nanoreason.training import encode_pairs
from nanoreason.tasks import Problem
from tests.conftest import run_entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slow_divergence(s, t, kind, T, beta):
    """One token's divergence, written out over the vocabulary in float64 Python floats."""
    def softmax(z):
        m = max(z)
        e = [math.exp((v - m) / T) for v in z]
        return [v / sum(e) for v in e]
    p, q = softmax(s), softmax(t)                                         # student, teacher
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)  # noqa: E731
    if kind == "forward":
        return kl(q, p)
    if kind == "reverse":
        return kl(p, q)
    m = [beta * x + (1 - beta) * y for x, y in zip(p, q)]
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_distill_loss_matches_a_slow_masked_reference(kind, T):
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11, dtype=torch.float64) * 3, torch.randn(2, 5, 11, dtype=torch.float64) * 3
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]])
    want = [slow_divergence(s[b, i].tolist(), t[b, i].tolist(), kind, T, 0.3)
            for b in range(2) for i in range(5) if mask[b, i]]
    got = distill_loss(s, t, mask, kind, T, beta=0.3, backend="torch")
    assert got.item() == pytest.approx(T * T * sum(want) / len(want), rel=1e-9)
    assert distill_loss(s, t, mask, kind, T, beta=0.3, backend="chunked").item() == pytest.approx(got.item(), rel=1e-9)


def test_distill_loss_gradient_goes_to_the_student_only_and_vanishes_at_the_teacher():
    torch.manual_seed(0)
    s = torch.randn(3, 4, 9, requires_grad=True)
    t = torch.randn(3, 4, 9, requires_grad=True)
    distill_loss(s, t, torch.ones(3, 4), "reverse").backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    same = t.detach().clone().requires_grad_(True)
    loss = distill_loss(same, t.detach(), torch.ones(3, 4), "forward")
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and same.grad.abs().max() < 1e-6
    empty = distill_loss(s, t, torch.zeros(3, 4))                         # nothing to learn: 0, and still differentiable
    assert empty.item() == 0.0 and empty.requires_grad


def test_a_student_learns_its_teachers_distribution():
    """Token-level forward KL on fixed text: a small student's divergence from a bigger random teacher drops 5-fold."""
    from nanoreason.model import GPT, GPTConfig
    torch.manual_seed(0)
    teacher = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        teacher.lm_head.weight.mul_(20)                                  # a peaked, non-trivial teacher
    student = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=32))
    x = torch.randint(0, 300, (8, 12))
    with torch.no_grad():
        t_logits = teacher(x)
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = distill_loss(student(x), t_logits, torch.ones(8, 12))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


def test_verified_examples_keep_distinct_right_answers_only():
    class Tok:
        def encode(self, s):
            return [len(s)]
    p1, p2 = Problem("q1?", "#### 1", 1), Problem("q2?", "#### 2", 2)
    out = encode_pairs(Tok(), keep_verified([p1, p1, p1, p2], ["#### 1", "#### 1", "a\n#### 1", "#### 3"], [1, 1, 1, 0]))
    q1 = [len(prompt_text("q1?"))]
    assert out == [(q1, [6]), (q1, [8])]                  # the duplicate and the wrong answer are dropped


def test_curriculum_rises_over_the_first_half():
    assert [curriculum_max_steps(i, 100, 2, 4) for i in (0, 12, 13, 25, 38, 50, 99)] == [2, 2, 3, 3, 4, 4, 4]
    assert curriculum_max_steps(0, 1, 3, 3) == 3


TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--iters=3", "--batch_size=8", "--eval_problems=8",
        "--eval_interval=3", "--max_new_tokens=24", "--group_size=2"]


def run_distill(*args):
    return run_entry("train_distill.py", *args)


@pytest.mark.parametrize("mode", [["--mode=token"], ["--mode=token", "--data=teacher", "--kind=jsd"],
                                  ["--mode=sequence"], ["--mode=on_policy", "--kind=reverse", "--curriculum"]])
def test_distill_script_runs_each_mode(sft_ckpt, tmp_path, mode):
    r = run_distill(f"--teacher_ckpt={sft_ckpt}", f"--out_dir={tmp_path}", *TINY, *mode)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(tmp_path / "summary.json"))
    assert s["student_params"] < s["teacher_params"] and s["mode"] == mode[0].split("=")[1]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if "lr" in r] == [1, 2, 3]
    assert (tmp_path / "distill.png").exists()
    from nanoreason.checkpoint import load_model
    student, tok, ckpt = load_model(str(tmp_path / "ckpt.pt"))          # a policy that eval.py can load
    assert student.cfg.n_layer == 1 and ckpt["config"]["max_steps"] == 1


def test_distill_bad_input(sft_ckpt, tmp_path, entry):
    r = entry("train_distill.py", f"--teacher_ckpt={sft_ckpt}", "--mode=dagger")
    assert r.returncode == 2 and "mode must be one of token, sequence, on_policy, got 'dagger'" in r.stderr
    from nanoreason.config import ConfigError, parse_args
    from train_distill import DistillConfig
    with pytest.raises(ConfigError, match="kind must be one of forward, reverse, jsd"):
        parse_args(DistillConfig, [f"--teacher_ckpt={sft_ckpt}", "--kind=tv"])
    # a student with another tokenizer: a smaller vocabulary trains a different BPE
    other = tmp_path / "other"
    from tests.conftest import TINY_SFT
    swap = {"--vocab_size": "--vocab_size=280", "--max_new_tokens": "--max_new_tokens=16"}  # fewer merges make
    args = [swap.get(a.split("=")[0], a) for a in TINY_SFT]          # longer questions: keep them in block_size
    assert entry("train_sft.py", f"--out_dir={other}", *args).returncode == 0
    r = entry("train_distill.py", f"--teacher_ckpt={sft_ckpt}", f"--init_from={other}/ckpt.pt", *TINY)
    assert r.returncode == 2 and "the student's tokenizer differs from the teacher's" in r.stderr and f"{other}/ckpt.pt" in r.stderr
    # a student larger than its teacher: allowed, with a warning
    r = run_distill(f"--teacher_ckpt={sft_ckpt}", f"--out_dir={tmp_path / 'big'}", *TINY, "--n_layer=2",
                    "--n_embd=64")
    assert r.returncode == 0 and "is larger than its teacher" in r.stdout


def test_distillation_bench_tabulates_the_arms(sft_ckpt, tmp_path):
    """Two arms from one start: the table lists both beside the start and the teacher; a finished arm is kept, not
    re-run; a bad arm is one line."""
    r = run_entry("bench/distillation.py", f"--teacher_ckpt={sft_ckpt}", f"--out_dir={tmp_path}",
                        "--n_layer=1", "--n_embd=16", "--start_iters=4", "--iters=2", "--eval_problems=8", "--max_new_tokens=24",
                        "--arms=sft,token_forward")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(tmp_path / "results.json"))
    assert set(res["arms"]) == {"sft", "token_forward"} and res["teacher_accuracy"] is not None
    assert (tmp_path / "distillation.png").exists() and "| token_forward |" in open(tmp_path / "table.md").read()
    before = os.path.getmtime(tmp_path / "sft" / "summary.json")
    r = run_entry("bench/distillation.py", f"--teacher_ckpt={sft_ckpt}", f"--out_dir={tmp_path}",
                        "--arms=sft")
    assert r.returncode == 0 and "sft: kept the finished run" in r.stdout, r.stderr[-2000:]
    assert os.path.getmtime(tmp_path / "sft" / "summary.json") == before       # not re-run
    assert set(json.load(open(tmp_path / "results.json"))["arms"]) == {"sft", "token_forward"}
    r = run_entry("bench/distillation.py", f"--teacher_ckpt={sft_ckpt}", "--arms=sft,dagger")
    assert r.returncode == 2 and "unknown arm 'dagger'" in r.stderr


def test_distill_resume_continues_the_run(sft_ckpt, tmp_path):
    common = [f"--teacher_ckpt={sft_ckpt}", f"--out_dir={tmp_path}", *TINY, "--eval_interval=2"]
    assert run_distill(*common, "--iters=2").returncode == 0
    r = run_distill(*common, "--iters=4", "--resume")
    assert r.returncode == 0 and "resuming from" in r.stdout, r.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [row["step"] for row in rows if "lr" in row] == [1, 2, 3, 4]
    first = json.load(open(tmp_path / "summary.json"))
    assert first["iters"] == 4 and first["accuracy_before"] == rows[0]["accuracy"]     # the start, not the resume
    r = run_distill(*common, "--iters=6", "--resume", "--mode=sequence")
    assert r.returncode == 2 and "mode (saved 'token', now 'sequence')" in r.stderr
