"""Our KV-cache sampler (nanoreason.sampling.generate) against transformers' GPT2LMHeadModel.generate, on the CPU.

    python bench/sampling.py                    # 64 prompts of 45 tokens, 32 new tokens, T = 1, 4 layers x 128 wide

Both models hold the same random GPT-2-shaped weights (transformers makes them; nanoreason.pretrained maps them into
our GPT), read the same prompts and sample the same number of tokens at the same temperature (transformers with
min_new_tokens, so no row stops early; ours runs every row at every step until all rows have stopped, so a row that
samples the end-of-text id early costs the same: both count batch x steps). Each side runs `repeats` times,
alternately, and keeps its best time. The last line is the ratio.
"""
import os
import time
from dataclasses import dataclass

import torch

from nanoreason.config import ConfigError, parse_args, run_main
from nanoreason.model import GPT, GPTConfig
from nanoreason.pretrained import load_gpt2_weights
from nanoreason.report import write_table
from nanoreason.sampling import generate


@dataclass
class SamplingConfig:
    batch: int = 64
    prompt_len: int = 45
    new_tokens: int = 32
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    vocab_size: int = 515
    temperature: float = 1.0
    repeats: int = 5
    threads: int = 0                # torch threads (0: torch's default)
    out_dir: str = "out/sampling"


def models(c: SamplingConfig):
    """(transformers' GPT2LMHeadModel, our GPT) with the same weights."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("bench/sampling.py compares against transformers: pip install transformers") from None
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.prompt_len + c.new_tokens + 1, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head)).eval()
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.prompt_len + c.new_tokens + 1, n_layer=c.n_layer,
                    n_head=c.n_head, n_embd=c.n_embd, gelu="tanh")
    ours = load_gpt2_weights(GPT(cfg), hf.state_dict(), "transformers' GPT2LMHeadModel").eval()
    return hf, ours


def main(c: SamplingConfig):
    if c.threads:
        torch.set_num_threads(c.threads)
    hf, ours = models(c)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, c.vocab_size - 1, (c.batch, c.prompt_len), generator=g)
    ids = prompts.tolist()
    with torch.no_grad():                                              # the same next-token logits
        diff = (hf(prompts[:2]).logits - ours(prompts[:2])).abs().max().item()
    never = c.vocab_size - 1                                           # transformers: forbidden until the end

    def run_hf():
        torch.manual_seed(1)
        out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0, top_p=1.0,
                          temperature=c.temperature, max_new_tokens=c.new_tokens, min_new_tokens=c.new_tokens,
                          pad_token_id=never, eos_token_id=never)
        return c.batch * (out.shape[1] - c.prompt_len)

    def run_ours():
        r = generate(ours, ids, c.new_tokens, eot_id=never, temperature=c.temperature,
                     generator=torch.Generator().manual_seed(1))
        return c.batch * r.completion.shape[1]

    best = {"transformers": float("inf"), "nanoreason": float("inf")}
    tokens = {}
    run_hf(), run_ours()                                               # warm-up
    for _ in range(c.repeats):
        for name, fn in (("transformers", run_hf), ("nanoreason", run_ours)):
            start = time.perf_counter()
            tokens[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    rate = {k: tokens[k] / best[k] for k in best}
    lines = [f"Sampling on the CPU ({torch.get_num_threads()} threads): {c.batch} prompts x {c.prompt_len} tokens, "
             f"{c.new_tokens} new tokens at T = {c.temperature}; GPT-2 shape {c.n_layer} layers x {c.n_embd}, "
             f"V = {c.vocab_size}; best of {c.repeats}. Max |logit difference| between the two models: {diff:.1e}.",
             "", "| sampler | tokens | seconds | tokens/s | ms per step |", "|---|---|---|---|---|"]
    for k in best:
        lines.append(f"| {k} | {tokens[k]} | {best[k]:.3f} | {rate[k]:.0f} | "
                     f"{1e3 * best[k] / (tokens[k] / c.batch):.2f} |")
    lines += ["", f"nanoreason {rate['nanoreason']:.0f} tokens/s, transformers {rate['transformers']:.0f} tokens/s: "
              f"{rate['nanoreason'] / rate['transformers']:.1f}x transformers generate"]
    write_table(os.path.join(c.out_dir, "table.md"), lines)


if __name__ == "__main__":
    run_main(lambda: main(parse_args(SamplingConfig)))
