"""PPO end to end: a toy reward goes up fast; the script's bad input and NaN handling are clear."""
import copy
import json
import os

import pytest
import torch

import train_ppo
from nanoreason.model import GPT, GPTConfig
from nanoreason.rollouts import Batch
from nanoreason.rundir import NonFiniteError
from nanoreason.sampling import generate
from tests.conftest import run_entry
from train_ppo import PPOConfig, advantages, ppo_update

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ppo_raises_a_toy_reward():
    """Reward 1 if the first generated token is one of 30 'good' tokens (10% of a random policy's mass)."""
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32))
    ref = copy.deepcopy(policy).requires_grad_(False)
    cfg = PPOConfig(batch_size=64, minibatch_size=32, epochs=2, kl_coef=0.01)
    params = list(policy.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    prompts = [torch.randint(0, 299, (3,)).tolist() for _ in range(64)]
    history = []
    for it in range(25):
        r = generate(policy, prompts, 4, eot_id=299, temperature=1.0)
        ids, mask = r.sequences()
        m = r.completion_mask.float()
        reward = (r.completion[:, 0] < 30).float()
        scores = torch.zeros_like(m)
        scores[torch.arange(64), m.sum(1).long() - 1] = reward          # the score on the last token
        b = Batch(r, ids, mask, r.prompt.shape[1], m, scores, reward, reward, reward, [])
        old_logp, old_values, adv, ret, kl = advantages(policy, ref, policy, b, cfg.kl_coef, cfg, 1.0)
        stats = ppo_update(policy, policy, opt, params, b, old_logp, old_values, adv, ret, cfg, 1.0, 0.0, it)
        history.append(reward.mean().item())
        assert all(torch.isfinite(torch.tensor(stats)))
    assert sum(history[:3]) / 3 < 0.25 and sum(history[-3:]) / 3 > 0.8, history


def run_ppo(*args):
    return run_entry("train_ppo.py", *args)


def test_ppo_script_runs_resumes_and_writes_its_outputs(sft_ckpt, tmp_path):
    common = [f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--batch_size=8", "--minibatch_size=4",
              "--max_new_tokens=16", "--eval_problems=16", "--eval_interval=2"]
    r = run_ppo(*common, "--iters=2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_ppo(*common, "--iters=4", "--resume")
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]
    s = json.load(open(tmp_path / "summary.json"))
    assert s["iters"] == 4 and s["eval_problems"] == 16 and {"accuracy_before", "accuracy_after"} <= set(s)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if "kl" in r] == [1, 2, 3, 4]        # the log survived the resume
    assert (tmp_path / "ppo.png").exists()
    r = run_ppo(*common, "--iters=5", "--resume", "--critic=separate")      # another critic: refused before loading
    assert r.returncode == 2 and "critic (saved 'shared', now 'separate')" in r.stderr, \
        r.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["--rewards=correctness=1"], "unknown reward 'correctness'"),
    (["--rewards=outcome=lots"], "reward weight for 'outcome' must be a number"),
    (["--kl_coef=-0.1"], "kl_coef must be >= 0"),
    (["--shaping=square"], "unknown shaping"),
    (["--critic=both"], "critic must be 'shared' or 'separate'"),
])
def test_bad_input_is_one_clear_line(args, message, entry):
    r = entry("train_ppo.py", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_mismatched_tokenizer_is_named(sft_ckpt, tmp_path):
    ck = torch.load(sft_ckpt, weights_only=True)
    ck["tokenizer"]["specials"] = ck["tokenizer"]["specials"][:1]          # a tokenizer with fewer tokens
    torch.save(ck, tmp_path / "bad.pt")
    r = run_ppo(f"--init_from={tmp_path / 'bad.pt'}", f"--out_dir={tmp_path}/o")
    assert r.returncode == 2 and "tokenizer does not match" in r.stderr, r.stderr


def test_nan_stops_with_the_step_and_keeps_the_last_checkpoint(sft_ckpt, tmp_path, monkeypatch):
    cfg = PPOConfig(init_from=sft_ckpt, out_dir=str(tmp_path), iters=4, batch_size=8, minibatch_size=8,
                    max_new_tokens=16, eval_problems=16, eval_interval=2)
    real = train_ppo.rl.ppo_policy_loss
    calls = []

    def poisoned(*a, **k):
        calls.append(1)
        loss, cf = real(*a, **k)
        return (loss * float("nan"), cf) if len(calls) > 4 else (loss, cf)    # iterations 1-2 fine, then NaN
    monkeypatch.setattr(train_ppo.rl, "ppo_policy_loss", poisoned)
    with pytest.raises(NonFiniteError, match=r"at step 2; stopping\. The newest good checkpoint is .*ckpt.pt \(step 2\)"):
        train_ppo.train(cfg)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 2


def test_step_size_bench_skips_batches_without_contrast_and_names_a_bad_prefix(sft_ckpt, tmp_path):
    def bench(*args):
        return run_entry("bench/ppo_step_size.py", f"--init_from={sft_ckpt}", "--iters=2",
                               "--batch_size=8", f"--out_dir={tmp_path}", *args)
    r = bench()                                  # the 4-step tiny SFT model gets nothing right: no advantage anywhere
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("all 8 answers wrong: no advantage, no step") == 2 and "| nothing | 0 of 0 |" in r.stdout
    assert "| nothing | 0 of 0 |" in (tmp_path / "table.md").read_text()
    bad = bench("--freeze=wtf")
    assert bad.returncode == 2 and "no parameter name starts with 'wtf'" in bad.stderr and "Traceback" not in bad.stderr


def test_pairwise_cosine_measures_the_signal_fraction_of_noisy_gradients():
    from bench.pg_snr import pairwise_cosine
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])                  # pairs: 0, 1/sqrt2, 1/sqrt2
    assert pairwise_cosine(rows) == pytest.approx(2 ** 0.5 / 3, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    s = torch.ones(20_000)                                                      # |s|^2 = sigma^2 -> cos ~ 1/2
    noisy = torch.stack([s + torch.randn(20_000, generator=g) for _ in range(4)])
    assert pairwise_cosine(noisy) == pytest.approx(0.5, abs=0.03)


def test_pg_snr_bench_sees_the_sft_signal_and_no_signal_without_contrast(sft_ckpt, tmp_path):
    def bench(*args):
        return run_entry("bench/pg_snr.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}",
                               "--batches=3", "--batch_size=8", "--group_size=2", *args)
    r = bench()
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sft"]["cosine"] > 0.2                          # imitation: every batch pulls the same way
    assert summary["outcome"]["cosine"] == 0 and summary["outcome"]["batch_for_snr_1"] is None   # all wrong: 0
    assert summary["outcome_same_problems"]["cosine"] == 0 and summary["outcome_vs_sft"]["max"] == 0
    bad = bench("--group_size=3")
    assert bad.returncode == 2 and "group_size must be >= 2 and divide batch_size=8" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_epochs_bench_tabulates_each_arm_over_seeds(sft_ckpt, tmp_path, entry):
    r = entry("bench/ppo_epochs.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--arms=2:1,1:2",
              "--seeds=0", "--eval_problems=8")
    assert r.returncode == 0, r.stderr[-2000:]
    table = (tmp_path / "table.md").read_text()
    assert "| 2 | 1 | 64 |" in table and "| 1 | 2 | 128 |" in table
    runs = json.load(open(tmp_path / "results.json"))["runs"]
    assert list(runs) == ["2:1", "1:2"] and all(len(rs) == 1 and "gain" in rs[0] for rs in runs.values())
    assert entry("bench/ppo_epochs.py", "--arms=2-128").returncode == 2


def test_iteration_bench_times_each_part_of_a_round(sft_ckpt, tmp_path):
    r = run_entry("bench/ppo_iteration.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--rounds=1",
                  "--batch_size=4", "--max_new_tokens=8")
    assert r.returncode == 0, r.stderr[-2000:]
    table = open(tmp_path / "table.md").read()
    assert "| old log-probs from the sampler |" in table and "| reference forward |" in table
    assert "with the sampler's log-probs (" in table.splitlines()[-1]
