"""The training loop: schedules, parameter groups, NaN handling, exact resume, distributed equivalence."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.tracking import read_metrics
from lmforge.train.loop import ScheduleConfig, TrainConfig, TrainingDiverged, lr_at, param_groups, train

ROOT = Path(__file__).parent.parent


def test_schedules():
    cfg = TrainConfig(steps=100, schedule=ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1))
    cfg.optim.lr = 1.0
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=0.01)
    cfg.schedule.kind, cfg.schedule.decay_frac = "wsd", 0.2
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[10:80] == [1.0] * 70 and lrs[-1] < 0.2 and lrs[85] < lrs[80]


def test_no_weight_decay_on_norms_biases_embeddings():
    model = Transformer(ModelConfig(vocab_size=50, n_layer=1, n_head=2, d_model=16, max_seq_len=16))
    decay, other = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".weight" in names[id(p)] and "norm" not in names[id(p)] and "emb" not in names[id(p)] for p in decay["params"])
    assert {names[id(p)] for p in other["params"]} >= {"tok_emb.weight", "pos_emb.weight", "norm.weight", "norm.bias", "blocks.0.attn.q.bias"}
    assert len(decay["params"]) + len(other["params"]) == len(list(model.parameters()))  # tied weight once


class Batches:
    """A resumable stream of random (x, y) batches."""

    def __init__(self):
        self.i = 0

    def __next__(self):
        g = torch.Generator().manual_seed(self.i)
        self.i += 1
        x = torch.randint(0, 50, (4, 16), generator=g)
        return x, torch.roll(x, -1, 1)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]


def lm(model, batch):
    x, y = batch
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1)), {"tokens": y.numel()}


def nan_after(n):
    calls = {"n": 0}

    def objective(model, batch):
        calls["n"] += 1
        loss, m = lm(model, batch)
        return (loss * float("nan") if calls["n"] > n else loss), m

    return objective


def small_model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=50, n_layer=1, n_head=2, d_model=16, max_seq_len=16))


def test_nan_loss_stops_at_once_with_a_diagnostic(tmp_path):
    cfg = TrainConfig(steps=20, save_every=5, log_every=1)
    with pytest.raises(TrainingDiverged) as e:
        train(small_model(), nan_after(7), Batches(), cfg, tmp_path, model_config={})
    assert "step 8" in str(e.value) and "nan_policy=skip" in str(e.value) and e.value.field == "loss"
    assert (tmp_path / "checkpoints" / "step-00000005").exists()  # the last good checkpoint the message points to
    assert not (tmp_path / "model.safetensors").exists()


def test_nan_loss_skipped_when_configured(tmp_path):
    model = small_model()
    cfg = TrainConfig(steps=10, log_every=1, nan_policy="skip")
    train(model, nan_after(7), Batches(), cfg, tmp_path, model_config={})
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(1 for r in read_metrics(tmp_path) if r.get("skipped")) == 3


def run_cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "lmforge", *map(str, args)], env={**os.environ, "LMFORGE_PROGRESS": "0", **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def pretrain_args(shards, out, *extra):
    return ("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.shards={shards}", "train.steps=120", "train.save_every=10", "train.eval_every=40", "train.log_every=5", *extra, "--out", out)


def weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


def assert_killed_run_resumes_bitwise(args, tmp_path, kill_after_step: int) -> None:
    """Train `args(out)` once straight through and once killed (SIGKILL) after the checkpoint of
    `kill_after_step` and run again: the final weights must be identical."""
    p = run_cli(*args(tmp_path / "full"))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    p = run_cli(*args(tmp_path / "killed"))
    target = tmp_path / "killed" / "checkpoints" / f"step-{kill_after_step:08d}"
    deadline = time.time() + 300
    while not target.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "the run finished before it could be killed"
    p = run_cli(*args(tmp_path / "killed"))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_killed_run_resumes_bitwise(shards, tmp_path):
    assert_killed_run_resumes_bitwise(lambda out: pretrain_args(shards, out), tmp_path, 50)
    la = [(r["step"], r.get("loss"), r.get("eval/loss")) for r in read_metrics(tmp_path / "full")]
    lb = [(r["step"], r.get("loss"), r.get("eval/loss")) for r in read_metrics(tmp_path / "killed")]
    assert la == lb


def losses(run):
    return [(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(shards, tmp_path, parallel):
    common = (f"data.shards={shards}", "train.steps=30", "train.save_every=0", "train.eval_every=0", "train.log_every=1", "model.dropout=0.0")
    p = run_cli("pretrain", ROOT / "recipes" / "tiny.yaml", *common, "train.batch_size=8", "--out", tmp_path / "one")
    assert p.wait(timeout=300) == 0, p.stderr.read()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "lmforge",
           "pretrain", str(ROOT / "recipes" / "tiny.yaml"), *common, "train.batch_size=4", f"train.parallel={parallel}", "--out", str(tmp_path / "two")]  # fmt: skip
    p = subprocess.run(cmd, env={**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] and len(one) == 30
    for (_, a), (_, b) in zip(one, two):
        assert a == pytest.approx(b, abs=1e-5)
    wa, wb = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k


def test_a_model_grown_in_depth_computes_what_the_smaller_one_does(tmp_path):
    """Function-preserving depth growth: the smaller model's blocks at spaced depths, the new
    blocks' output projections zero, so the grown model's logits equal the smaller one's before
    any training; refused across widths."""
    import dataclasses

    from lmforge.checkpoint import save_model
    from lmforge.errors import ConfigError
    from lmforge.models import model_config_json
    from lmforge.models.transformer import ModelConfig, Transformer
    from lmforge.train.pretrain import grow

    for flavour in ("llama", "gpt2"):
        torch.manual_seed(0)
        small = Transformer(ModelConfig(flavour=flavour, vocab_size=50, n_layer=2, n_head=2, n_kv_head=1 if flavour == "llama" else None, d_model=16, max_seq_len=32))
        save_model(tmp_path / flavour, small.state_dict(), model_config_json(small))
        big = Transformer(dataclasses.replace(small.cfg, n_layer=7))
        grow(big, tmp_path / flavour)
        x = torch.randint(0, 50, (3, 20))
        assert torch.allclose(small.eval()(x), big.eval()(x), atol=1e-5), flavour
        assert big.num_params() > 3 * small.num_params() - 2 * 50 * 16
        loss = big(x).logsumexp(-1).mean()
        loss.backward()
        assert big.blocks[1].attn.out.weight.grad.abs().sum() > 0  # the new blocks learn
    wide = Transformer(dataclasses.replace(small.cfg, n_layer=4, d_model=32))
    with pytest.raises(ConfigError):
        grow(wide, tmp_path / "gpt2")
