import pytest
import torch

from nanoreason.config import ConfigError
from nanoreason.model import GPTConfig, KVCache


def test_left_padded_rows_match_unpadded(tiny_model):
    torch.manual_seed(1)
    a, b = torch.randint(0, 299, (1, 9)), torch.randint(0, 299, (1, 5))
    x = torch.cat([a, torch.cat([torch.full((1, 4), 299), b], 1)])             # row 2 is left-padded by 4
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0
    h = tiny_model.hidden(x, mask)
    torch.testing.assert_close(h[0], tiny_model.hidden(a)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[1, 4:], tiny_model.hidden(b)[0], atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_matches_full_forward(tiny_model):
    torch.manual_seed(2)
    x = torch.randint(0, 299, (3, 12))
    full = tiny_model(x)
    cache = KVCache(tiny_model.cfg, 3, 12, "cpu")
    parts = [tiny_model(x[:, :5], None, cache)] + [tiny_model(x[:, t:t + 1], None, cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pad", [0, 3])
def test_prefill_of_the_last_position_and_decode_steps_match_a_full_forward(tiny_model, pad):
    # the sampler's path: hidden(..., last=True) over the prompts (row 2 left-padded by `pad`), then one decode step
    # per new token
    torch.manual_seed(3)
    x = torch.randint(0, 299, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :pad] = 0
    full = tiny_model.hidden(x, mask)                                           # (2, 10, C)
    cache = KVCache(tiny_model.cfg, 2, 10, "cpu")
    h = tiny_model.hidden(x[:, :7], mask[:, :7], cache, last=True)
    assert h.shape == (2, 1, 32)
    torch.testing.assert_close(h[:, 0], full[:, 6], atol=1e-5, rtol=1e-5)
    for t in range(7, 10):
        torch.testing.assert_close(tiny_model.decode(x[:, t], cache), full[:, t], atol=1e-5, rtol=1e-5)
    tiny_model.train()                                                          # no cache, in training, with
    tiny_model.activation_checkpointing = True                                  # activation checkpointing
    torch.testing.assert_close(tiny_model.hidden(x, mask, last=True)[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)


def test_heads_and_tied_embeddings(tiny_model):
    h = tiny_model.hidden(torch.randint(0, 299, (2, 7)))
    assert h.shape == (2, 7, 32)
    assert tiny_model.values(h).shape == (2, 7) and tiny_model.rewards(h).shape == (2, 7)
    assert tiny_model.lm_head.weight is tiny_model.wte.weight
    n = sum(p.numel() for p in tiny_model.parameters())
    assert tiny_model.num_params() == n and n < 300 * 32 * 2 + 64 * 32 + 2 * 12 * 32 * 32 + 5000


def test_causality(tiny_model):
    x = torch.randint(0, 299, (1, 10))
    y = x.clone()
    y[0, 7:] = (y[0, 7:] + 1) % 299
    torch.testing.assert_close(tiny_model(x)[0, :7], tiny_model(y)[0, :7])


@pytest.mark.parametrize("kw, field", [(dict(n_embd=30, n_head=4), "n_embd"), (dict(n_layer=0), "n_layer"),
                                       (dict(vocab_size=200), "vocab_size"), (dict(dropout=1.5), "dropout")])
def test_bad_model_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**kw)


def test_too_long_input_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="block_size"):
        tiny_model(torch.zeros(1, 65, dtype=torch.long))
