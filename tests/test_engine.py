"""The inference engine against the naive full-recompute loop, and its samplers' contracts."""

import pytest
import torch
from scipy.stats import chisquare

from lmforge.engine import SamplingParams, beam_search, generate, process_logits, sequence_logprobs
from lmforge.errors import InputError
from lmforge.models.transformer import ModelConfig, Transformer


def tiny(flavour="gpt2", **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(flavour=flavour, vocab_size=50, n_layer=2, n_head=4, n_kv_head=2 if flavour == "llama" else None, d_model=32, max_seq_len=64, **kw)
    return Transformer(cfg).eval()


def naive_greedy(model, prompt, n):
    ids = list(prompt)
    logits = []
    for _ in range(n):
        out = model(torch.tensor([ids]))[0, -1]
        logits.append(out)
        ids.append(int(out.argmax()))
    return ids[len(prompt) :], torch.stack(logits)


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_kv_cache_matches_full_recompute(flavour):
    model = tiny(flavour)
    prompt = [3, 7, 1, 9, 4]
    want, want_logits = naive_greedy(model, prompt, 20)
    got = generate(model, [prompt], SamplingParams(max_new_tokens=20, temperature=0))[0]
    assert got.tokens == want
    # logits along the cached path equal the recomputed ones
    from lmforge.models.transformer import KVCache

    cache = KVCache(model.cfg, 1, 64, "cpu", torch.float32)
    step = model(torch.tensor([prompt]), cache=cache)[0, -1]
    cached = [step]
    for t in want[:-1]:
        cached.append(model(torch.tensor([[t]]), cache=cache)[0, -1])
    assert torch.allclose(torch.stack(cached), want_logits, atol=1e-5)


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_batched_left_padding_equals_one_by_one(flavour):
    model = tiny(flavour)
    prompts = [[5], [1, 2, 3, 4, 5, 6, 7], [9, 8, 7]]
    p = SamplingParams(max_new_tokens=12, temperature=0)
    batched = generate(model, prompts, p)
    for prompt, b in zip(prompts, batched):
        alone = generate(model, [prompt], p)[0]
        assert b.tokens == alone.tokens
        assert b.logprobs == pytest.approx(alone.logprobs, abs=1e-5)


def test_beam_width_one_is_greedy():
    model = tiny()
    prompt = [2, 4, 6]
    greedy = generate(model, [prompt], SamplingParams(max_new_tokens=15, temperature=0))[0].tokens
    (tokens, _), = beam_search(model, prompt, beams=1, max_new_tokens=15, length_penalty=0.0)
    assert tokens == greedy
    eos = greedy[5]
    greedy_eos = generate(model, [prompt], SamplingParams(max_new_tokens=15, temperature=0, stop_ids=[eos]))[0].tokens
    (tokens, _), = beam_search(model, prompt, beams=1, max_new_tokens=15, eos_id=eos, length_penalty=0.0)
    assert tokens == greedy_eos


def test_wider_beams_find_at_least_as_likely_sequences():
    model = tiny()
    prompt = [2, 4, 6]
    best = {}
    for b in (1, 4):
        tokens, _ = beam_search(model, prompt, beams=b, max_new_tokens=6, length_penalty=0.0)[0]
        with torch.no_grad():
            best[b] = float(sequence_logprobs(model, [prompt], [tokens])[0])
    assert best[4] >= best[1] - 1e-5


def test_top_k_keeps_exactly_k():
    logits = torch.randn(4, 50)
    out = process_logits(logits, SamplingParams(top_k=7))
    assert (torch.isfinite(out).sum(-1) == 7).all()
    assert torch.equal(torch.isfinite(out), torch.zeros_like(out, dtype=torch.bool).scatter_(1, logits.topk(7).indices, True))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(process_logits(logits, SamplingParams(top_p=0.7)))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(process_logits(logits, SamplingParams(top_p=0.1)))
    assert kept.tolist() == [[True, False, False, False]]


def test_sampling_matches_the_softmax_distribution():
    model = tiny(flavour="llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # a peaked, far-from-uniform next-token distribution
    prompt = [1, 2, 3]
    probs = model(torch.tensor([prompt]))[0, -1].softmax(-1).detach()
    n = 4000
    outs = generate(model, [prompt] * n, SamplingParams(max_new_tokens=1, temperature=1.0, top_p=1.0, seed=0))
    counts = torch.bincount(torch.tensor([o.tokens[0] for o in outs]), minlength=50).double()
    expected = probs.double() * n
    # pool the rare tokens so every cell has an expected count >= 5
    big = expected >= 5
    obs, exp = counts[big], expected[big]
    if (~big).any():
        obs, exp = torch.cat([obs, counts[~big].sum()[None]]), torch.cat([exp, expected[~big].sum()[None]])
    assert probs.max() > 0.1 and (probs < 0.001).sum() > 5  # the distribution is worth testing
    assert chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue > 0.001


def test_seeded_sampling_repeats():
    model = tiny()
    p = SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)
    assert generate(model, [[1, 2]], p)[0].tokens == generate(model, [[1, 2]], p)[0].tokens


def test_stop_tokens_and_strings():
    model = tiny()
    greedy = generate(model, [[1]], SamplingParams(max_new_tokens=10, temperature=0))[0]
    stop = greedy.tokens[3]
    g = generate(model, [[1]], SamplingParams(max_new_tokens=10, temperature=0, stop_ids=[stop]))[0]
    assert g.finished and g.tokens == greedy.tokens[: greedy.tokens.index(stop)]
    decode = lambda ids: "".join(chr(97 + (i % 26)) for i in ids)  # noqa: E731
    target = decode(greedy.tokens[2:4])
    g = generate(model, [[1]], SamplingParams(max_new_tokens=10, temperature=0, stop_strings=[target]), decode=decode)[0]
    assert g.finished and target not in decode(g.tokens)


def test_sequence_logprobs_match_the_generator():
    model = tiny()
    g = generate(model, [[4, 5]], SamplingParams(max_new_tokens=6, temperature=0))[0]
    with torch.no_grad():
        per = sequence_logprobs(model, [[4, 5]], [g.tokens], per_token=True)[0]
        batched = sequence_logprobs(model, [[4, 5], [1, 2, 3, 4]], [g.tokens, [7]])
    assert per.tolist() == pytest.approx(g.logprobs, abs=1e-5)
    assert float(batched[0]) == pytest.approx(sum(g.logprobs), abs=1e-4)


def test_sequence_logprobs_carry_gradients():
    model = tiny()
    lp = sequence_logprobs(model, [[4, 5]], [[6, 7]])
    lp.sum().backward()
    assert model.tok_emb.weight.grad is not None


def test_bad_sampling_requests():
    model = tiny()
    with pytest.raises(InputError, match="top_p"):
        generate(model, [[1]], SamplingParams(top_p=0.0))
    with pytest.raises(InputError, match="top_p"):
        generate(model, [[1]], SamplingParams(top_p=1.5))
    with pytest.raises(InputError, match="temperature"):
        generate(model, [[1]], SamplingParams(temperature=-1))
    with pytest.raises(InputError, match="context"):
        generate(model, [list(range(1, 50)) + [1] * 20], SamplingParams())


def test_repetition_penalty_discounts_seen_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    history = torch.tensor([[0, 1, 1]])
    out = process_logits(logits, SamplingParams(repetition_penalty=2.0, temperature=1.0), history, torch.tensor([[True, True, False]]))
    # token 0 seen (positive: halved), token 1 seen (negative: doubled); the masked slot counts for nothing
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]
