"""Scoring a token stream: every token predicted once, from the context each scheme promises."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import InputError
from lmforge.eval.perplexity import score_stream
from lmforge.models.transformer import ModelConfig, Transformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=40, n_layer=1, n_head=2, d_model=16, max_seq_len=16)).eval()


@pytest.fixture(scope="module")
def stream():
    return torch.randint(0, 40, (75,), generator=torch.Generator().manual_seed(1))


def nll_of(model, context, target):  # -log p(target | context)
    with torch.no_grad():
        return float(F.cross_entropy(model(context[None])[0, -1], target))


@pytest.mark.parametrize("stride", [1, 3, 8, None])
def test_sliding_windows_give_each_token_its_context(model, stream, stride):
    r = score_stream(model, stream, torch.ones(40), window=8, stride=stride)
    # target t is scored in the pass that ends at the first multiple of stride >= t (or at the end),
    # reading the `window` tokens before that end; stride = window (the default): windows that
    # start afresh, the last one reaching back a whole window
    stride = stride or 8
    want = 0.0
    for t in range(1, 75):
        end = min(-(-t // stride) * stride, 74)
        begin = max(0, end - 8)
        with torch.no_grad():
            logits = model(stream[begin:end][None])[0]
        want += float(F.cross_entropy(logits[t - 1 - begin], stream[t]))
    assert r["tokens"] == 74 and r["bytes"] == 74
    assert r["loss"] * 74 == pytest.approx(want, rel=1e-5)
    if stride == 1:  # every token sees min(t, window) tokens: never worse off than non-overlapping windows
        assert r["loss"] * 74 == pytest.approx(sum(nll_of(model, stream[max(0, t - 8) : t], stream[t]) for t in range(1, 75)), rel=1e-5)


def test_default_window_is_the_trained_length(model, stream):
    model.trained_seq_len = 8
    try:
        assert score_stream(model, stream, torch.ones(40))["loss"] == pytest.approx(score_stream(model, stream, torch.ones(40), window=8)["loss"])
    finally:
        model.trained_seq_len = None
    assert score_stream(model, stream, torch.ones(40))["loss"] == pytest.approx(score_stream(model, stream, torch.ones(40), window=16)["loss"])


def test_bad_windows(model, stream):
    with pytest.raises(InputError, match="window"):
        score_stream(model, stream, torch.ones(40), window=-2)
    for kw in ({"stride": -1}, {"stride": 0}, {"batch_size": 0}, {"batch_size": -1}):
        with pytest.raises(InputError, match=next(iter(kw))):
            score_stream(model, stream, torch.ones(40), window=8, **kw)
    from lmforge.models.rnn import RNNLM, RNNConfig

    with pytest.raises(InputError, match="recurrent"):
        score_stream(RNNLM(RNNConfig(vocab_size=40, d_embed=8, d_hidden=8, n_layer=1)), stream, torch.ones(40), stride=4)
    with pytest.raises(InputError, match="two tokens"):
        score_stream(model, stream[:1], torch.ones(40))
