"""GPT-2 weights from a local Hugging Face directory: a small random GPT-2 written by transformers itself gives the
same logits in our GPT; its vocab.json/merges.txt tokenise as GPT-2's BPE; a missing or misshapen tensor is named."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from nanoreason.config import ConfigError  # noqa: E402
from nanoreason.pretrained import load_gpt2  # noqa: E402


def byte_chars():
    """GPT-2's printable stand-in character for each byte (the 'data gym' encoding of vocab.json / merges.txt)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w")]


@pytest.fixture
def gpt2_dir(tmp_path):
    return make_gpt2_dir(tmp_path, n_positions=256)


def make_gpt2_dir(tmp_path, n_positions: int):
    """A small random GPT-2 written by transformers itself, with a byte-level BPE of 4 merges, in `tmp_path`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    chars = byte_chars()
    # tiktoken's rank order for single bytes: printable non-space bytes by value, then the rest by value
    order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    order += [b for b in range(256) if b not in order]
    vocab = {chars[b]: i for i, b in enumerate(order)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    return tmp_path


def test_logits_match_the_reference_implementation(gpt2_dir):
    ref = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    model, tok = load_gpt2(str(gpt2_dir))
    ids = torch.randint(0, ref.config.vocab_size, (3, 20))
    with torch.no_grad():
        want = ref(ids).logits
        got = model.eval()(ids)[..., :ref.config.vocab_size]
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert tok.eot_id == ref.config.vocab_size - 1 and model.cfg.gelu == "tanh"


def test_gpt2_tokenizer_from_local_files(gpt2_dir):
    _, tok = load_gpt2(str(gpt2_dir))
    vocab = json.loads((gpt2_dir / "vocab.json").read_text())
    assert tok.encode("hello world") == [vocab["hell"], vocab["o"], vocab["Ġw"], vocab["o"], vocab["r"], vocab["l"],
                                         vocab["d"]]
    assert tok.decode(tok.encode("Ann has 12 pens.\n#### 12")) == "Ann has 12 pens.\n#### 12"


def test_a_missing_or_misshapen_tensor_is_named(gpt2_dir):
    f = gpt2_dir / "model.safetensors"
    sd = load_file(f)
    bad = dict(sd)
    bad.pop("transformer.h.1.mlp.c_fc.weight")
    save_file(bad, f)
    with pytest.raises(ConfigError, match=r"missing tensor 'h.1.mlp.c_fc.weight'"):
        load_gpt2(str(gpt2_dir))
    bad = dict(sd)
    bad["transformer.h.0.attn.c_proj.weight"] = torch.zeros(32, 16)
    save_file(bad, f)
    with pytest.raises(ConfigError, match=r"tensor 'h.0.attn.c_proj.weight' has shape \(32, 16\), expected \(32, 32\)"):
        load_gpt2(str(gpt2_dir))


def test_sft_starts_from_gpt2_weights(gpt2_dir, tmp_path):
    from nanoreason.checkpoint import load_model
    from tests.conftest import run_entry
    out = tmp_path / "sft"
    r = run_entry("train_sft.py", f"--gpt2_dir={gpt2_dir}", f"--out_dir={out}", "--min_steps=1", "--max_steps=1",
                  "--ops=+-", "--block_size=200", "--max_new_tokens=16", "--iters=2", "--eval_interval=2",
                  "--eval_problems=4", "--batch_size=4")
    assert r.returncode == 0, r.stderr[-2000:]
    model, tok, _ = load_model(str(out / "ckpt.pt"))
    assert model.cfg.gelu == "tanh" and model.cfg.block_size == 256 and tok.eot_id == 260
    r = run_entry("train_ppo.py", f"--init_from={out / 'ckpt.pt'}", f"--out_dir={tmp_path / 'ppo'}", "--iters=1",
                  "--batch_size=2", "--minibatch_size=2", "--eval_problems=4", "--eval_interval=1", "--max_new_tokens=8")
    assert r.returncode == 0, r.stderr[-2000:]                           # ... and PPO runs on from it
    assert load_model(str(tmp_path / "ppo" / "ckpt.pt"))[1].eot_id == 260


def test_the_gsm8k_recipe_runs_end_to_end(tmp_path):
    """README's GPU recipe at tiny scale on CPU: GPT-2 weights from a local directory -> SFT on a GSM8K file -> GRPO
    with the outcome reward -> eval.py on the held-out file; every stage keeps the GSM8K task of the one before."""
    from nanoreason.checkpoint import load_checkpoint
    from tests.conftest import ROOT, run_entry
    gsm8k = f"{ROOT}/tests/data/gsm8k_tiny.jsonl"
    weights = make_gpt2_dir(tmp_path / "gpt2", n_positions=512)

    def run(script, *args):
        r = run_entry(script, *args)
        assert r.returncode == 0, r.stderr[-2000:]
    run("train_sft.py", f"--gpt2_dir={weights}", f"--data={gsm8k}", f"--test_data={gsm8k}", "--block_size=512",
        "--iters=2", "--batch_size=2", "--eval_interval=2", "--eval_problems=2", "--max_new_tokens=8",
        f"--out_dir={tmp_path / 'sft'}")
    run("train_grpo.py", f"--init_from={tmp_path / 'sft' / 'ckpt.pt'}", f"--out_dir={tmp_path / 'grpo'}", "--iters=1",
        "--prompts_per_iter=1", "--group_size=2", "--minibatch_size=2", "--eval_problems=2", "--max_new_tokens=8")
    run("eval.py", f"--ckpt={tmp_path / 'grpo' / 'ckpt.pt'}", "--k=2", "--best_of=1,2", "--eval_problems=2",
        "--max_new_tokens=8", f"--out_dir={tmp_path / 'eval'}")
    assert load_checkpoint(str(tmp_path / "grpo" / "ckpt.pt"))["config"]["data"] == gsm8k       # the task carried on
    report = json.loads((tmp_path / "eval" / "grpo_k2.json").read_text())
    assert report["eval_problems"] == 2 and 0 <= report["table"]["maj@1 (greedy)"] <= 1
