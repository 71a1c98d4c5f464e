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


# --------------------------------------------------------------------------- continuous batching


def _run_continuous(model, prompts, params, max_rows=4, every=2):
    """Sequences join a ContinuousBatch one every `every` steps, into whatever is running."""
    from lmforge.engine import ContinuousBatch

    batch, seqs, i, steps = ContinuousBatch(model, max_rows=max_rows), [], 0, 0
    while i < len(prompts) or batch.busy():
        if i < len(prompts) and steps % every == 0:
            seqs.append(batch.add(prompts[i], params[i] if isinstance(params, list) else params))
            i += 1
        batch.step()
        steps += 1
    return seqs, batch


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_a_sequence_that_joins_mid_batch_gets_the_greedy_tokens_it_gets_alone(flavour):
    import random

    model, rng = tiny(flavour), random.Random(0)
    prompts = [[rng.randrange(1, 50) for _ in range(rng.randrange(1, 12))] for _ in range(16)]
    params = [SamplingParams(max_new_tokens=rng.randrange(1, 14), temperature=0, stop_ids=[5]) for _ in prompts]
    seqs, batch = _run_continuous(model, prompts, params)
    assert len({len(q.tokens) for q in seqs}) > 3  # answers of many lengths ended at different steps
    for q, p, prompt in zip(seqs, params, prompts):
        alone = generate(model, [prompt], p)[0]
        want, _ = naive_greedy(model, prompt, p.max_new_tokens)  # the full recompute
        assert q.tokens == alone.tokens == want[: len(q.tokens)]
        assert q.end == ("stop" if alone.finished else "length") and q.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    assert batch.cache.lengths.sum() == 0 and not batch.rows  # every row freed


def test_continuous_rows_sample_with_their_own_settings_and_seeds():
    """Rows with different temperatures, top-k, top-p and penalties share a step; a seeded row
    samples exactly what it samples alone, whatever runs beside it."""
    import random

    model, rng = tiny("llama"), random.Random(1)
    prompts = [[rng.randrange(1, 50) for _ in range(rng.randrange(1, 10))] for _ in range(8)]
    params = [
        SamplingParams(max_new_tokens=10, temperature=[0.7, 1.0, 1.3][i % 3], top_k=[None, 10, 3][i % 3], top_p=[1.0, 0.9, 0.5][i % 3], repetition_penalty=[1.0, 1.3][i % 2], seed=100 + i)
        for i in range(8)
    ]  # fmt: skip
    from lmforge.engine import _generate_padded

    seqs, _ = _run_continuous(model, prompts, params, max_rows=3, every=1)
    for q, p, prompt in zip(seqs, params, prompts):  # alone, through the left-padded stream and process_logits
        assert q.tokens == _generate_padded(model, [prompt], p)[0].tokens


def test_cancelling_a_sequence_frees_its_row():
    from lmforge.engine import ContinuousBatch

    batch = ContinuousBatch(tiny("llama"), max_rows=2)
    long = [batch.add([1, 2, 3], SamplingParams(max_new_tokens=40, temperature=0)) for _ in range(2)]
    waiting = batch.add([4, 5], SamplingParams(max_new_tokens=3, temperature=0))
    batch.step()
    assert batch.free_rows() == -1 and len(batch.rows) == 2  # full: the third waits
    long[0].cancel()
    events = batch.step()
    assert long[0].end == "cancelled" and waiting in batch.rows  # its row went to the one waiting
    assert not [e for e in events if e[0] is long[0]]  # a cancelled sequence says nothing more
    while batch.busy():
        batch.step()
    assert waiting.end == "length" and len(waiting.tokens) == 3 and batch.cache.lengths.sum() == 0


def test_the_compiled_decode_step_gives_the_tokens_of_the_eager_one_and_follows_new_weights():
    """`compile=True` (torch.compile of the decode step over the whole slot buffer, weights
    frozen into the graph): the same greedy tokens as the eager engine and the full recompute,
    batches of several sizes; after an in-place weight update it decodes with the new weights."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    model = tiny("llama")
    prompts = [[3, 7, 1], [9, 4, 4, 2, 8], [1], [5, 6]]
    p = SamplingParams(max_new_tokens=12, temperature=0)
    for batch in (prompts[:1], prompts):
        eager, compiled = generate(model, batch, p), generate(model, batch, p, compile=True)
        assert [g.tokens for g in compiled] == [g.tokens for g in eager] == [naive_greedy(model, x, 12)[0] for x in batch]
    with torch.no_grad():
        for w in model.parameters():
            w.mul_(1.5)
    assert [g.tokens for g in generate(model, prompts, p, compile=True)] == [naive_greedy(model, x, 12)[0] for x in prompts]
