"""Reward models and test-time compute: labels land on the right tokens, each labelling is what it claims, a tiny RM
learns, best-of-N and reranking pick what they should, and the scripts run and refuse bad input."""
import json
import os
import re

import pytest
import torch

from nanoreason import reward_models as rm
from nanoreason.evaluate import prompt_text
from nanoreason.model import GPT, GPTConfig
from nanoreason.search import best_of_n, pick
from nanoreason.tasks import Problem, TaskConfig, check_steps, make_problems
from nanoreason.tokenizer import Tokenizer
from tests.conftest import run_entry

TASK = TaskConfig(min_steps=2, max_steps=3)


@pytest.fixture(scope="module")
def tok():
    probs = make_problems(200, "train", 0, TASK)
    return Tokenizer.train("\n".join(p.question + "\n" + p.solution for p in probs), 300)


def test_prm_labels_sit_on_step_end_tokens_and_orm_labels_on_every_completion_token(tok):
    p = make_problems(1, "train", 3, TASK)[0]
    q, c, ends = rm.encode(tok, p, p.solution)
    ids, target, mask = rm.batch(tok, [(p, p.solution, [1.0, 0.0, 1.0][:len(ends)])], "prm", 200)
    marked = mask[0].nonzero().flatten().tolist()
    assert marked == [len(q) + e for e in ends]
    for pos in marked:                                  # the token at each marked position closes a line
        assert tok.decode(ids[0, :pos + 1].tolist()).endswith("\n") or pos == len(q) + len(c) - 2
    assert target[0, marked].tolist() == [1.0, 0.0, 1.0][:len(ends)]
    _, target, mask = rm.batch(tok, [(p, p.solution, [1.0])], "orm", 200)
    assert mask[0].nonzero().flatten().tolist() == list(range(len(q), len(q) + len(c)))


def test_perturbed_examples_are_wrong_exactly_where_labelled():
    probs = make_problems(30, "train", 1, TASK)
    exs = rm.perturbed_examples(probs, seed=0)
    assert len(exs) == 60
    for p, text, labels in exs:
        assert [float(v) for v in check_steps(p, text)] == labels       # the oracle agrees with every label


def test_mc_labels_aggregation_and_pick_by_hand():
    assert rm.mc_label([0, 0, 1, 0], soft=False) == 1.0 and rm.mc_label([0, 0, 1, 0], soft=True) == 0.25
    assert rm.reduce_steps([0.9, 0.2, 0.8], "min") == 0.2 and rm.reduce_steps([0.9, 0.2, 0.8], "last") == 0.8
    assert rm.reduce_steps([0.5, 0.5], "prod") == pytest.approx(0.25)
    assert pick([3, 5, 5, 7]) == 5 and pick([3, 5, 5, 7], [0.1, 0.2, 0.3, 0.9]) == 7
    p = Problem("q", "#### 5", 5)
    # k = 4 samples, two groups of 2: (5, 1) -> scores pick 1 (wrong); (2, 5) -> scores pick 5 (right)
    assert best_of_n([p], [[5, 1, 2, 5]], [[0.1, 0.9, 0.2, 0.8]], 2) == 0.5
    assert best_of_n([p], [[5, 1, 2, 5]], None, 4) == 1.0                # majority of 4: 5
    with pytest.raises(Exception, match="best-of-8 needs 1 <= n <= k"):
        best_of_n([p], [[5, 1, 2, 5]], None, 8)


def test_likelihood_spans_cover_each_step_line_and_score_is_their_probability(tok):
    """A step's span is its line and newline; s = prod p(token) over it, checked against a token-by-token loop; the
    loss is -log s for a good step and -log(1 - s) for a bad one."""
    torch.manual_seed(0)
    p = make_problems(1, "train", 3, TASK)[0]
    q, c, ends = rm.encode(tok, p, p.solution)
    steps = p.solution.split("\n")[:-1]
    assert [tok.decode(c[a:b + 1]) for a, b in rm.spans(c, ends, "prm")] == [line + "\n" for line in steps]
    assert rm.spans(c, ends, "orm") == [(0, len(c) - 1)]
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=1, n_head=2, n_embd=32)).eval()
    labels = [1.0, 0.0, 1.0][:len(steps)]
    ids, span, target, mask = rm.span_batch(tok, [(p, p.solution, labels)], "prm", 200)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0], -1)                         # (T, V)
        slow = [sum(logp[len(q) + t - 1, c[t]].item() for t in range(a, b + 1)) for a, b in rm.spans(c, ends, "prm")]
        fast = rm.span_logprobs(model, ids, span, target.shape[1])[0].tolist()
        loss = rm.likelihood_loss(model, ids, span, target, mask).item()
    assert fast == pytest.approx(slow, abs=1e-4)
    s = torch.tensor(slow).exp()
    by_hand = -(torch.tensor(labels) * s.log() + (1 - torch.tensor(labels)) * (1 - s).log()).mean()
    assert loss == pytest.approx(by_hand.item(), rel=1e-4)
    model.readout = "likelihood"
    assert rm.score(model, tok, [p], [p.solution], "prm")[0] == pytest.approx(s.tolist(), rel=1e-4)


def test_a_tiny_likelihood_prm_learns_to_reject_corrupted_steps(tok):
    """Reference steps are good, a step with a changed result is bad: the verifier must make that result improbable."""
    torch.manual_seed(0)
    exs = rm.perturbed_examples(make_problems(16, "train", 5, TASK), seed=0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=2, n_head=2, n_embd=64))
    rm.fit(model, tok, exs, "prm", epochs=100, batch_size=16, lr=3e-3)
    assert model.readout == "likelihood"
    assert rm.step_accuracy(model, tok, [p for p, _, _ in exs], [t for _, t, _ in exs]) > 0.9


def test_a_tiny_head_orm_learns_a_labelling_it_can_see(tok):
    """Label = 1 iff the answer ends in an even number: the ORM must read the last tokens to get it right."""
    torch.manual_seed(0)
    probs = make_problems(64, "train", 2, TASK)
    exs = [(p, p.solution, [float(p.answer % 2 == 0)]) for p in probs]
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=2, n_head=2, n_embd=64))
    rm.fit(model, tok, exs, "orm", epochs=40, batch_size=16, lr=3e-3, readout="head")
    acc = rm.outcome_accuracy(model, tok, [p for p, _, _ in exs], [t for _, t, _ in exs], [y[0] for _, _, y in exs])
    assert acc > 0.9, acc


def test_collect_pays_steps_from_a_learned_scorer(tok):
    from nanoreason.rollouts import collect
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=1, n_head=2, n_embd=32))
    probs = make_problems(4, "train", 4, TASK)
    b = collect(model, tok, probs, {"steps": 2.0}, "none", 24, 1.0, torch.Generator().manual_seed(0),
                step_scorer=lambda ps, ts: [[0.25] * 9 for _ in ts])
    for i, t in enumerate(b.texts):             # each step end gets 2 * 0.25 = 0.5, nothing else is paid
        from nanoreason.tasks import split_steps
        assert b.scores[i].sum().item() == pytest.approx(0.5 * len(split_steps(t)))


def run(script, *args):
    return run_entry(script, *args)                                     # in this process: no torch import per run


TINY = ["--problems=8", "--group_size=2", "--epochs=1", "--eval_problems=8", "--max_new_tokens=16", "--references=8"]


def test_scripts_train_rms_and_eval_reranks_with_them(sft_ckpt, tmp_path):
    r = run("train_orm.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/orm", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0 <= json.load(open(tmp_path / "orm" / "summary.json"))["verdict_accuracy"] <= 1
    for labels in ("oracle", "mc_soft", "perturbed"):
        r = run("train_prm.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/prm_{labels}", f"--labels={labels}",
                "--mc_n=2", *TINY)
        assert r.returncode == 0, r.stderr[-2000:]
        s = json.load(open(tmp_path / f"prm_{labels}" / "summary.json"))
        assert 0 <= s["step_accuracy"] <= 1 and (labels != "mc_soft" or set(s["mc_agreement_with_oracle"]) == {"1", "2"})
    r = run("eval.py", f"--ckpt={sft_ckpt}", "--k=4", "--best_of=1,2,4", "--eval_problems=8", "--max_new_tokens=16",
            f"--orm_ckpt={tmp_path}/orm/ckpt.pt", f"--prm_ckpt={tmp_path}/prm_oracle/ckpt.pt", f"--out_dir={tmp_path}/eval",
            "--beam=2", "--expand=2", "--mmr=2")
    assert r.returncode == 0, r.stderr[-2000:]
    e = json.load(open(tmp_path / "eval" / f"{os.path.basename(os.path.dirname(sft_ckpt))}_k4.json"))
    assert {"maj@1 (greedy)", "maj@4", "pass@4", "rerank@4 ORM", "rerank@4 PRM-min",
            "PRM beam search (width 2 x 2)", "any right, MMR-chosen 2", "maj, first 2", "maj, top-scored 2",
            "rerank@4 oracle PRM-min"} <= set(e["table"])
    assert e["table"]["pass@4"] >= e["table"]["maj@4"] - 1e-9
    assert set(e["best_of_n"]) == {"majority", "ORM", "PRM-min", "PRM-prod", "PRM-last", "oracle PRM-min",
                                   "ORM-weighted vote", "PRM-min-weighted vote"}
    assert len(e["beam_search"]) == 1 and e["beam_search"][0][0] > 0 and e["tokens_per_sample"] > 0
    assert os.path.isfile(tmp_path / "eval" / f"{os.path.basename(os.path.dirname(sft_ckpt))}_k4.png")
    assert e["table"]["rerank@4 oracle PRM-min"] <= e["table"]["pass@4"] + 1e-9
    # what the learned scores follow (bench/rm_diagnosis.py), beside scorers that know nothing
    r = run("bench/rm_diagnosis.py", f"--ckpt={sft_ckpt}", f"--orm_ckpt={tmp_path}/orm/ckpt.pt", "--k=4",
            f"--prm_ckpt={tmp_path}/prm_oracle/ckpt.pt", "--eval_problems=8", "--max_new_tokens=16",
            f"--out_dir={tmp_path}/diag")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.load(open(tmp_path / "diag" / "summary.json"))["verifiers"]
    assert {"ORM", "PRM-min", "oracle PRM-min", "random per sample", "random per distinct text"} <= set(d)
    assert all(not 0 > v["within_auc"] and not v["within_auc"] > 1 and -1 <= v["rho_length"] <= 1 for v in d.values())
    # PPO paid by the learned PRM (and refusing an ORM there)
    ppo = ["train_ppo.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/ppo", "--iters=1", "--batch_size=4",
           "--minibatch_size=4", "--max_new_tokens=16", "--eval_problems=8", "--rewards=outcome=1,steps=1"]
    r = run(*ppo, f"--prm_ckpt={tmp_path}/prm_oracle/ckpt.pt")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run(*ppo, f"--prm_ckpt={tmp_path}/orm/ckpt.pt")
    assert r.returncode == 2 and "needs a PRM" in r.stderr, r.stderr
    r = run("train_grpo.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/grpo", "--iters=1", "--prompts_per_iter=2",
            "--group_size=2", "--max_new_tokens=16", "--eval_problems=8", "--rewards=outcome=1,steps=1",
            "--shaping=delta", f"--prm_ckpt={tmp_path}/prm_oracle/ckpt.pt")
    assert r.returncode == 0, r.stderr[-2000:]
    # bad input: a reward model as the policy (one line from the command), a policy as the ORM, a PRM as the ORM, N > k,
    # a reward model trained for another task config, beam widths that are not numbers
    ck = torch.load(tmp_path / "orm" / "ckpt.pt", weights_only=True)
    ck["config"]["max_value"] = 99
    torch.save(ck, other := tmp_path / "orm_other_task.pt")
    r = run("eval.py", f"--ckpt={sft_ckpt}", "--beam=wide")
    assert r.returncode == 2 and "--beam must be comma-separated beam widths" in r.stderr
    r = run("eval.py", f"--ckpt={tmp_path}/orm/ckpt.pt")
    assert r.returncode == 2 and "is a reward_model checkpoint, but a policy" in r.stderr and "Traceback" not in r.stderr
    import eval as eval_script
    from nanoreason.config import ConfigError, parse_args
    for args, msg in [([f"--ckpt={sft_ckpt}", f"--orm_ckpt={sft_ckpt}"], "is a policy checkpoint, but a reward_model"),
                      ([f"--ckpt={sft_ckpt}", f"--orm_ckpt={tmp_path}/prm_oracle/ckpt.pt"], "is a prm checkpoint, passed as --orm_ckpt"),
                      ([f"--ckpt={sft_ckpt}", "--k=4", "--best_of=8"], "best_of=8 is larger than k=4"),
                      ([f"--ckpt={sft_ckpt}", "--beam=2"], "--beam needs --prm_ckpt"),
                      ([f"--ckpt={sft_ckpt}", f"--orm_ckpt={other}"], "trained on another task config than the "
                       "policy: max_value=99")]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            eval_script.main(parse_args(eval_script.EvalConfig, args))


def test_prm_labels_bench_compares_labellings_on_the_same_answers(sft_ckpt, tmp_path):
    tiny = "problems=8,group_size=2,epochs=1,eval_problems=8,references=8,max_new_tokens=16"
    r = run("bench/prm_labels.py", f"--ckpt={sft_ckpt}", f"--out_dir={tmp_path}", "--labellings=oracle,perturbed",
            "--oracle_dir=", f"--prm_args={tiny}", "--k=4", "--best_of=1,4", "--eval_problems=8", "--max_new_tokens=16")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.load(open(tmp_path / "summary.json"))["rows"]
    assert set(rows) == {"majority vote", "oracle as the PRM", "PRM on oracle labels", "PRM on perturbed labels"}
    assert rows["PRM on oracle labels"]["label_agreement"] == 1.0
    assert all(0 <= r["best_of"]["4"] <= 1 for r in rows.values())
    assert "| PRM on perturbed labels |" in open(tmp_path / "table.md").read()


def test_unknown_labels_is_one_clear_line(entry):
    r = entry("train_prm.py", "--labels=vibes")
    assert r.returncode == 2 and "unknown labels 'vibes'" in r.stderr


def test_mmr_prefers_a_different_good_sample_over_a_duplicate():
    from nanoreason.search import mmr_select
    texts = ["a b c #### 5", "a b c #### 5", "x y z #### 7", "q #### 1"]
    assert mmr_select(texts, [0.9, 0.9, 0.8, 0.1], 2, lam=0.5) == [0, 2]       # not the duplicate 1
    assert mmr_select(texts, [0.9, 0.9, 0.8, 0.1], 2, lam=1.0) == [0, 1]       # relevance only
    with pytest.raises(Exception, match="1 <= k <= 4"):
        mmr_select(texts, [0.0] * 4, 5)


def test_prm_beam_search_follows_the_scorer(tok):
    """With the oracle as the step scorer, beam search from a weak policy finishes every problem and never returns
    a text whose steps the oracle rejects when a clean one was found among the candidates."""
    from nanoreason.search import prm_beam_search
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=1, n_head=2, n_embd=32))
    probs = make_problems(3, "train", 7, TASK)
    seen = []

    def oracle_min(ps, ts):
        seen.extend(ts)
        return [rm.reduce_steps(rm.oracle_labels(p, t), "min") for p, t in zip(ps, ts)]
    out, sampled = prm_beam_search(model, tok, oracle_min, probs, beam_width=2, expand=2, max_steps=2,
                                   max_new_tokens=12)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert all(0 < n <= 2 * 2 * 2 * 12 for n in sampled)                     # rounds x beams x expand x tokens
    assert seen and all(t in seen or t == "" for t in out)                      # answers come from scored candidates


def test_prm_beam_search_finishes_a_beam_that_fills_the_context(tok, monkeypatch):
    """A beam whose question and steps so far leave no room in the model's context is finished, not continued:
    every prompt the search hands the policy fits its block_size."""
    from nanoreason import search
    probs = make_problems(2, "train", 7, TASK)
    longest = max(len(tok.encode(prompt_text(p.question.strip()))) for p in probs)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=longest + 30, n_layer=1, n_head=2, n_embd=32))
    asked = []

    def one_more_line(policy, tok, questions, **kw):                   # a policy that never stops writing steps
        asked.extend(questions)
        return ["1+1=<<1+1=2>>2\n"] * len(questions)
    monkeypatch.setattr(search, "solve", one_more_line)
    out, _ = search.prm_beam_search(model, tok, lambda ps, ts: [0.0] * len(ts), probs, beam_width=2, expand=2,
                                    max_steps=8, max_new_tokens=12)
    assert len(out) == 2 and all(out)
    assert max(len(tok.encode(prompt_text(q))) for q in asked) < model.cfg.block_size
    assert len(asked) < 8 * 2 * 2 * 2                                  # the full beams stopped early


def test_reward_hacking_bench_runs_and_tabulates(sft_ckpt, tmp_path):
    r = run("bench/reward_hacking.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}", "--shapings=none,delta",
            "--iters=2", "--batch_size=8", "--eval_problems=8")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(tmp_path / "results.json"))
    assert set(res) == {"none", "delta"} and all(x["steps_start"] >= 0 for x in res.values())
    assert (tmp_path / "hacking.png").exists() and "| delta |" in open(tmp_path / "table.md").read()
    r = run("bench/reward_hacking.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path / 'grpo'}", "--algo=grpo",
            "--shapings=delta", "--iters=2", "--batch_size=8", "--eval_problems=8")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.load(open(tmp_path / "grpo" / "delta" / "summary.json"))["algo"] == "grpo"
    r = run("bench/reward_hacking.py", f"--overview={tmp_path},{tmp_path / 'grpo'}", f"--out_dir={tmp_path}")
    assert r.returncode == 0 and (tmp_path / "overview.png").exists(), r.stderr[-2000:]
    r = run("bench/reward_hacking.py", f"--overview={tmp_path / 'nowhere'}", f"--out_dir={tmp_path}")
    assert r.returncode == 2 and "nowhere holds no finished run" in r.stderr
    from bench.reward_hacking import HackConfig, main                  # the same checks, without a new process
    from nanoreason.config import ConfigError, parse_args
    with pytest.raises(ConfigError, match="unknown shaping 'square'"):
        main(parse_args(HackConfig, ["--shapings=none,square"]))
    with pytest.raises(ConfigError, match="algo must be ppo or grpo, got 'dpo'"):
        main(parse_args(HackConfig, ["--algo=dpo"]))


def test_rank_statistics_by_hand():
    from bench.rm_diagnosis import auc, ranks, spearman, within_auc
    assert ranks([5, 5, 1]) == [1.5, 1.5, 0.0]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert auc([3], [1, 3]) == 0.75                      # one win, one tie
    assert within_auc([[0.9, 0.1, 0.5], [0.2, 0.2]], [[True, False, False], [True, True]]) == 1.0   # all-right skipped
