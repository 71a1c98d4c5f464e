"""Run directories and checkpoints: save atomically, verify, resume from the last good one.

A stage writes everything it makes into one run directory:

    RUN/config.yaml                     the resolved config the run used
    RUN/metrics.jsonl                   one JSON object per logged step
    RUN/checkpoints/step-00001000/      a checkpoint (the last `keep_last` are kept)
        config.json                     model architecture (and tokenizer facts)
        model.safetensors               weights
        tokenizer.json                  the tokenizer the model reads
        optimizer.pt                    optimizer state (torch.save; loaded with weights_only=True)
        trainer_state.json              step, RNG states, data position, and the sha256 and
                                        size of every other file in the checkpoint
    RUN/config.json, RUN/model.safetensors, RUN/tokenizer.json
                                        the final model, what `--model RUN` loads

A checkpoint is written into a hidden temporary folder and renamed into place when complete,
so a crash leaves either the old set of checkpoints or the new one. If a checkpoint is damaged
later (a truncated copy, a disk error), its checksums no longer match: loading warns, names
the damage, and falls back to the previous good checkpoint.

Weights are never unpickled: model weights are safetensors, and `optimizer.pt` is read with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import InputError
from .io import _fsync_dir, atomic_write_json, default_mode, sha256_file

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older one."""


# --------------------------------------------------------------------------- RNG state


def capture_rng() -> dict:
    """Every random generator a training step may touch, as JSON-able data."""
    state = {
        "python": _jsonable(random.getstate()),
        "numpy": _jsonable(np.random.get_state(legacy=True)),
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    }
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]])


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    return x


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


# --------------------------------------------------------------------------- weights


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): copy the aliases."""
    seen: set = set()
    out = {}
    for k, v in state.items():
        v = v.detach()
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        out[k] = v.clone().contiguous() if key in seen or not v.is_contiguous() else v
        if key is not None:
            seen.add(key)
    return out


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, default_mode())
    try:
        save_file(_unshare(state), tmp, metadata={"format": "pt", **(metadata or {})})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated or corrupt one is an InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError("weights file not found", path=path)
    try:
        return load_file(str(path), device=device)
    except Exception as e:  # safetensors raises SafetensorError (not exported) or OSError
        raise InputError(f"truncated or corrupt safetensors file ({e})", path=path) from None


def save_model(directory: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, tokenizer=None) -> Path:
    """Write a loadable model (config.json, model.safetensors, tokenizer.json) into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_weights(d / "model.safetensors", state)
    if tokenizer is not None:
        tokenizer.save(d)
    atomic_write_json(d / "config.json", config)  # last: its presence marks a complete model
    return d


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise InputError(f"{what} not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"corrupt {what}: {e}", path=path) from None


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    model_config: dict
    optimizer_state: dict | None
    trainer_state: dict


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints of a run, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    model_config: dict,
    trainer_state: dict,
    optimizer_state: dict | None = None,
    tokenizer=None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep_last`."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", suffix=".tmp", dir=root))
    os.chmod(tmp, default_mode(directory=True))
    try:
        save_weights(tmp / "model.safetensors", model_state)
        atomic_write_json(tmp / "config.json", model_config)
        if tokenizer is not None:
            tokenizer.save(tmp)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size} for f in sorted(tmp.iterdir()) if not f.name.startswith(".")}
        atomic_write_json(tmp / "trainer_state.json", {**trainer_state, "step": step, "files": files})
        if final.exists():  # the same step saved again (a resumed run): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(run_dir)[max(keep_last, 1) :]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Check a checkpoint folder against the checksums in its trainer_state.json.

    Returns the trainer state; raises InputError naming the first damaged file.
    """
    path = Path(path)
    state = read_json(path / "trainer_state.json", "trainer state")
    files = state.get("files") if isinstance(state, dict) else None
    if not isinstance(files, dict):
        raise InputError("trainer state has no file checksums", path=path / "trainer_state.json", field="files")
    for name, info in files.items():
        f = path / name
        if not f.exists():
            raise InputError("file listed in trainer_state.json is missing", path=f)
        size = f.stat().st_size
        if size != info["bytes"]:
            raise InputError(f"truncated or resized: {size} bytes, expected {info['bytes']}", path=f)
        if sha256_file(f) != info["sha256"]:
            raise InputError("checksum does not match trainer_state.json (the file is corrupt)", path=f)
    return state


def _read_checkpoint(path: Path, with_optimizer: bool, device: str) -> Checkpoint:
    state = verify_checkpoint(path)
    optimizer_state = None
    if with_optimizer and (path / "optimizer.pt").exists():
        try:
            optimizer_state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
        except Exception as e:
            raise InputError(f"unreadable optimizer state ({e})", path=path / "optimizer.pt") from None
    return Checkpoint(
        path=path,
        step=int(state["step"]),
        model_state=load_weights(path / "model.safetensors", device),
        model_config=read_json(path / "config.json", "model config"),
        optimizer_state=optimizer_state,
        trainer_state=state,
    )


def load_checkpoint(run_dir: str | os.PathLike, *, with_optimizer: bool = True, device: str = "cpu") -> Checkpoint | None:
    """The newest checkpoint of a run that passes its checksums; None if the run has none.

    A damaged checkpoint is skipped with a warning that says what is wrong with it.
    """
    dirs = checkpoint_dirs(run_dir)
    problems = []
    for d in dirs:
        try:
            return _read_checkpoint(d, with_optimizer, device)
        except InputError as e:
            problems.append(str(e))
            warnings.warn(f"skipping damaged checkpoint {d.name}: {e}", CheckpointWarning, stacklevel=2)
    if problems:
        raise InputError(f"no usable checkpoint ({len(problems)} damaged; newest: {problems[0]})", path=Path(run_dir) / CHECKPOINTS)
    return None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The folder that holds the model a `--model PATH` means.

    PATH may be a model folder (config.json + model.safetensors), a checkpoint folder, or a
    run directory, whose final model is used, or else its newest good checkpoint.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("model not found: no such directory", path=p)
    if (p / "model.safetensors").exists():
        if (p / "trainer_state.json").exists():
            verify_checkpoint(p)
        return p
    for d in checkpoint_dirs(p):
        try:
            verify_checkpoint(d)
            return d
        except InputError as e:
            warnings.warn(f"skipping damaged checkpoint {d.name}: {e}", CheckpointWarning, stacklevel=2)
    raise InputError("no model here (expected model.safetensors, or a run directory with checkpoints)", path=p)


def load_model_files(path: str | os.PathLike, device: str = "cpu") -> tuple[dict, dict[str, torch.Tensor], Path]:
    """(config, weights, folder) of the model at PATH; errors name the damaged file."""
    d = resolve_model_dir(path)
    config = read_json(d / "config.json", "model config")
    return config, load_weights(d / "model.safetensors", device), d
