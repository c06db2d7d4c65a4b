"""Nothing lost, nothing misreported: output folders, earlier runs, NaN, --resume, and one line for every bad input.

The bad inputs run through each script's real entry point (its `if __name__ == "__main__"` block; conftest.run_entry)."""
import hashlib
import json
import os
import shutil

import pytest
import torch

import train_sft
from nanoreason.checkpoint import load_checkpoint
from nanoreason.rundir import NonFiniteError, RunDir
from nanoreason.training import check_finite, clip_gradients
from train_sft import SFTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(min_steps=1, max_steps=1, max_value=30, ops="+-", vocab_size=300, n_layer=1, n_head=2, n_embd=32,
            block_size=96, batch_size=16, eval_problems=16, max_new_tokens=24, warmup_iters=2)
TINY_FLAGS = [f"--{k}={v}" for k, v in TINY.items()]


def snapshot(folder) -> dict:
    """Every file under `folder` by relative path, with its size and hash."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, folder)] = hashlib.sha1(open(p, "rb").read()).hexdigest()
    return out


def rows_without_wall(path):
    return [{k: v for k, v in json.loads(line).items() if k != "wall"} for line in open(path)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny SFT run (iters 4, checkpoints at 2 and 4)."""
    d = tmp_path_factory.mktemp("sft_run")
    train_sft.train(SFTConfig(out_dir=str(d), iters=4, eval_interval=2, **TINY))
    return d


@pytest.fixture
def world(run_dir, tmp_path):
    """A copy of the finished run (to be left untouched), a crafted PPO checkpoint, GSM8K files, a plain file."""
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    ppo = tmp_path / "ppo"
    ppo.mkdir()
    ck = torch.load(d / "ckpt.pt", weights_only=True)
    ck["extra"]["stage"] = "ppo"
    torch.save(ck, ppo / "ckpt.pt")
    good = '{"question": "Mia has 2 pens. She gets 1 more. How many?", "answer": "2+1=<<2+1=3>>3\\n#### 3"}'
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "invalid.jsonl").write_text(good + "\n\n" + '{"question": "B", "answer": \n')
    (tmp_path / "number.jsonl").write_text(good + "\n\n" + '{"question": 7, "answer": "#### 3"}\n')
    (tmp_path / "a_file").write_text("not a folder")
    os.makedirs(tmp_path / "evalout" / "run_k2.json")      # where eval.py would write its table: a folder
    return tmp_path


# (script, args with {w} = the world folder, what the one line says)
BAD = [
    ("train_sft.py", ["--eval_interval=0"], "eval_interval must be > 0, got 0"),
    ("train_sft.py", ["--max_new_tokens=0"], "max_new_tokens must be > 0"),
    ("train_sft.py", ["--eval_problems=0"], "eval_problems must be > 0"),
    ("train_sft.py", ["--lr=inf"], "lr must be a finite number, got 'inf'"),
    ("train_sft.py", ["--lr=nan"], "lr must be a finite number"),
    ("train_sft.py", ["--device=bogus"], "--device must be auto, cpu, cuda or cuda:<index>, got 'bogus'"),
    ("train_sft.py", ["--device=cuda:7"], "--device=cuda:7: this machine has"),
    ("train_sft.py", ["--out_dir={w}/a_file"], "a_file is a file, not a folder"),
    ("train_sft.py", ["--out_dir="], "--out_dir is empty"),
    ("train_sft.py", ["--device=cuda:"], "--device must be auto, cpu, cuda or cuda:<index>, got 'cuda:'"),
    ("train_sft.py", ["--out_dir=/proc/nanoreason_out"], "cannot write in /proc"),
    ("train_sft.py", ["--resume", "--seed=1"], "--resume with changed settings: seed (saved 0, now 1)"),
    ("train_sft.py", ["--resume", "--lr=0.1", "--batch_size=8"], "batch_size (saved 16, now 8), lr (saved 0.003, now 0.1)"),
    ("train_sft.py", ["--resume", "--out_dir={w}/ppo"], "was written by train_ppo.py; --resume continues a train_sft.py"),
    ("train_sft.py", ["--resume", "--out_dir={w}/nothing_here"], "--resume: no checkpoint at {w}/nothing_here/ckpt.pt"),
    ("train_sft.py", ["--init_from={w}/nope.pt"], "{w}/nope.pt: no such checkpoint"),
    ("train_sft.py", ["--init_from={w}/run/ckpt.pt"], "holds this run's input {w}/run/ckpt.pt"),
    ("train_sft.py", ["--gsm8k_train={w}/empty.jsonl"], "empty.jsonl: empty file, no GSM8K records"),
    ("train_sft.py", ["--gsm8k_train={w}/invalid.jsonl"], "invalid.jsonl:line 3: not valid JSON"),
    ("train_sft.py", ["--gsm8k_train={w}/number.jsonl"], "number.jsonl:line 3: field 'question' must be text, got 7"),
    ("train_ppo.py", ["--init_from={w}/run/ckpt.pt"], "holds this run's input"),
    ("train_ppo.py", ["--init_from={w}/run/ckpt.pt", "--eval_interval=0", "--out_dir={w}/p"], "eval_interval must be > 0"),
    ("train_ppo.py", ["--temperature=-1", "--out_dir={w}/p"], "temperatures must be > 0"),
    ("train_grpo.py", ["--init_from={w}/run/ckpt.pt", "--kl_coef=-1", "--out_dir={w}/p"], "kl_coef must be >= 0"),
    ("train_grpo.py", ["--init_from={w}/run/ckpt.pt", "--out_dir={w}/ppo", "--eval_problems=16", "--resume"],
     "was written by train_ppo.py; --resume continues a train_grpo.py"),
    ("train_expert_iteration.py", ["--init_from={w}/run/ckpt.pt", "--iters=0", "--out_dir={w}/p"], "iters, prompts_per_iter"),
    ("eval.py", ["--ckpt={w}/run/ckpt.pt", "--best_of=a", "--out_dir={w}/evalout"], "--best_of must be comma-separated"),
    ("eval.py", ["--ckpt={w}/run/ckpt.pt", "--eval_problems=0", "--out_dir={w}/evalout"], "eval_problems must be > 0"),
    ("eval.py", ["--ckpt={w}/run/ckpt.pt", "--temperature=-1", "--out_dir={w}/evalout"], "temperature must be > 0, got -1.0"),
    ("eval.py", ["--ckpt={w}/run/ckpt.pt", "--out_dir={w}/a_file"], "a_file is a file, not a folder"),
    ("eval.py", ["--ckpt={w}/run/ckpt.pt", "--k=2", "--out_dir={w}/evalout"], "run_k2.json is a folder"),
    ("sample.py", ["--ckpt={w}/run/ckpt.pt", "--question="], "--question is empty"),
    ("sample.py", ["--ckpt={w}/run/ckpt.pt", "--question=" + "Mia has 12 pens. " * 300], "tokens; this model reads at"),
    ("sample.py", ["--ckpt={w}/run/ckpt.pt", "--top_p=0"], "top_p must be in (0, 1]"),
]
TRAIN = {"train_sft.py": TINY_FLAGS}    # the SFT cases otherwise describe a tiny run in {w}/run


@pytest.mark.parametrize("script, args, message", BAD, ids=[f"{s}:{' '.join(a)[:40]}" for s, a, _ in BAD])
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_changed(world, entry, script, args, message):
    if "cuda:7" in " ".join(args) and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    w = str(world)
    args = [a.replace("{w}", w) for a in args]
    if script.startswith("train_") and not any(a.startswith("--out_dir") for a in args):
        args.append(f"--out_dir={w}/run")
    before = snapshot(world)
    r = entry(script, *TRAIN.get(script, []), *args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "it/s]" not in ln]
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.replace("{w}", w) in lines[0], r.stderr
    assert snapshot(world) == before                      # not a file moved, written or removed


def test_sample_at_end_of_input_or_an_empty_line_exits_cleanly(world, entry):
    for stdin in ("", "\n"):
        r = entry("sample.py", f"--ckpt={world}/run/ckpt.pt", stdin=stdin)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_two_fresh_runs_keep_every_earlier_run(tmp_path):
    d = str(tmp_path)
    made = []
    for seed in (0, 1, 2):
        train_sft.train(SFTConfig(out_dir=d, iters=2, eval_interval=2, seed=seed, **TINY))
        made.append({f: open(os.path.join(d, f), "rb").read() for f in ("ckpt.pt", "metrics.jsonl", "summary.json",
                                                                         "sft.png", "tokenizer.json")})
    old = sorted(os.listdir(tmp_path / "old"))
    assert len(old) == 2                                   # the first two runs, each whole, in its own folder
    for run, name in zip(made[:2], old):
        for f, data in run.items():
            assert open(tmp_path / "old" / name / f, "rb").read() == data, (name, f)
    assert json.load(open(tmp_path / "summary.json"))["config"]["seed"] == 2


def test_a_start_checkpoint_is_never_in_the_runs_own_folder(tmp_path):
    with pytest.raises(Exception, match="holds this run's input"):
        RunDir(str(tmp_path), "ppo", inputs=[str(tmp_path / "ckpt.pt")])
    RunDir(str(tmp_path / "ppo"), "ppo", inputs=[str(tmp_path / "ckpt.pt")])      # a sibling folder is fine


def test_kill_and_resume_ends_as_an_uninterrupted_run_with_no_row_twice(tmp_path, monkeypatch):
    kw = dict(iters=30, eval_interval=10, **TINY)
    train_sft.train(SFTConfig(out_dir=str(tmp_path / "a"), **kw))
    real, calls = train_sft.sft_batch, []

    def killed_at_step_22(*a, **k):                        # dies after the step-20 checkpoint and the rows after it
        calls.append(1)
        if len(calls) == 23:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(train_sft, "sft_batch", killed_at_step_22)
    with pytest.raises(KeyboardInterrupt):
        train_sft.train(SFTConfig(out_dir=str(tmp_path / "b"), **kw))
    monkeypatch.setattr(train_sft, "sft_batch", real)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "lo')                       # ... and a row cut short by the kill
    assert load_checkpoint(str(tmp_path / "b" / "ckpt.pt"))["step"] == 20
    train_sft.train(SFTConfig(out_dir=str(tmp_path / "b"), resume=True, **kw))
    ca, cb = (load_checkpoint(str(tmp_path / d / "ckpt.pt")) for d in "ab")
    assert cb["step"] == 30
    for k in ca["model"]:                                           # the same weights as the uninterrupted run
        torch.testing.assert_close(ca["model"][k], cb["model"][k], atol=1e-5, rtol=1e-4)
    a, b = (rows_without_wall(tmp_path / d / "metrics.jsonl") for d in "ab")
    assert [r["step"] for r in b] == [r["step"] for r in a]          # no row twice, none missing
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), (ra, rb)
    train_sft.train(SFTConfig(out_dir=str(tmp_path / "b"), resume=True, **{**kw, "iters": 40}))   # a finished run, longer
    evals = [r["step"] for r in rows_without_wall(tmp_path / "b" / "metrics.jsonl") if "accuracy" in r]
    assert evals == [0, 10, 20, 30, 40]


def test_nan_weights_are_never_saved_and_the_message_names_the_good_checkpoint(tmp_path, monkeypatch):
    """The loss is finite, but an update wrote NaN into a weight just before a checkpoint: the save refuses, the
    step-2 checkpoint stays, and the message says so."""
    real = train_sft.clip_gradients

    def poison_at_step_3(params, max_norm, step):
        params = list(params)
        norm = real(params, max_norm, step)
        if step == 3:
            with torch.no_grad():
                params[0].add_(float("nan"))            # the optimizer step will keep it NaN
        return norm
    monkeypatch.setattr(train_sft, "clip_gradients", poison_at_step_3)
    cfg = SFTConfig(out_dir=str(tmp_path), iters=4, eval_interval=2, **TINY)
    with pytest.raises(NonFiniteError, match=r"weight .* became NaN or inf by step 4; stopping\. The newest good "
                                             r"checkpoint is .*ckpt\.pt \(step 2\)\."):
        train_sft.train(cfg)
    ck = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ck["step"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_an_overflowing_gradient_stops_before_the_optimizer_step():
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.tensor([1.0, float("inf"), 0.0])
    with pytest.raises(NonFiniteError, match="gradient norm became inf at step 5"):
        clip_gradients([w], 1.0, 5)


def test_nan_before_the_first_checkpoint_keeps_the_earlier_run_and_says_where(run_dir, tmp_path, monkeypatch):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    before = snapshot(d)
    monkeypatch.setattr(train_sft, "sft_backward", lambda *a, **k: check_finite(torch.tensor(float("nan")), a[-1]))
    with pytest.raises(NonFiniteError, match=r"at step 0; stopping\. No checkpoint of this run was written; the "
                                             r"earlier run's outputs are in .*old/"):
        train_sft.train(SFTConfig(out_dir=str(d), iters=4, eval_interval=2, **TINY))
    kept = snapshot(d / "old")
    assert {k.split("/", 1)[1]: v for k, v in kept.items()} == before     # every earlier file, byte for byte

