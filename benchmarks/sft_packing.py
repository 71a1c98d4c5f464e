"""SFT throughput: several examples packed into each row, or one example a row, padded.

    python benchmarks/sft_packing.py [--epochs N] [--rounds N]

Data: the built-in world's 1,300 demonstrations (seed 0, cached in benchmarks/.cache/ with a
2048-token BPE tokenizer trained on its corpus), rendered with the chat template. Model:
recipes/small.yaml's GPT (llama flavour, 4 layers, d=192), freshly initialised (speed does not
depend on the weights). Each method trains for whole epochs with `sft_loss`, AdamW and
gradient clipping, as the loop does:

  packed        16 rows of 128 positions, examples packed end to end, block-diagonal
                attention (an explicit boolean mask to scaled_dot_product_attention)
  padded-16     16 examples a batch, each row right-padded to the longest of its batch; plain
                causal attention (no mask: causal attention never looks at the padding)
  padded-same   as many examples a batch as packing puts in 16 rows on average, so that every
                method takes about the same number of optimizer steps an epoch

Reported: seconds an epoch, real (non-padding) tokens per second, the share of computed
positions that are padding, optimizer steps an epoch. Rounds are interleaved and the best
round of each method is kept (the machine is noisy).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ.setdefault("LMFORGE_PROGRESS", "0")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from lmforge.data.sft import SFTLoader, read_examples  # noqa: E402
from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from lmforge.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer  # noqa: E402
from lmforge.train.sft import sft_loss  # noqa: E402

CACHE = Path(_HERE) / ".cache"


def world_data() -> tuple[Path, Tokenizer]:
    from lmforge.data.readers import iter_documents
    from lmforge.world.build import WorldConfig, build_world

    world = CACHE / "world-0"
    if not (world / "manifest.json").exists():
        build_world(WorldConfig(seed=0), world, overwrite=True)
    tok_dir = CACHE / "world-0-bpe2048"
    if not (tok_dir / "tokenizer.json").exists():
        train_tokenizer(iter_documents(str(world / "pretrain.jsonl")), TokenizerConfig(kind="bpe", vocab_size=2048)).save(tok_dir)
    return world / "sft.jsonl", Tokenizer.load(tok_dir)


def run_epochs(examples, tok, *, pack: bool, batch_size: int, epochs: int, seq_len: int = 128) -> dict:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(flavour="llama", vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loader = SFTLoader([examples], batch_size, seq_len, pack=pack, pad_id=tok.pad_id)
    objective = sft_loss()
    steps = loader.batches_per_epoch * epochs
    real = computed = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = next(loader)
        loss, _ = objective(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        real += int(batch["real"].sum())
        computed += batch["input_ids"].numel()
    seconds = time.perf_counter() - t0
    return {"s_per_epoch": seconds / epochs, "tokens_per_s": real / seconds, "padding": 1 - real / computed, "steps_per_epoch": loader.batches_per_epoch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    path, tok = world_data()
    examples, stats = read_examples(path, tok, max_len=129)
    rows = len(SFTLoader([examples], 16, 128, pack=True)._epoch_rows())
    same = round(len(examples) / rows * 16)
    methods = {"packed": dict(pack=True, batch_size=16), "padded-16": dict(pack=False, batch_size=16), f"padded-{same}": dict(pack=False, batch_size=same)}
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, kw in methods.items():
            r = run_epochs(examples, tok, epochs=args.epochs, **kw)
            if name not in best or r["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = r
    print(f"{stats['examples']} demonstrations, {stats['tokens']} tokens ({stats['tokens'] / stats['examples']:.1f} a demonstration); {torch.get_num_threads()} threads")
    print("| method | s / epoch | real tokens/s | padding | steps / epoch |")
    print("|---|---:|---:|---:|---:|")
    for name, r in best.items():
        print(f"| {name} | {r['s_per_epoch']:.2f} | {r['tokens_per_s']:,.0f} | {100 * r['padding']:.0f}% | {r['steps_per_epoch']} |")


if __name__ == "__main__":
    main()
