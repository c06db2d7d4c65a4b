"""Going bigger: DDP under torchrun (gloo, 2 CPU processes) matches one process with the same global batch; gradient
accumulation matches one big batch; activation checkpointing leaves gradients unchanged; bf16 autocast stays close
to fp32; bad splits are one clear line."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, TINY_SFT, run_entry

ARGS = [a for a in TINY_SFT if not a.startswith(("--iters", "--eval_interval"))] + \
    ["--iters=4", "--eval_interval=100", "--batch_size=8", "--device=cpu", "--eval_problems=4"]


def sft(out, *extra, nproc=1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "train_sft.py", f"--out_dir={out}", *ARGS, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def weights(path):
    return torch.load(os.path.join(path, "ckpt.pt"), weights_only=True)["model"]


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_ddp_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r = sft(one)
    assert r.returncode == 0, r.stderr[-2000:]
    r = sft(two, nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes" in r.stdout
    start = torch.load(os.path.join(one, "ckpt.pt"), weights_only=True)
    assert start["step"] == 4
    assert max_diff(weights(one), weights(two)) < 1e-4                 # 4 Adam steps, float32 summation order only
    assert not os.path.exists(tmp_path / "two" / "old")                # one writer: rank 0
    s = json.load(open(two / "summary.json"))
    assert s["processes"] == 2 and s["tokens_per_second"] > 0          # bench/ddp_throughput.py reads this


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    r1, r2 = sft(tmp_path / "a"), sft(tmp_path / "b", "--grad_accum=4")
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-2000:]
    assert max_diff(weights(tmp_path / "a"), weights(tmp_path / "b")) < 1e-4


def test_bad_splits_are_one_line(tmp_path):
    r = sft(tmp_path, "--grad_accum=3")
    assert r.returncode == 2 and "batch_size=8 cannot be split into 1 processes x grad_accum=3" in r.stderr
    r = sft(tmp_path, "--batch_size=6", "--grad_accum=2", nproc=2)
    assert r.returncode != 0 and "batch_size=6 cannot be split into 2 processes x grad_accum=2" in r.stderr
    r = sft(tmp_path, "--dtype=float16")
    assert r.returncode == 2 and "dtype must be float32 or bfloat16, got 'float16'" in r.stderr


def test_bf16_where_it_cannot_run_is_one_line_before_anything_runs(monkeypatch):
    from nanoreason.config import ConfigError, parse_args
    from train_sft import SFTConfig
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    from nanoreason.training import check_dtype
    with pytest.raises(ConfigError, match=r"^--dtype=bfloat16: Tesla V100-SXM2-16GB has no bf16 support; use "
                                          r"--dtype=float32$"):
        check_dtype("cuda", "bfloat16")

    def no_bf16(*a, **k):
        raise RuntimeError("bf16 is not supported here")
    monkeypatch.setattr(torch, "autocast", no_bf16)
    with pytest.raises(ConfigError, match=r"^--dtype=bfloat16: this CPU cannot run bf16 matmuls"):
        parse_args(SFTConfig, ["--device=cpu", "--dtype=bfloat16"])       # at parse time: before any launch
    parse_args(SFTConfig, ["--device=cpu", "--dtype=float32"])


def test_activation_checkpointing_gives_the_same_gradients(tiny_model):
    x = torch.randint(0, 300, (2, 16))
    grads = []
    for on in (False, True):
        tiny_model.zero_grad()
        tiny_model.train()
        tiny_model.activation_checkpointing = on
        tiny_model(x).logsumexp(-1).mean().backward()
        grads.append([p.grad.clone() for p in tiny_model.parameters() if p.grad is not None])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_bf16_autocast_is_close_to_fp32(tiny_model):
    from nanoreason.training import autocast, sft_loss
    x = torch.randint(0, 300, (4, 16))
    y = torch.randint(0, 300, (4, 16))
    full = sft_loss(tiny_model, x, y).item()
    with autocast("cpu", "bfloat16"):
        assert tiny_model(x).dtype == torch.bfloat16
        half = sft_loss(tiny_model, x, y).item()
    assert half == pytest.approx(full, rel=2e-2)


@pytest.fixture(scope="module")
def updates(sft_ckpt, tmp_path_factory):
    """tests/ddp_update.py with 1 process and with 2 DDP ranks: the weights after each algorithm's update."""
    out = {}
    for n in (1, 2):
        d = tmp_path_factory.mktemp(f"procs{n}")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] \
            if n > 1 else [sys.executable]
        r = subprocess.run([*launcher, "-m", "tests.ddp_update", sft_ckpt, str(d)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        out[n] = d
    return out


@pytest.mark.parametrize("algo", ["grpo", "rloo", "ppo", "finetune", "orm"])
def test_rl_update_on_two_processes_matches_one(sft_ckpt, updates, algo):
    """The same 16 rollouts: one process learns from all of them, or two DDP ranks from 8 each (different token
    counts per rank: rloo's and PPO's token-means need the global normaliser, PPO's whitening the global moments).
    finetune / orm: 5 examples, minibatches of 4 then 1 (a rank with no row still joins the all-reduce)."""
    one, two = (torch.load(updates[n] / f"{algo}.pt", weights_only=True) for n in (1, 2))
    start = torch.load(sft_ckpt, weights_only=True)["model"]
    assert max_diff(start, one) > 1e-3                                  # the update moved the weights
    assert max_diff(one, two) < 1e-5


@pytest.mark.parametrize("script, args", [
    ("train_grpo.py", ["--prompts_per_iter=4", "--group_size=2", "--minibatch_size=4"]),
    ("train_ppo.py", ["--batch_size=4", "--minibatch_size=2"])])
def test_rl_scripts_run_under_torchrun(sft_ckpt, tmp_path, script, args):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                        f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--iters=2", "--eval_interval=2",
                        "--max_new_tokens=16", "--eval_problems=8", "--device=cpu", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes" in r.stdout and r.stdout.count("done:") == 1          # rank 0 reports, once
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [row["step"] for row in rows if "reward" in row] == [1, 2]          # one writer, one row per iteration
    assert json.load(open(tmp_path / "summary.json"))["eval_problems"] == 8
    bad = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                          f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--device=cpu", *args[:-1],
                          "--minibatch_size=3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "minibatch_size=3 cannot be split evenly over 2 processes" in bad.stderr


RM = ["--problems=8", "--group_size=2", "--epochs=1", "--eval_problems=8", "--references=8"]


@pytest.mark.parametrize("script, args", [
    ("train_expert_iteration.py", ["--iters=2", "--prompts_per_iter=8", "--group_size=2", "--eval_problems=8",
                                   "--dtype=bfloat16", "--activation_checkpointing"]),
    ("train_rcrl.py", ["--iters=1", "--prompts_per_iter=8", "--group_size=2", "--eval_problems=8"]),
    ("train_orm.py", [*RM, "--dtype=bfloat16"]), ("train_prm.py", ["--labels=mc_hard", "--mc_n=2", *RM]),
    ("train_distill.py", ["--mode=sequence", "--iters=2", "--batch_size=8", "--group_size=2", "--n_layer=1", "--n_embd=16",
                          "--eval_interval=2", "--eval_problems=8"]),
    ("train_distill.py", ["--mode=on_policy", "--iters=2", "--batch_size=4", "--n_layer=1", "--n_embd=16",
                          "--eval_interval=2", "--eval_problems=8", "--dtype=bfloat16", "--activation_checkpointing"])])
def test_other_stages_run_under_torchrun(sft_ckpt, tmp_path, script, args):
    """Expert iteration, RCRL, ORM, PRM (with MC rollouts) and distillation under torchrun; some with bf16 autocast
    and activation checkpointing."""
    start = "--teacher_ckpt" if script == "train_distill.py" else "--init_from"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                        f"{start}={sft_ckpt}", f"--out_dir={tmp_path}", "--max_new_tokens=16", "--device=cpu", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("done:") == 1 and os.path.exists(tmp_path / "summary.json")   # rank 0 reports and writes
    assert not os.path.exists(tmp_path / "old")                                          # one writer


@pytest.mark.parametrize("script, args", [("train_grpo.py", ["--prompts_per_iter=4", "--group_size=2", "--ent_coef=0.1",
                                                            "--ent_coef_end=0.1"]),
                                          ("train_ppo.py", ["--batch_size=4", "--minibatch_size=2"])])
def test_rl_scripts_take_bf16_and_activation_checkpointing(sft_ckpt, tmp_path, script, args):
    r = run_entry(script, f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--iters=2", "--eval_interval=2",
                  "--max_new_tokens=16", "--eval_problems=8", "--device=cpu", "--lr=1e-3", "--dtype=bfloat16",
                  "--activation_checkpointing", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if "policy_loss" in line]
    assert len(rows) == 2 and all(abs(row["policy_loss"]) < 1e3 and row["entropy"] > 0 for row in rows)
    start = torch.load(sft_ckpt, weights_only=True)["model"]
    assert max_diff(start, weights(tmp_path)) > 1e-4                    # it learned
    bad = subprocess.run([sys.executable, script, "--dtype=fp8"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "dtype must be float32 or bfloat16, got 'fp8'" in bad.stderr
