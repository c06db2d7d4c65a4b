import pytest
import torch
import torch.nn.functional as F

from nanoreason.sampling import filter_logits, generate

PROMPTS = [[5, 6, 7], [1], [9, 9, 9, 9, 9, 9, 2], [3, 4], [8, 8, 8, 8, 8]]


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    batch = generate(tiny_model, PROMPTS, 20, eot_id=299, greedy=True, with_logprobs=True)
    for i, p in enumerate(PROMPTS):
        alone = generate(tiny_model, [p], 20, eot_id=299, greedy=True, with_logprobs=True)
        assert batch.completion_ids()[i] == alone.completion_ids()[0]
        n = len(alone.completion_ids()[0])
        torch.testing.assert_close(batch.logprobs[i, :n], alone.logprobs[0, :n], atol=1e-5, rtol=1e-5)


def test_logprobs_match_a_full_forward(tiny_model):
    r = generate(tiny_model, PROMPTS, 15, eot_id=299, temperature=0.7, generator=torch.Generator().manual_seed(0),
                 with_logprobs=True)
    ids, mask = r.sequences()
    logits = tiny_model(ids, mask)[:, r.prompt.shape[1] - 1:-1] / 0.7         # logits that produced each token
    lp = F.log_softmax(logits, -1).gather(-1, r.completion[..., None]).squeeze(-1)
    m = r.completion_mask.bool()
    torch.testing.assert_close(lp[m], r.logprobs[m], atol=1e-4, rtol=1e-4)
    assert (r.logprobs[~m] == 0).all()
    # the hidden states that predicted each token: a value head on them reads what a training forward reads, so PPO
    # takes its old log-probs and values from the sampler (rollouts.old_logprobs) rather than a second forward
    from nanoreason.rollouts import Batch, completion_forward, old_logprobs
    lp2, _, h = completion_forward(tiny_model, ids, mask, r.prompt.shape[1], 0.7, with_entropy=False)
    torch.testing.assert_close(h[m], r.hidden[m], atol=1e-4, rtol=1e-4)
    b = Batch(r, ids, mask, r.prompt.shape[1], m.float(), None, None, None, None, [])
    kept, kept_h = old_logprobs(tiny_model, b, 0.7)
    assert kept_h is r.hidden and (kept[~m] == 0).all()
    torch.testing.assert_close(kept[m], lp2[m], atol=1e-4, rtol=1e-4)
    again, _ = old_logprobs(tiny_model, Batch(None, ids, mask, r.prompt.shape[1], m.float(), *[None] * 4, []), 0.7)
    torch.testing.assert_close(again[m], kept[m], atol=1e-4, rtol=1e-4)       # without them: the forward


def test_stops_at_eot_and_masks_after_it(tiny_model):
    free = generate(tiny_model, PROMPTS, 10, eot_id=299, greedy=True)
    stop = free.completion[0, 2].item()             # declare row 0's third token to be end-of-text
    r = generate(tiny_model, PROMPTS, 10, eot_id=stop, greedy=True)
    first = free.completion_ids()[0].index(stop)
    assert r.completion_ids()[0] == free.completion_ids()[0][:first + 1]
    for row, m in zip(r.completion, r.completion_mask):
        ids = row[m.bool()].tolist()
        assert stop not in ids[:-1]                       # nothing is generated after an eot
        assert (row[len(ids):] == stop).all() and m[len(ids):].sum() == 0
    assert r.completion.shape[1] <= 10


def test_a_stop_token_ends_its_row_and_is_kept(tiny_model):
    free = generate(tiny_model, PROMPTS, 10, eot_id=299, greedy=True)
    stop = free.completion[0, 2].item()                 # row 0's third token as a line end
    r = generate(tiny_model, PROMPTS, 10, eot_id=299, greedy=True, stop_ids=[stop])
    for full, cut in zip(free.completion_ids(), r.completion_ids()):
        n = full.index(stop) + 1 if stop in full else len(full)
        assert cut == full[:n]                          # the same tokens up to and with the first stop token
    assert r.completion_ids()[0][-1] == stop


def test_top_k_one_is_greedy(tiny_model):
    g = generate(tiny_model, PROMPTS, 12, eot_id=299, greedy=True)
    k = generate(tiny_model, PROMPTS, 12, eot_id=299, temperature=1.3, top_k=1,
                 generator=torch.Generator().manual_seed(0))
    assert g.completion_ids() == k.completion_ids()


def test_filter_logits_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.81)).tolist() == [[False, False, False, True]]


def test_sampling_bench_compares_with_transformers_on_the_same_weights(tmp_path):
    pytest.importorskip("transformers")
    from bench.sampling import SamplingConfig, main
    main(SamplingConfig(batch=3, prompt_len=5, new_tokens=4, n_layer=1, n_embd=32, n_head=2, vocab_size=300,
                        repeats=1, out_dir=str(tmp_path)))
    text = (tmp_path / "table.md").read_text()
    diff = float(text.split("between the two models: ")[1].split(".\n")[0])
    assert diff < 1e-4                                                  # the mapping: one model, two samplers
    assert "| transformers | 12 |" in text and "| nanoreason | 12 |" in text
    assert text.strip().splitlines()[-1].endswith("x transformers generate")


def test_inverse_cdf_sampling_follows_the_probabilities_and_refuses_nan():
    from nanoreason.rundir import NonFiniteError
    from nanoreason.sampling import sample_from
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.1, 0.0, 0.0, 0.9]]).repeat(5000, 1)    # (10000, 4)
    tok = sample_from(probs, torch.Generator().manual_seed(0))
    counts = torch.stack([torch.bincount(tok[i::2], minlength=4) for i in (0, 1)]).float() / 5000
    assert counts[0, 0] == counts[0, 2] == counts[1, 1] == counts[1, 2] == 0      # probability 0: never
    torch.testing.assert_close(counts, probs[:2], atol=0.02, rtol=0)
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        sample_from(torch.tensor([[0.5, float("nan")]]))
