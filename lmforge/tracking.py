"""What a run reports while it works: metrics.jsonl, progress bars, TensorBoard and W&B.

`metrics.jsonl` is always written: one JSON object per logged step, flushed at once, so a
killed run keeps everything logged before it died. TensorBoard and Weights & Biases receive
the same scalars when asked for and installed (`pip install 'lmforge[tensorboard]'`,
`'lmforge[wandb]'`). When a run resumes from a checkpoint, the lines it logged after that
checkpoint are dropped first, so the file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .errors import InputError
from .io import atomic_write_text


def progress_enabled() -> bool:
    """Progress bars show on a terminal; LMFORGE_PROGRESS=1 forces them on (for logs), =0 off."""
    flag = os.environ.get("LMFORGE_PROGRESS")
    if flag is not None:
        return flag != "0"
    return sys.stderr.isatty()


def progress(total=None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    """A progress bar with rate and ETA (see `progress_enabled`)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, disable=not progress_enabled(), **kwargs)


class MetricsLogger:
    """Appends {"step": n, "time": seconds since start, ...metrics} to RUN/metrics.jsonl."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        resume_step: int | None = None,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "lmforge",
        config: dict | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run starts a fresh log
        self.start = time.time()
        self.fh = open(self.path, "a", encoding="utf-8")
        self.tb = self.wb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InputError("tensorboard logging needs: pip install 'lmforge[tensorboard]'", field="tensorboard") from None
            self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                raise InputError("W&B logging needs: pip install 'lmforge[wandb]'", field="wandb") from None
            self.wb = wb.init(project=wandb_project, dir=str(run_dir), config=config, resume="allow")

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (by a run that died before its next checkpoint)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                break  # a line cut short by the kill: nothing after it is trustworthy
        atomic_write_text(self.path, "".join(x + "\n" for x in kept))

    def log(self, step: int, **metrics) -> None:
        clean = {k: (float(v) if hasattr(v, "item") else v) for k, v in metrics.items()}
        record = {"step": step, "time": round(time.time() - self.start, 3), **clean}
        self.fh.write(json.dumps(record, allow_nan=True) + "\n")
        self.fh.flush()
        scalars = {k: v for k, v in clean.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wb is not None:
            self.wb.log(scalars, step=step)

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
