"""Expert iteration and return-conditioned RL: the filter, the tags, and each script end to end on a tiny config."""
import json
import re
import os

import pytest
import torch

from nanoreason.tasks import TaskConfig, make_problems
from nanoreason.tokenizer import Tokenizer
from tests.conftest import run_entry
from nanoreason.training import completion_batch
from nanoreason.rollouts import keep_verified



def test_keep_verified_filters_and_deduplicates():
    p = make_problems(1, "train", 0, TaskConfig(min_steps=2, max_steps=2))[0]
    right = p.solution
    lucky = re.sub(r"=(\d+)>>", lambda m: f"={int(m[1]) + 1}>>", right, count=1)   # a wrong first step, right answer
    texts, correct = [right, right, lucky, "#### 5"], [1, 1, 1, 0]
    assert keep_verified([p] * 4, texts, correct, "outcome") == [(p, right), (p, lucky)]
    assert keep_verified([p] * 4, texts, correct, "steps") == [(p, right)]


def test_completion_batch_learns_only_the_completion():
    tok = Tokenizer.train("ab ab abc\n", 260)
    tag = tok.special_ids["<|correct|>"]
    x, y = completion_batch(tok, [([tag, 97], [98, 99]), ([97], [98])], block_size=16)
    assert x.tolist() == [[tag, 97, 98, 99], [97, 98, tok.eot_id, tok.eot_id]]
    assert y.tolist() == [[-1, 98, 99, tok.eot_id], [98, tok.eot_id, -1, -1]]     # the tag and prompt are context


def run(script, *args):
    return run_entry(script, *args)                                     # in this process: no torch import per run


@pytest.mark.parametrize("script, extra", [("train_expert_iteration.py", ["--verify=steps"]),
                                           ("train_expert_iteration.py", []), ("train_rcrl.py", []),
                                           ("train_rcrl.py", ["--condition=False"])])
def test_scripts_run_a_tiny_config(sft_ckpt, tmp_path, script, extra):
    r = run(script, f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--iters=2", "--prompts_per_iter=8",
            "--group_size=2", "--max_new_tokens=16", "--eval_problems=16", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(tmp_path / "summary.json"))
    assert s["samples"] == 2 * 8 * 2 and {"accuracy_before", "accuracy_after", "wall_seconds"} <= set(s)
    ck = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ck["step"] == 2 and any(f.endswith(".png") for f in os.listdir(tmp_path))
    if script == "train_rcrl.py":                     # held-out prompts ask for <|correct|>, except in the control
        assert (s["prefix"] == []) == ("--condition=False" in extra) and ck["extra"]["prefix"] == s["prefix"]


@pytest.mark.parametrize("script, args, message", [
    ("train_expert_iteration.py", ["--group_size=0"], "group_size (samples per problem) must be >= 1"),
    ("train_expert_iteration.py", ["--verify=vibes"], "verify must be 'outcome' or 'steps'"),
    ("train_rcrl.py", ["--group_size=0"], "group_size (samples per problem) must be >= 1"),
])
def test_bad_input_is_one_clear_line(script, args, message, entry):
    r = entry(script, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
