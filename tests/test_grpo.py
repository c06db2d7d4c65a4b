"""The group-baseline family end to end: a toy reward goes up under each algorithm; the script runs, resumes and
refuses bad input with one clear line."""
import json
import os

import pytest
import torch

from nanoreason.model import GPT, GPTConfig
from nanoreason.rollouts import Batch
from nanoreason.sampling import generate
from tests.conftest import run_entry
from train_grpo import GRPOConfig, advantages, update

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("algo, dr", [("grpo", False), ("grpo", True), ("rloo", False), ("reinforce", False),
                                      ("dapo", False), ("gspo", False), ("reinforce_pp", False)])
def test_group_methods_raise_a_toy_reward(algo, dr):
    """Reward 1 if the first generated token is one of 30 'good' tokens (10% of a random policy's mass)."""
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32))
    cfg = GRPOConfig(algo=algo, dr_grpo=dr, prompts_per_iter=16, group_size=4, max_new_tokens=4,
                     epochs=1 if algo == "reinforce" else 2, minibatch_size=32)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    prompts = [p for p in (torch.randint(0, 299, (3,)).tolist() for _ in range(16)) for _ in range(4)]
    history = []
    for it in range(30 if algo != "reinforce" else 60):          # REINFORCE: one on-policy step per batch, not 4
        r = generate(policy, prompts, 4, eot_id=299, temperature=1.0)
        ids, mask = r.sequences()
        m = r.completion_mask.float()
        reward = (r.completion[:, 0] < 30).float()
        scores = torch.zeros_like(m)
        scores[:, 0] = reward
        b = Batch(r, ids, mask, r.prompt.shape[1], m, scores, reward, reward, reward, [])
        update(policy, None, opt, b, advantages(reward, cfg), cfg, 1.0, 0.0, it)
        history.append(reward.mean().item())
    assert sum(history[:3]) / 3 < 0.25 and sum(history[-3:]) / 3 > 0.8, history


def run_grpo(*args):
    return run_entry("train_grpo.py", *args)


@pytest.mark.parametrize("algo", [["--algo=grpo", "--kl_coef=0.04", "--epochs=2", "--minibatch_size=4"],
                                  ["--dr_grpo"], ["--algo=rloo"], ["--algo=reinforce"], ["--algo=dapo", "--max_samples=6"],
                                  ["--algo=gspo", "--epochs=2", "--minibatch_size=3"],
                                  ["--algo=reinforce_pp", "--kl_coef=0.01"]])
def test_grpo_script_runs_each_algorithm(sft_ckpt, tmp_path, algo):
    r = run_grpo(f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--prompts_per_iter=2", "--group_size=3",
                 "--max_new_tokens=16", "--eval_problems=16", "--eval_interval=2", "--iters=2", *algo)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(tmp_path / "summary.json"))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if "reward" in line]
    iters = 1 if "--max_samples=6" in algo else 2                        # dapo: the budget is spent after one
    assert len(rows) == iters == s["iters"] and all(0 <= row["zero_signal_groups"] <= 1 for row in rows)
    assert all(row["refill_samples"] % 3 == 0 for row in rows)           # whole groups of fresh prompts (dapo)
    assert s["samples"] == iters * 2 * 3 + sum(row["refill_samples"] for row in rows) == rows[-1]["samples"]
    assert s["eval_problems"] == 16


def test_grpo_resume_continues_the_log(sft_ckpt, tmp_path):
    common = [f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--prompts_per_iter=2", "--group_size=2",
              "--max_new_tokens=16", "--eval_problems=16", "--eval_interval=2"]
    assert run_grpo(*common, "--iters=2").returncode == 0
    r = run_grpo(*common, "--iters=4", "--resume")
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [row["step"] for row in rows if "reward" in row] == [1, 2, 3, 4]
    done = json.load(open(tmp_path / "summary.json"))
    assert run_grpo(*common, "--iters=4", "--resume").returncode == 0      # a finished run resumed: the same report
    again = json.load(open(tmp_path / "summary.json"))
    assert again["accuracy_after"] == done["accuracy_after"] and again["accuracy_before"] == done["accuracy_before"]
    r = run_grpo(*common, "--iters=6", "--resume", "--algo=rloo")
    assert r.returncode == 2 and "algo (saved 'grpo', now 'rloo')" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--group_size=1"], "group_size must be >= 2"),
    (["--algo=ppo2"], "unknown algo 'ppo2'"),
    (["--algo=rloo", "--dr_grpo"], "--dr_grpo modifies algo=grpo"),
    (["--algo=reinforce", "--kl_coef=0.1"], "needs epochs=1 and kl_coef=0"),
    (["--algo=dapo", "--clip_eps_high=0.1"], "clip_eps_high=0.1 is below clip_eps=0.2"),
    (["--algo=gspo", "--loss_agg=token-mean"], "algo=gspo has one ratio per answer: it cannot use loss_agg=token-mean"),
    (["--algo=dapo", "--group_size=1"], "group_size must be >= 2"),
    (["--rewards=outcome=much"], "reward weight for 'outcome' must be a number"),
    (["--shaping=square"], "unknown shaping 'square'"),
    (["--data=nope.jsonl"], "--data=nope.jsonl: no such file"),
    (["--test_data=tests/data/gsm8k_tiny.jsonl"], "test_data needs data"),
])
def test_bad_input_is_one_clear_line(args, message, entry):
    r = entry("train_grpo.py", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_compare_algorithms_writes_a_table_for_every_algorithm_and_keeps_finished_runs(sft_ckpt, tmp_path):
    """Three kinds of arm (a group method under a sample budget, a tagged prompt, the SFT control); every script's own
    run is tested elsewhere. A second call with another seed trains only that seed."""
    def bench(*args):
        return run_entry("bench/compare_algorithms.py", f"--init_from={sft_ckpt}",
                               f"--out_dir={tmp_path}", "--samples=64", "--k=8", "--eval_problems=8",
                               "--sample_problems=4", *args)
    r = bench("--algos=dapo,rcrl,sft_control", "--seeds=0")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = json.load(open(tmp_path / "results.json"))["runs"]
    assert set(runs) == {"start (SFT)", "dapo", "rcrl", "sft_control"}
    assert all(0 <= x["pass@1"] <= x["pass@2"] <= x["pass@8"] <= 1 and 0 <= x["maj@1"] <= 1 and 0 <= x["maj@8"] <= 1
               for rs in runs.values() for x in rs)
    assert all(x["samples"] == 64 for n, rs in runs.items() if n not in ("start (SFT)", "dapo") for x in rs)
    assert runs["dapo"][0]["samples"] >= 64                            # its refills count: it stops past the budget
    assert (tmp_path / "compare.png").exists() and "| sft_control |" in open(tmp_path / "table.md").read()
    kept = (tmp_path / "rcrl" / "seed0" / "ckpt.pt").stat().st_mtime
    r = bench("--algos=rcrl", "--seeds=0,1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "rcrl" / "seed0" / "ckpt.pt").stat().st_mtime == kept        # kept, not trained again
    runs = json.load(open(tmp_path / "results.json"))["runs"]
    assert [x["seed"] for x in runs["rcrl"]] == [0, 1] and " ± " in open(tmp_path / "table.md").read()
    r = bench("--algos=rcrl", "--seeds=0", "--samples=128")                           # other settings: one line
    assert r.returncode == 2 and "move it away" in r.stderr, r.stderr[-2000:]
    for args, message in ((["--algos=ppo,dpo"], "unknown algorithm 'dpo'"), (["--k=12"], "k must be a power of 2"),
                          (["--seeds=a"], "seeds must be comma-separated integers")):
        r = run_entry("bench/compare_algorithms.py", *args)
        assert r.returncode == 2 and message in r.stderr, r.stderr


def test_dynamic_sampling_drops_groups_without_signal_and_refills_from_fresh_prompts():
    """A fake sampler whose first round has one informative group of 2 and later rounds two each: with 2 prompts per
    iteration the batch is refilled once, keeps whole groups, and counts the extra completions."""
    from train_grpo import dynamic_sampling
    cfg = GRPOConfig(algo="dapo", prompts_per_iter=2, group_size=2, max_new_tokens=4)
    policy = GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=16))
    calls = []

    def sample(seed):
        calls.append(seed)
        r = generate(policy, [[1, 2, 3]] * 4, 4, eot_id=299, temperature=1.0)
        ids, mask = r.sequences()
        m = r.completion_mask.float()
        rewards = torch.tensor([1.0, 0.0, 1.0, 1.0]) if len(calls) == 1 else torch.tensor([0.0, 1.0, 1.0, 0.0])
        b = Batch(r, ids, mask, r.prompt.shape[1], m, torch.zeros_like(m), rewards, rewards, rewards,
                  [f"{len(calls)}:{i}" for i in range(4)])
        return [f"p{len(calls)}{i // 2}" for i in range(4)], b, rewards
    problems, b, rewards, extra = dynamic_sampling(sample, cfg, 0)
    assert len(calls) == 2 and extra == 4                               # one refill round of 2 prompts x 2
    assert problems == ["p10", "p10", "p20", "p20"] and rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert b.texts == ["1:0", "1:1", "2:0", "2:1"] and b.ids.shape[0] == 4


def test_the_sampler_keeps_log_probs_only_when_the_update_reads_them():
    from train_grpo import GRPOConfig, off_policy
    rows = lambda c: c.prompts_per_iter * c.group_size                 # noqa: E731  one process: every row
    default = GRPOConfig()
    assert not off_policy(default, rows(default))                       # one step per batch: the new log-probs are
    for kw in ({"epochs": 2}, {"minibatch_size": 8}, {"algo": "reinforce_pp", "kl_coef": 0.01}):   # the old ones
        c = GRPOConfig(**kw)
        assert off_policy(c, rows(c)), kw
