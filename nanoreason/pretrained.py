"""GPT-2-family weights and tokenizer from a local Hugging Face-format directory — nothing is downloaded.

    model, tok = load_gpt2("weights/gpt2")     # config.json, model.safetensors (or pytorch_model.bin),
                                               # vocab.json + merges.txt (GPT-2's byte-level BPE)
    python train_sft.py --gpt2_dir=weights/gpt2 --gsm8k_train=gsm8k/train.jsonl --gsm8k_test=gsm8k/test.jsonl ...

Our GPT *is* GPT-2's architecture (pre-LayerNorm blocks, learned positions, tied embeddings; `gelu="tanh"` for
GPT-2's approximate GELU). Hugging Face stores GPT-2's projections as Conv1D with weights (in, out); our nn.Linear
holds (out, in), so those are transposed on the way in. Our two extra special tokens (<|correct|>, <|incorrect|>)
come after GPT-2's <|endoftext|> (id 50256) and get fresh embedding rows.
"""
from __future__ import annotations

import json
import os

import torch

from nanoreason.config import ConfigError
from nanoreason.model import GPT, GPTConfig
from nanoreason.tokenizer import SPECIALS, Tokenizer

# GPT-2's pre-tokenisation pattern (tiktoken's r50k)
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# our parameter name -> the Hugging Face one, per block
BLOCK = {"ln_1.weight": "ln_1.weight", "ln_1.bias": "ln_1.bias", "ln_2.weight": "ln_2.weight", "ln_2.bias": "ln_2.bias",
         "attn.c_attn.weight": "attn.c_attn.weight", "attn.c_attn.bias": "attn.c_attn.bias",
         "attn.c_proj.weight": "attn.c_proj.weight", "attn.c_proj.bias": "attn.c_proj.bias",
         "mlp.0.weight": "mlp.c_fc.weight", "mlp.0.bias": "mlp.c_fc.bias",
         "mlp.2.weight": "mlp.c_proj.weight", "mlp.2.bias": "mlp.c_proj.bias"}


def read_weights(path: str) -> tuple[dict, str]:
    """(state dict, file) from model.safetensors or pytorch_model.bin."""
    st, pt = os.path.join(path, "model.safetensors"), os.path.join(path, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.torch import load_file
        sd, f = load_file(st), st
    elif os.path.exists(pt):
        sd, f = torch.load(pt, map_location="cpu", weights_only=True), pt
    else:
        raise ConfigError(f"{path}: no model.safetensors or pytorch_model.bin")
    return sd, f


def load_gpt2_tokenizer(path: str) -> Tokenizer:
    """GPT-2's BPE from vocab.json + merges.txt, served by tiktoken with our special tokens after <|endoftext|>."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    vocab, merges = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
    for f in (vocab, merges):
        if not os.path.exists(f):
            raise ConfigError(f"{f}: missing (the GPT-2 tokenizer needs vocab.json and merges.txt)")
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=merges, encoder_json_file=vocab)
    except (AssertionError, KeyError, ValueError) as e:
        raise ConfigError(f"{path}: vocab.json and merges.txt do not form one GPT-2 tokenizer ({e!r})") from None
    return Tokenizer(sorted(ranks, key=ranks.get), SPECIALS, GPT2_PAT)


def load_gpt2(path: str, device: str = "cpu") -> tuple[GPT, Tokenizer]:
    try:
        hf = json.load(open(os.path.join(path, "config.json")))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}/config.json: cannot read ({e})") from None
    tok = load_gpt2_tokenizer(path)
    if hf.get("vocab_size") != tok.eot_id + 1:
        raise ConfigError(f"{path}/config.json: vocab_size={hf.get('vocab_size')} but the tokenizer has "
                          f"{tok.eot_id + 1} tokens with <|endoftext|>")
    act = hf.get("activation_function", "gelu_new")
    cfg = GPTConfig(vocab_size=tok.n_vocab, block_size=hf["n_positions"], n_layer=hf["n_layer"], n_head=hf["n_head"],
                    n_embd=hf["n_embd"], gelu="tanh" if act in ("gelu_new", "gelu_pytorch_tanh") else "none")
    sd, f = read_weights(path)
    return load_gpt2_weights(GPT(cfg), sd, f, rows=tok.eot_id + 1).to(device), tok


def load_gpt2_weights(model: GPT, sd: dict, source: str = "state dict", rows: int | None = None) -> GPT:
    """Copy a GPT-2 state dict (Hugging Face names, with or without the "transformer." prefix) into `model`, whose
    config must have its sizes. `rows`: how many token embeddings to take (the rest keep their init). `source` names
    it in errors."""
    cfg, ours = model.cfg, model.state_dict()
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}

    def take(name: str, hf_name: str, transpose: bool = False, n_rows: int | None = None):
        if hf_name not in sd:
            raise ConfigError(f"{source}: missing tensor {hf_name!r}")
        t = sd[hf_name].t() if transpose else sd[hf_name]
        want = ours[name].shape if n_rows is None else (n_rows, *ours[name].shape[1:])
        if tuple(t.shape) != tuple(want):
            raise ConfigError(f"{source}: tensor {hf_name!r} has shape {tuple(sd[hf_name].shape)}, expected "
                              f"{tuple(want[::-1]) if transpose else tuple(want)} for config.json's sizes")
        with torch.no_grad():
            ours[name][:t.shape[0]].copy_(t)

    take("wte.weight", "wte.weight", n_rows=rows)
    take("wpe.weight", "wpe.weight")
    for i in range(cfg.n_layer):
        for mine, theirs in BLOCK.items():
            take(f"blocks.{i}.{mine}", f"h.{i}.{theirs}", transpose=theirs in CONV1D)
    take("ln_f.weight", "ln_f.weight")
    take("ln_f.bias", "ln_f.bias")
    model.load_state_dict(ours)
    return model
