import json
import random

import numpy as np
import pytest
import torch

from lmforge.checkpoint import (
    CheckpointWarning,
    capture_rng,
    checkpoint_dirs,
    load_checkpoint,
    load_model_files,
    load_weights,
    restore_rng,
    save_checkpoint,
    save_model,
    verify_checkpoint,
)
from lmforge.errors import InputError


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.out = torch.nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight  # tied, as GPT-2 ties its embeddings


def trained():
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss = model.out(model.emb(torch.tensor([1, 2, 3]))).logsumexp(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def save(run, step, model, opt, **kw):
    return save_checkpoint(
        run, step, model_state=model.state_dict(), model_config={"n": 10}, optimizer_state=opt.state_dict(),
        trainer_state={"data": {"epoch": 0, "batch": step}, "rng": capture_rng()}, **kw,
    )


def test_save_and_load_round_trip(tmp_path):
    model, opt = trained()
    save(tmp_path, 5, model, opt)
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5 and ck.model_config == {"n": 10} and ck.trainer_state["data"]["batch"] == 5
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model_state[k], v)
    fresh = Tiny()
    fresh.load_state_dict(ck.model_state)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(ck.optimizer_state)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    names = {p.name for p in ck.path.iterdir()}
    assert names == {"config.json", "model.safetensors", "optimizer.pt", "trainer_state.json"}


def test_keep_last_n(tmp_path):
    model, opt = trained()
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, model, opt, keep_last=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000005", "step-00000004"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    model, opt = trained()
    save(tmp_path, 1, model, opt)
    newest = save(tmp_path, 2, model, opt)
    f = newest / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])  # truncated
    with pytest.warns(CheckpointWarning, match="step-00000002.*truncated"):
        ck = load_checkpoint(tmp_path)
    assert ck.step == 1


def test_bit_flip_is_caught_by_the_checksum(tmp_path):
    model, opt = trained()
    d = save(tmp_path, 1, model, opt)
    data = bytearray((d / "optimizer.pt").read_bytes())
    data[-40] ^= 0xFF
    (d / "optimizer.pt").write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        verify_checkpoint(d)
    with pytest.warns(CheckpointWarning), pytest.raises(InputError, match="no usable checkpoint"):
        load_checkpoint(tmp_path)


def test_no_checkpoints_is_none(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_truncated_safetensors_is_an_input_error(tmp_path):
    model, _ = trained()
    save_model(tmp_path, model.state_dict(), {"n": 10})
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(InputError) as e:
        load_model_files(tmp_path)
    assert e.value.path == str(f) and "truncated or corrupt safetensors" in str(e.value)


def test_final_model_folder_loads(tmp_path):
    model, _ = trained()
    save_model(tmp_path, model.state_dict(), {"n": 10})
    config, weights, folder = load_model_files(tmp_path)
    assert config == {"n": 10} and folder == tmp_path
    assert torch.equal(weights["emb.weight"], model.emb.weight)
    assert torch.equal(load_weights(tmp_path / "model.safetensors")["out.weight"], model.out.weight)


def test_rng_state_restores_every_generator():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = json.loads(json.dumps(capture_rng()))
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_optimizer_state_loads_with_weights_only(tmp_path):
    model, opt = trained()
    d = save(tmp_path, 1, model, opt)
    torch.load(d / "optimizer.pt", weights_only=True)  # would raise on pickled objects
