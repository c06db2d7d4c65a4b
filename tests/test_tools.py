"""Tools in the loop: the calculator, the sampler that lets it write, and the trainers that do not learn from it."""
import random

import pytest
import torch

from nanoreason import rl
from nanoreason.env import CoTEnv
from nanoreason.model import GPT, GPTConfig
from nanoreason.rewards import parse_weights
from nanoreason.rollouts import collect, completion_forward
from nanoreason.sampling import generate
from nanoreason.tasks import Problem, parse_step
from nanoreason.tokenizer import Tokenizer
from nanoreason.tools import ERROR, Calculator, calculator, make_tool, open_call, tool_calls

SOLUTION = "12+5=<<12+5=17>>17\n17*2=<<17*2=34>>34\n#### 34"


def test_calculator_is_exact_and_never_raises():
    cases = {"12+5": "17", "48/2+3": "27", "10/4": "2.5", "-1/8": "-0.125", "10/3": "3.3333", "(2+3)*4": "20",
             "7//2": "3", "0.1+0.2": "0.3", " 3 * 4 ": "12"}
    for expr, want in cases.items():
        assert calculator(expr) == want, expr
    for bad in ("1/0", "7//0", "abc", "", "2+", "((1)", "1=2", "9" * 65, "99999999*99999999", "import os"):
        assert calculator(bad) == ERROR, bad
    assert calculator("1/1024/1024/1024/1024/1024/1024/1024") == "0"         # tiny: rounded, not 70 digits
    assert calculator("1/64") == "0.015625" and calculator("1/128") == "0.0078"
    rng = random.Random(0)
    for _ in range(500):                                  # whatever a model writes inside a call: a string, no raise
        s = "".join(rng.choice("0123456789+-*/().= x") for _ in range(rng.randint(0, 80)))
        assert isinstance(calculator(s), str)


def test_open_call_finds_only_a_call_waiting_for_its_result():
    assert open_call("12+5=<<12+5=") == "12+5"
    assert open_call("done <<1+1=2>>2\n3*4=<<3*4=") == "3*4"
    for text in ("12+5=", "12+5=<<", "<<1+1=2>>", "<<1+1=2>>2=", "<<1\n+1=", "<<1=1=", "no call"):
        assert open_call(text) is None, text
    assert tool_calls(SOLUTION) == 2 and tool_calls("<<4+4") == 0


class Scripted(GPT):
    """A 'model' that writes row i's script token by token, whatever it reads: the token at completion position t is
    scripts[i][t] (end-of-text after it). Its hidden state is the one-hot of that token; lm_head (tied, the identity)
    turns it into logits. Lets a test say exactly what the model writes, and see what the tool writes instead."""

    def __init__(self, scripts, vocab_size: int, eot_id: int):
        super().__init__(GPTConfig(vocab_size=vocab_size, block_size=160, n_layer=1, n_head=1, n_embd=vocab_size))
        with torch.no_grad():
            self.wte.weight.copy_(torch.eye(vocab_size))
        self.scripts, self.eot_id, self.t = scripts, eot_id, 0

    def _next(self, B):
        h = torch.zeros(B, self.cfg.vocab_size)
        for i in range(B):
            s = self.scripts[i % len(self.scripts)]
            h[i, s[self.t] if self.t < len(s) else self.eot_id] = 50.0              # certain, even when sampled
        return h

    def hidden(self, idx, attention_mask=None, cache=None, last=False):
        self.t = 0
        h = torch.zeros(*idx.shape, self.cfg.vocab_size)
        h[:, -1] = self._next(idx.shape[0])
        if cache is not None:
            cache.len += idx.shape[1]
        return h[:, -1:] if last else h

    def decode(self, tok, cache):
        self.t += 1
        cache.len += 1
        return self._next(tok.shape[0])


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(SOLUTION + "\n3*4=<<3*4=12>>12\n1/0=<<1/0=?>>\n", 270)


def scripted(tok, texts):
    return Scripted([tok.encode(t) for t in texts], tok.n_vocab, tok.eot_id)


def test_the_calculator_writes_the_result_and_the_row_goes_on(tok):
    # the model gets 12+5 and 17*2 wrong; the calculator writes the right results; the model's own tokens go on
    # (the script is by position: "55" puts one token where the tool writes "?>>", one token here)
    model = scripted(tok, ["12+5=<<12+5=19>>17\n17*2=<<17*2=35>>34\n#### 34", "#### 7", "1/0=<<1/0=55\n#### 5"])
    r = generate(model, [tok.encode("Q\n")] * 3, 40, tok.eot_id, greedy=True, tool=make_tool("calculator", tok),
                 with_logprobs=True)
    texts = [tok.decode(ids) for ids in r.completion_ids()]
    assert texts == [SOLUTION, "#### 7", "1/0=<<1/0=?>>5\n#### 5"]   # a bad expression: the marker, no exception
    for i, text in enumerate(texts):                                 # tool_mask: exactly the tokens it wrote
        written = tok.decode([t for t, m in zip(r.completion[i].tolist(), r.tool_mask[i].tolist()) if m])
        assert written == {0: "17>>34>>", 1: "", 2: "?>>"}[i]
    assert (r.logprobs[r.tool_mask.bool()] == 0).all()
    assert (r.tool_mask <= r.completion_mask).all()
    plain = generate(model, [tok.encode("Q\n")], 40, tok.eot_id, greedy=True)      # without the tool: as scripted
    assert tok.decode(plain.completion_ids()[0]).startswith("12+5=<<12+5=19>>17")
    assert plain.tool_mask.sum() == 0


class Echo:
    """A toy tool for a random model: after any token in `on`, it writes `reply`."""

    def __init__(self, on, reply, vocab_size):
        self.triggers = torch.zeros(vocab_size, dtype=torch.bool)
        self.triggers[on] = True
        self.reply_ids = reply

    def reply(self, ids):
        return list(self.reply_ids)


def test_a_tool_assisted_batch_equals_each_row_alone(tiny_model):
    prompts = [[5, 6, 7], [1], [9, 9, 9, 9, 9, 9, 2], [3, 4], [8, 8, 8, 8, 8]]
    free = generate(tiny_model, prompts, 20, eot_id=299, greedy=True)
    common = torch.cat([torch.tensor(c) for c in free.completion_ids()]).mode().values    # a token it often writes
    tool = Echo([int(common)], [11, 12, 13], 300)
    batch = generate(tiny_model, prompts, 20, eot_id=299, greedy=True, tool=tool, with_logprobs=True)
    assert batch.tool_mask.sum() > 0 and batch.tool_mask.sum(1).eq(0).any()   # some rows call it, some do not
    for i, p in enumerate(prompts):                       # the KV cache holds what the tool wrote, row by row
        alone = generate(tiny_model, [p], 20, eot_id=299, greedy=True, tool=tool, with_logprobs=True)
        n = len(alone.completion_ids()[0])
        assert batch.completion_ids()[i] == alone.completion_ids()[0]
        assert torch.equal(batch.tool_mask[i, :n], alone.tool_mask[0, :n])
        torch.testing.assert_close(batch.logprobs[i, :n], alone.logprobs[0, :n], atol=1e-5, rtol=1e-5)
        ids = batch.completion[i].tolist()
        for t in (batch.tool_mask[i] == 1).nonzero().flatten().tolist()[:3]:
            assert ids[t] in (11, 12, 13)


def test_rewards_on_tool_tokens_move_to_the_action_before_them():
    rewards = torch.tensor([[0.0, 0.5, 0.0, 1.0, 2.0, 0.0]])
    actions = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0]])       # tokens 2, 3 by the tool; 5 is padding
    moved = rl.rewards_on_actions(rewards, actions)
    assert moved.tolist() == [[0.0, 1.5, 0.0, 0.0, 2.0, 0.0]]
    assert moved.sum() == rewards.sum()


def problem():
    return Problem(question="Mia has 12 pens. She gets 5 more. Then she has 2 times as many pens. How many?",
                   answer=34, steps=(parse_step("12+5", "17"), parse_step("17*2", "34")), solution=SOLUTION)


def test_collect_keeps_tool_tokens_in_the_context_and_out_of_the_actions(tok):
    model = scripted(tok, ["12+5=<<12+5=19>>17\n17*2=<<17*2=35>>34\n#### 34"])
    b = collect(model, tok, [problem()], parse_weights("outcome=1,steps=0.2"), tool=make_tool("calculator", tok))
    assert b.texts == [SOLUTION] and b.correct.item() == 1
    tool = b.tool_mask.bool()
    assert tool.sum() == len(tok.encode("17>>34>>"))
    assert (b.completion_mask[tool] == 0).all() and (b.mask[:, b.P:][tool] == 1).all()   # context, not actions
    assert (b.scores[tool] == 0).all() and b.scores.sum().item() == pytest.approx(1.4)
    m = b.completion_mask
    adv, ret = rl.gae(b.scores, torch.zeros_like(b.scores), m, 1.0, 0.9)
    assert (adv[tool] == 0).all() and (ret[tool] == 0).all()


def test_no_gradient_reaches_tool_positions_in_the_ppo_and_group_losses(tok, monkeypatch):
    """The real update functions, with their forward recorded: d loss / d (log-prob, entropy, hidden state) is zero
    at every position the tool wrote, and not at the model's own tokens."""
    import train_grpo
    import train_ppo
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=160, n_layer=1, n_head=2, n_embd=16))
    script = scripted(tok, ["12+5=<<12+5=19>>17\n17*2=<<17*2=35>>34\n#### 34", "12+5=<<12+5=16>>16\n#### 9"])
    b = collect(script, tok, [problem(), problem()], parse_weights("outcome=1"), tool=make_tool("calculator", tok))
    tool, act = b.tool_mask.bool(), b.completion_mask.bool()
    assert tool.any() and act.any()
    seen = []

    def recording(model, ids, mask, P, temperature=1.0, with_entropy=True):
        out = completion_forward(model, ids, mask, P, temperature, with_entropy)
        for x in out:
            if x is not None and x.requires_grad:
                x.retain_grad()
        seen.append(out)
        return out

    def zero_at_tools(out):
        for x in out:
            if x is not None and x.grad is not None:
                g = x.grad.abs().sum(-1) if x.dim() == 3 else x.grad.abs()          # (B, T)
                assert (g[tool] == 0).all()
                assert (g[act] != 0).any()
        return True

    monkeypatch.setattr(train_ppo, "completion_forward", recording)
    cfg = train_ppo.PPOConfig(batch_size=2, minibatch_size=2, epochs=1, ent_coef=0.01)
    with torch.no_grad():
        old_logp, old_v, adv, ret, _ = train_ppo.advantages(policy, policy, policy, b, 0.1, cfg, 1.0)
    assert (adv[tool] == 0).all() and (old_v[tool] == 0).all()
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    seen.clear()
    train_ppo.ppo_update(policy, policy, opt, list(policy.parameters()), b, old_logp, old_v, adv, ret, cfg, 1.0, 0.01, 0)
    assert seen and all(zero_at_tools(o) for o in seen)

    monkeypatch.setattr(train_grpo, "completion_forward", recording)
    gcfg = train_grpo.GRPOConfig(prompts_per_iter=1, group_size=2, minibatch_size=2, kl_coef=0.1, ent_coef=0.01)
    gadv = train_grpo.advantages(b.scores.sum(1), gcfg)
    seen.clear()
    train_grpo.update(policy, policy, opt, b, gadv, gcfg, 1.0, 0.01, 0)
    assert seen and all(zero_at_tools(o) for o in seen)


def test_env_and_token_views_agree_with_the_tool(tok):
    model = scripted(tok, ["12+5=<<12+5=19>>17\n17*2=<<17*2=35>>34\n#### 34"])
    weights = parse_weights("outcome=1,steps=0.2")
    b = collect(model, tok, [problem()], weights, tool=make_tool("calculator", tok))
    env = CoTEnv(problem(), weights, tool="calculator")
    env.reset()
    total, replies = 0.0, []
    for action in ("12+5=<<12+5=", "17", "17*2=<<17*2=", "34", "#### 34"):     # what the model wrote, in pieces
        _, r, term, trunc, info = env.step(action)
        total += r
        replies.append(info.get("tool"))
    assert replies == ["17>>", None, "34>>", None, None] and term
    assert env.completion == b.texts[0] == SOLUTION
    assert total == pytest.approx(b.scores.sum().item())
    with pytest.raises(ValueError, match="unknown tool"):
        CoTEnv(problem(), weights, tool="abacus")
    env = CoTEnv(problem(), weights, tool="calculator", max_steps=5)      # a policy that only ever calls the tool
    env.reset()
    ends = [env.step("<<1=")[3] for _ in range(5)]
    assert ends == [False] * 4 + [True] and env.done                     # truncated: no endless episode


def test_an_unknown_tool_is_one_line(entry, tmp_path):
    r = entry("train_ppo.py", "--tool=abacus", f"--out_dir={tmp_path}/p")
    assert r.returncode != 0 and "unknown --tool 'abacus'; choose from none, calculator" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_ppo_grpo_and_eval_run_with_the_calculator(sft_ckpt, tmp_path, entry):
    import json
    small = ["--max_new_tokens=16", "--eval_problems=8", "--eval_interval=2", "--iters=2", "--tool=calculator"]
    r = entry("train_ppo.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/ppo", "--batch_size=8",
              "--minibatch_size=4", *small)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "ppo" / "metrics.jsonl")]
    assert all("tool_calls" in x and "tool_tokens" in x for x in rows if "kl" in x)
    assert json.load(open(tmp_path / "ppo" / "summary.json"))["tool"] == "calculator"
    r = entry("train_grpo.py", f"--init_from={sft_ckpt}", f"--out_dir={tmp_path}/grpo", "--prompts_per_iter=4",
              "--group_size=2", "--minibatch_size=8", "--algo=dapo", *small)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tool_calls_after" in json.load(open(tmp_path / "grpo" / "summary.json"))
    r = entry("eval.py", f"--ckpt={sft_ckpt}", "--k=2", "--best_of=1,2", "--eval_problems=8", "--max_new_tokens=16",
              f"--out_dir={tmp_path}/eval", "--tool=calculator")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.load(open(next((tmp_path / "eval").glob("*_k2_calculator.json"))))
    assert {"calls_per_answer", "calls_per_answer_without"} <= set(out) and "maj@1 without the tool" in out["table"]
    r = entry("eval.py", f"--ckpt={sft_ckpt}", "--tool=calculator", "--beam=2", "--prm_ckpt=x.pt")
    assert r.returncode == 2 and "--beam" in r.stderr
