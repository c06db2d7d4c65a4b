import os

import pytest
import torch

from nanoreason.checkpoint import check_compatible, load_checkpoint, load_model, save_checkpoint
from nanoreason.config import ConfigError
from nanoreason.model import GPT, GPTConfig
from nanoreason.tokenizer import Tokenizer


@pytest.fixture
def parts():
    tok = Tokenizer.train("Mia has 12 pens. She gets 5 more pens.\n12+5=<<12+5=17>>17", 270)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=32, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    return model, tok, opt


def test_round_trip(parts, tmp_path):
    model, tok, opt = parts
    path = str(tmp_path / "ck.pt")
    save_checkpoint(path, model, tok, opt, step=7, config={"lr": 1e-3})
    model2, tok2, ck = load_model(path)
    x = torch.randint(0, tok.n_vocab, (2, 9))
    torch.testing.assert_close(model2(x), model(x))
    assert tok2 == tok and ck["step"] == 7 and ck["config"] == {"lr": 1e-3}
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_a_failed_save_keeps_the_previous_checkpoint(parts, tmp_path, monkeypatch):
    model, tok, opt = parts
    path = str(tmp_path / "ck.pt")
    save_checkpoint(path, model, tok, opt, step=1)
    before = open(path, "rb").read()

    def crash(obj, f, *a, **k):
        open(f, "wb").write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, model, tok, opt, step=2)
    assert open(path, "rb").read() == before


def test_kind_and_config_and_tokenizer_mismatches_are_named(parts, tmp_path):
    model, tok, opt = parts
    path = str(tmp_path / "rm.pt")
    save_checkpoint(path, model, tok, kind="reward_model", config={"n_embd": 16})
    with pytest.raises(ConfigError, match="is a reward_model checkpoint, but a policy"):
        load_model(path, kind="policy")
    ck = load_checkpoint(path)
    with pytest.raises(ConfigError, match="n_embd=16.*n_embd=32"):
        check_compatible(path, ck, model_cfg=GPTConfig(vocab_size=tok.n_vocab, block_size=32, n_layer=1, n_head=2,
                                                       n_embd=32))
    other = Tokenizer.train("completely different text here", 270)
    with pytest.raises(ConfigError, match="different tokenizer"):
        check_compatible(path, ck, tokenizer=other)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [b"not a checkpoint", None])
def test_unreadable_or_unsafe_files_are_refused(tmp_path, payload):
    path = tmp_path / "bad.pt"
    if payload is None:
        torch.save({"model": Evil()}, str(path))       # weights_only=True refuses to run this
    else:
        path.write_bytes(payload)
    with pytest.raises(ConfigError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(str(path))
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def test_a_stages_own_seed_does_not_move_the_test_set():
    """RL stages save the task seed under its own key: a run with --seed=3 from an SFT model made with seed 0 must
    hand the next stage (and eval.py) seed 0's held-out problems; an SFT checkpoint's seed is its task seed."""
    import dataclasses

    from nanoreason.checkpoint import stage_config, task_of
    from nanoreason.tasks import TaskConfig

    @dataclasses.dataclass
    class StageCfg:
        seed: int = 3
        lr: float = 1e-4
    task = TaskConfig(min_steps=1, max_steps=2)
    saved = stage_config(task, 0, StageCfg())
    assert task_of(saved) == (task, 0) and saved["seed"] == 3
    assert task_of({"seed": 5, "min_steps": 1, "max_steps": 2}) == (task, 5)
