"""Supervised fine-tuning: the data, the loss on answers only, packing, mixtures, the stage."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.tracking import read_metrics

from lmforge.data.sft import SFTLoader, epoch_order, make_batch, mixture_weights, read_examples
from lmforge.errors import InputError
from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.train.sft import evaluate_sft, sft_loss

from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def conv(q, a, *more):
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    for i, text in enumerate(more):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"messages": msgs}


DEMOS = [conv(f"What is {a} + {b}?", f"{a} + {b} = {a + b}.") for a in range(6) for b in range(5)] + [
    conv("Name a colour.", "Red.", "Another one?", "Blue, and green after it."),
]
# a dataset has one schema: prompt/completion records, plain and conversational, come in their own file
PAIRS = [
    {"prompt": "Say hi:", "completion": " hi there"},
    {"prompt": [{"role": "user", "content": "Say bye."}], "completion": [{"role": "assistant", "content": "Bye."}]},
]


@pytest.fixture
def demos(tmp_path):
    return write_jsonl(tmp_path / "demos.jsonl", DEMOS)


def tiny(flavour="llama", vocab=400):
    torch.manual_seed(0)
    cfg = ModelConfig(flavour=flavour, vocab_size=vocab, n_layer=2, n_head=2, n_kv_head=1 if flavour == "llama" else None, d_model=32, max_seq_len=64)
    return Transformer(cfg)


# --------------------------------------------------------------------------- data


def test_examples_from_messages_and_both_prompt_completion_forms(bpe, demos, tmp_path):
    examples, stats = read_examples(demos, bpe, max_len=64)
    assert stats["examples"] == len(DEMOS) == len(examples) and stats["truncated"] == stats["skipped"] == 0
    assert examples[0].where.endswith("demos.jsonl:1")
    plain, chat = read_examples(write_jsonl(tmp_path / "pairs.jsonl", PAIRS), bpe, max_len=64)[0]
    # a standard prompt/completion: prompt + completion + end of text
    assert plain.ids[-1] == bpe.eos_id and plain.mask.sum() == len(bpe.encode_plain(" hi there")) + 1
    # a conversational one goes through the chat template
    assert chat.ids[0] == bpe.special_id("user") and chat.ids[-1] == bpe.special_id("end_of_turn")


@pytest.mark.parametrize(
    "record, field, words",
    [
        (conv("Hi?", "Hello.", "And now?"), "messages[2].role", "ends on a user turn"),
        ({"messages": [{"role": "user", "content": "Hi?"}]}, "messages[0].role", "ends on a user turn"),
        ({"messages": [{"role": "bot", "content": "Hi?"}]}, "messages[0].role", "unknown role 'bot'"),
        (conv("Hi?", "   "), "messages[1].content", "is empty"),
        (conv("", "Hello."), "messages[0].content", "is empty"),
        ({"prompt": "Say hi:", "completion": ""}, "completion", "is empty"),
        ({"prompt": "Say hi:", "completion": [{"role": "assistant", "content": "hi"}]}, "completion", "both be strings or both lists"),
        ({"text": "just text"}, None, "SFT reads"),
    ],
)
def test_bad_records_name_file_line_and_field(bpe, tmp_path, record, field, words):
    first = PAIRS[0] if "completion" in record else DEMOS[0]
    records = [record] if "text" in record else [first, record]  # a text file fails at its first record
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(InputError) as e:
        read_examples(path, bpe, max_len=64)
    assert e.value.line == len(records) and str(path) in str(e.value) and words in str(e.value)
    if field:
        assert e.value.field == field


def test_too_long_examples_are_truncated_skipped_or_refused(bpe, tmp_path):
    long_answer = conv("Tell me everything.", " ".join(["the cat sat on the mat"] * 20))
    path = write_jsonl(tmp_path / "long.jsonl", [DEMOS[0], long_answer])
    with pytest.warns(UserWarning, match="1 examples truncated"):
        examples, stats = read_examples(path, bpe, max_len=30)
    assert stats["truncated"] == 1 and len(examples[1]) == 30 and examples[1].mask.sum() > 0
    with pytest.warns(UserWarning, match="1 skipped"):
        examples, stats = read_examples(path, bpe, max_len=30, long="skip")
    assert stats["skipped"] == 1 and len(examples) == 1
    with pytest.raises(InputError, match="longer than the context of 30") as e:
        read_examples(path, bpe, max_len=30, long="error")
    assert e.value.line == 2
    # a cut that leaves no answer token is a skip, never an example that teaches nothing
    long_question = conv(" ".join(["why"] * 60) + "?", "Because.")
    with pytest.warns(UserWarning, match="1 skipped"):
        _, stats = read_examples(write_jsonl(tmp_path / "q.jsonl", [DEMOS[0], long_question]), bpe, max_len=30)
    assert stats["skipped"] == 1


def test_a_system_prompt_is_added_where_there_is_none(bpe, demos, tmp_path):
    examples, _ = read_examples(demos, bpe, max_len=64, system="Be brief.")
    assert examples[0].ids[0] == bpe.special_id("system")
    plain, chat = read_examples(write_jsonl(tmp_path / "pairs.jsonl", PAIRS), bpe, max_len=64, system="Be brief.")[0]
    assert plain.ids[0] != bpe.special_id("system") and chat.ids[0] == bpe.special_id("system")  # plain text has no turns


def test_mixture_follows_the_temperature():
    sizes = [900, 100]
    assert mixture_weights(sizes, 1.0) == pytest.approx([0.9, 0.1])
    assert mixture_weights(sizes, 2.0) == pytest.approx(np.sqrt([900, 100]) / np.sqrt([900, 100]).sum())
    assert mixture_weights(sizes, 1e6) == pytest.approx([0.5, 0.5], abs=1e-4)
    order = epoch_order(sizes, 2.0, seed=0, epoch=0)
    assert len(order) == 1000 and order == epoch_order(sizes, 2.0, seed=0, epoch=0) != epoch_order(sizes, 2.0, seed=0, epoch=1)
    share = sum(d == 1 for d, _ in order) / 1000
    assert share == pytest.approx(0.25, abs=0.04)  # sqrt(100) / (sqrt(900) + sqrt(100))
    # the small dataset is drawn ~250 times: every example of it at least twice, none more than thrice
    counts = np.bincount([i for d, i in order if d == 1], minlength=100)
    assert counts.min() >= 2 and counts.max() <= 3


# --------------------------------------------------------------------------- the loss


def test_prompt_tokens_get_no_gradient(bpe, demos):
    examples, _ = read_examples(demos, bpe, max_len=64)
    model = tiny(vocab=bpe.vocab_size)
    batch = make_batch([[e] for e in examples[:8]], None)
    objective = sft_loss()
    loss, _ = objective(model, batch)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    # change every target the loss must ignore (prompt and padding): same loss, same gradients
    perturbed = dict(batch, targets=torch.where(batch["loss_mask"], batch["targets"], (batch["targets"] + 7) % bpe.vocab_size))
    model.zero_grad()
    loss2, _ = objective(model, perturbed)
    loss2.backward()
    assert float(loss2.detach()) == float(loss.detach())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    # an answer target does count
    changed = batch["targets"].clone()
    first = batch["loss_mask"].nonzero()[0]
    changed[tuple(first)] = (changed[tuple(first)] + 1) % bpe.vocab_size
    assert float(objective(model, dict(batch, targets=changed))[0].detach()) != float(loss.detach())
    # with prompt_loss_weight = 1 every real token counts equally
    full, _ = sft_loss(1.0)(model, batch)
    logits = model(batch["input_ids"]).float()
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="none").view_as(batch["targets"])
    assert float(full.detach()) == pytest.approx(float(ce[batch["real"]].mean().detach()), rel=1e-5)


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_packed_rows_compute_what_the_examples_compute_alone(bpe, demos, flavour):
    examples, _ = read_examples(demos, bpe, max_len=64)
    model = tiny(flavour, vocab=bpe.vocab_size).eval().requires_grad_(False)
    objective = sft_loss()
    padded, _ = objective(model, make_batch([[e] for e in examples], None))
    loader = SFTLoader([examples], batch_size=3, seq_len=64, pack=True)
    rows = loader._epoch_rows()
    assert max(len(r) for r in rows) > 1  # several examples share a row
    packed_batch = make_batch(rows, 64)
    packed, _ = objective(model, packed_batch)
    assert float(packed) == pytest.approx(float(padded), rel=1e-5)
    assert int(packed_batch["loss_mask"].sum()) == sum(int(e.mask[1:].sum()) for e in examples)
    # and token by token: each packed example's logits are its logits alone
    logits = model(packed_batch["input_ids"], positions=packed_batch["positions"], segments=packed_batch["segments"])
    e = rows[0][1]
    start = len(rows[0][0]) - 1
    alone = model(torch.from_numpy(e.ids[:-1].astype(np.int64))[None])
    assert torch.allclose(logits[0, start : start + len(e) - 1], alone[0], atol=1e-5)


def test_loader_epochs_resume_and_ranks(bpe, demos):
    examples, _ = read_examples(demos, bpe, max_len=64)
    loader = SFTLoader([examples], batch_size=2, seq_len=64, pack=False, seed=3)
    first = [next(loader) for _ in range(loader.batches_per_epoch)]
    assert loader.epoch == 1 and loader.batch == 0
    seen = sorted(int(b["loss_mask"].sum()) for b in first)
    assert sum(seen) <= sum(int(e.mask[1:].sum()) for e in examples)
    state = loader.state_dict()
    a = [next(loader)["input_ids"] for _ in range(3)]
    again = SFTLoader([examples], batch_size=2, seq_len=64, pack=False, seed=3)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert all(torch.equal(x, next(again)["input_ids"]) for x in a)
    with pytest.raises(InputError, match="pack"):
        SFTLoader([examples], batch_size=2, seq_len=64, pack=True, seed=3).load_state_dict(state)
    # two ranks of 2 rows read the global batch of 4 rows a single process reads
    ranks = [next(SFTLoader([examples], batch_size=2, seq_len=64, pack=False, rank=r, world_size=2)) for r in (0, 1)]
    whole = next(SFTLoader([examples], batch_size=4, seq_len=64, pack=False))

    def rows(b):
        return [b["targets"][i][b["real"][i]].tolist() for i in range(len(b["targets"]))]

    assert rows(ranks[0]) + rows(ranks[1]) == rows(whole)


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def base(shards, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("base") / "run"
    assert main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), f"data.shards={shards}", "train.steps=30", "train.eval_every=0", "--out", str(out)]) == 0
    return out


def test_sft_learns_the_answers_and_makes_a_chat_model(cli, base, tmp_path, demos):
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer

    out = tmp_path / "sft"
    val = write_jsonl(tmp_path / "val.jsonl", DEMOS[:6])
    code, stdout, err = cli("sft", f"init={base}", f"data.train=[{demos}]", f"data.val={val}", "epochs=8", "train.batch_size=4", "train.optim.lr=3e-3", "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    config = json.loads((out / "config.json").read_text())
    assert config["chat_template"] == "lmforge" and config["trained_seq_len"] == 64
    assert result["end_of_turn_from"] == "eos" and "untrained_tokens" not in config  # the base never saw <|end|>
    before, _ = load_model(base)
    after, folder = load_model(out)
    examples, _ = read_examples(val, Tokenizer.load(folder), max_len=65)
    assert evaluate_sft(after, examples)["loss"] < 0.5 * evaluate_sft(before, examples)["loss"]
    assert result["eval/loss"] == pytest.approx(evaluate_sft(after, examples)["loss"], rel=1e-4)
    assert result["steps"] >= 8  # epochs=8: at least a batch an epoch
    stats = json.loads((out / "data_stats.json").read_text())
    assert stats[str(demos)]["examples"] == len(DEMOS)
    # generate speaks to it through the chat template, and it answers, stopping at its end of turn
    code, stdout, err = cli("generate", "--model", out, "--prompt", "What is 2 + 3?", "--temperature", 0, "--max-new-tokens", 20, "--json")
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["chat"] and answer["completions"][0]["finished"] and answer["completions"][0]["text"].strip()
    code, stdout, _ = cli("generate", "--model", base, "--prompt", "What is 2 + 3?", "--max-new-tokens", 5, "--json")
    assert code == 0 and not json.loads(stdout)["chat"]  # a base model continues text


def test_pretraining_records_the_tokens_it_never_saw(base, shards):
    from lmforge.data.shards import TokenShards
    from lmforge.tokenizer import Tokenizer

    config = json.loads((base / "config.json").read_text())
    tok = Tokenizer.load(base)
    counts = np.bincount(TokenShards(shards / "shards", "train").read_all(), minlength=tok.vocab_size)
    assert config["untrained_tokens"] == [int(i) for i in np.flatnonzero(counts == 0)]
    assert tok.special_id("end_of_turn") in config["untrained_tokens"] and tok.eos_id not in config["untrained_tokens"]


def test_end_of_turn_starts_from_end_of_text_only_when_it_is_new(bpe):
    from lmforge.train.sft import start_end_of_turn

    end, eos = bpe.special_id("end_of_turn"), bpe.eos_id
    for tied in (False, True):
        model = tiny("gpt2" if tied else "llama", vocab=bpe.vocab_size)
        model.chat_template, model.untrained_tokens = None, [end, 300]
        other = model.lm_head.weight[300].clone()
        assert start_end_of_turn(model, bpe)
        assert torch.equal(model.lm_head.weight[end], model.lm_head.weight[eos])
        assert torch.equal(model.lm_head.weight[300], other)  # only the end of turn moves
        assert torch.equal(model.tok_emb.weight[end], model.lm_head.weight[eos]) == tied
    for chat, untrained in ((None, None), ("lmforge", [end]), (None, [end, eos]), (None, [300])):
        model = tiny(vocab=bpe.vocab_size)
        model.chat_template, model.untrained_tokens = chat, untrained
        before = model.lm_head.weight.clone()
        assert not start_end_of_turn(model, bpe)  # no record, already a chat model, no trained eos, or <|end|> seen
        assert torch.equal(model.lm_head.weight, before)


def test_a_dataset_smaller_than_a_batch_trains_in_smaller_batches_with_a_warning(bpe, demos, cli, base, tmp_path):
    examples, _ = read_examples(demos, bpe, max_len=64)
    with pytest.warns(UserWarning, match="too few for one batch of 64; batches of"):
        loader = SFTLoader([examples[:3]], batch_size=64, seq_len=64, pack=False, shrink=True)
    assert loader.batch_size == 3 and loader.batches_per_epoch == 1 and next(loader)["input_ids"].shape[0] == 3
    with pytest.raises(InputError, match="too few for one batch"):  # without shrink (DPO's and the reward model's loaders refuse)
        SFTLoader([examples[:3]], batch_size=64, seq_len=64, pack=False)
    few = write_jsonl(tmp_path / "few.jsonl", DEMOS[:2])
    with pytest.warns(UserWarning, match="too few for one batch of 16"):
        code, _, err = cli("sft", f"init={base}", f"data.train=[{few}]", "data.val=", "epochs=1", "train.batch_size=16", "--out", tmp_path / "sft")
    assert code == 0, err
    assert "  batch_size: 1\n" in (tmp_path / "sft" / "config.yaml").read_text()  # the two short demonstrations pack into one row


def test_sft_on_a_users_data_holds_out_its_own_records_and_never_makes_a_world(cli, base, tmp_path):
    """No world unless asked: given a user's demonstrations only, SFT validates on a share of them
    (by a hash of each record), not on a built-in world it would have generated."""
    records = [conv(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(40)]
    data = write_jsonl(tmp_path / "msgs.jsonl", records)
    out = tmp_path / "sft"
    code, _, err = cli("sft", f"init={base}", f"data.train=[{data}]", "data.val_fraction=0.1", "epochs=1", "train.batch_size=4", "train.eval_every=2", "--out", out)
    assert code == 0, err
    assert not (out / "world").exists() and not list(tmp_path.glob("**/world.json"))
    held = json.loads((out / "data_stats.json").read_text())["held_out"]
    assert 1 <= held["examples"] <= 10
    assert [r for r in read_metrics(out) if "eval/loss" in r]
    # choosing by held-out loss from the user's own records works the same way
    code, _, err = cli("sft", f"init={base}", f"data.train=[{data}]", "epochs=2", "select.val_loss=true", "train.batch_size=4", "--out", tmp_path / "chosen")
    assert code == 0, err
    assert json.loads((tmp_path / "chosen" / "selection.json").read_text())["chosen"]


def test_a_base_model_without_chat_tokens_gets_them_for_sft(tmp_path):
    """An imported base model (a tokenizer with only <|endoftext|>, no chat template): SFT appends
    lmforge's role and end-of-turn tokens, their rows at the mean of the trained ones and
    <|end|>'s a copy of <|endoftext|>'s, every old row kept; conversations then render."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.data.chat import render
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.sft import add_chat_tokens

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer, hf.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    hf.train_from_iterator(["the cat sat on the mat"] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = Tokenizer(hf)
    with pytest.raises(InputError, match="no '<\\|end\\|>' token"):
        render(tok, [{"role": "user", "content": "hi"}])
    for tied in (False, True):
        model = Transformer(ModelConfig(flavour="llama", vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, d_model=16, max_seq_len=32, tie_embeddings=tied))
        before_emb, before_head = model.tok_emb.weight.clone(), model.lm_head.weight.clone()
        model, chat_tok, added = add_chat_tokens(model, tok)
        assert added == ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"] and chat_tok.vocab_size == tok.vocab_size + 4 == model.cfg.vocab_size
        n, end, eos = tok.vocab_size, chat_tok.special_id("end_of_turn"), tok.eos_id
        assert torch.equal(model.tok_emb.weight[:n], before_emb) and torch.equal(model.lm_head.weight[:n], before_head)
        assert torch.allclose(model.tok_emb.weight[n], before_emb.mean(0)) and torch.equal(model.lm_head.weight[end], before_head[eos])
        assert (model.lm_head.weight is model.tok_emb.weight) == tied
        assert model(torch.tensor([render(chat_tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the cat"}]).ids])).shape[-1] == n + 4
    assert add_chat_tokens(model, chat_tok)[2] == []  # already has them


def test_sft_bad_inputs_fail_cleanly(cli, base, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [DEMOS[0], conv("Hi?", "Hello.", "And now?")])
    assert_clean_failure(cli("sft", f"init={base}", f"data.train=[{bad}]", "data.val=", "--out", tmp_path / "a"), f"{bad}:2", "messages[2].role", "ends on a user turn")
    assert not (tmp_path / "a").exists()
    assert_clean_failure(cli("sft", f"data.train=[{bad}]", "--out", tmp_path / "b"), "init")
    assert_clean_failure(cli("sft", f"init={base}", "data.seq_len=1000", "data.val=", "--out", tmp_path / "c"), "data.seq_len")
    long = write_jsonl(tmp_path / "long.jsonl", [conv("Why?", " ".join(["because"] * 200))])
    assert_clean_failure(cli("sft", f"init={base}", f"data.train=[{long}]", "data.long=error", "data.val=", "--out", tmp_path / "d"), f"{long}:1", "longer than the context")


def test_sft_chooses_its_epochs_and_learning_rate_by_held_out_loss(cli, base, tmp_path, demos, monkeypatch):
    """A synthetic held-out loss curve per learning rate: the stage keeps the weights of the lowest
    point of the lowest curve (here the second of three rates, after 2 of 4 epochs), never the
    last epoch's."""
    import lmforge.train.sft as sft_module
    from safetensors.torch import load_file

    curves = {3e-3: [1.0, 0.8, 0.7, 0.75], 1e-2: [0.9, 0.6, 0.65, 0.7], 3e-2: [0.95, 0.9, 0.85, 0.8]}
    calls: dict[float, int] = {}

    def synthetic(model, examples, batch_size=16):
        lr = current["lr"]
        i = calls[lr] = calls.get(lr, 0) + 1
        return {"loss": curves[lr][i - 1], "perplexity": 1.0, "answer_tokens": 1}

    current = {}
    real_train = sft_module._train_sft

    def tracking(cfg, out, **kw):
        current["lr"] = cfg.train.optim.lr
        return real_train(cfg, out, **kw)

    monkeypatch.setattr(sft_module, "evaluate_sft", synthetic)
    monkeypatch.setattr(sft_module, "_train_sft", tracking)
    out = tmp_path / "sft"
    val = write_jsonl(tmp_path / "val.jsonl", DEMOS[:4])
    code, _, err = cli("sft", f"init={base}", f"data.train=[{demos}]", f"data.val={val}", "epochs=4", "select.val_loss=true", "select.lr=[3e-3,1e-2,3e-2]", "train.batch_size=2", "--out", out)
    assert code == 0, err
    assert calls == {3e-3: 4, 1e-2: 4, 3e-2: 4}  # every rate evaluated after each of its 4 epochs
    selection = json.loads((out / "selection.json").read_text())
    assert selection["chosen"] == {"lr": 1e-2, "epoch": 2.0, "loss": 0.6}
    assert not selection["stopped_at_the_end"]
    assert [c["loss"] for c in selection["trials"][2]["curve"]] == curves[3e-2]
    assert "chosen by held-out loss: lr 0.01, epoch 2" in err
    chosen = load_file(out / "model.safetensors")
    best = load_file(out / "trials" / "lr0.01" / "best" / "model.safetensors")
    last = load_file(out / "trials" / "lr0.01" / "model.safetensors")
    assert all(torch.equal(chosen[k], best[k]) for k in chosen)
    assert not all(torch.equal(chosen[k], last[k]) for k in chosen)  # not the weights after 4 epochs
    assert json.loads((out / "config.json").read_text())["chat_template"] == "lmforge"


def test_sft_selection_needs_held_out_data(cli, base, demos, tmp_path):
    code, _, err = cli("sft", f"init={base}", f"data.train=[{demos}]", "data.val=", "select.val_loss=true", "--out", tmp_path / "x")
    assert code == 2 and "select.val_loss" in err
