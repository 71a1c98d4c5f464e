"""Masked-language-model pretraining: BERT's objective (Devlin et al. 2019, section 3.1, "Task #1:
Masked LM"), for an encoder: the one `Transformer` with `causal=False`, every position attending to
every other.

In each window of the corpus 15% of the positions are selected; of those, 80% are replaced by
`<|mask|>`, 10% by a random token and 10% left as they are; the loss is the cross-entropy of the
original token at the selected positions only:

    L = -(1/|S|) sum_{i in S} log p(x_i | x~)       x~: the corrupted window, S: the selected positions

The random and unchanged 20% keep the model from learning that only `<|mask|>` positions matter, since
the mask never occurs when the encoder is used (BERT's appendix C.2 ablates the split). Special
tokens (the end-of-text between documents, padding) are never selected nor drawn as replacements.

A batch's masks come from a generator seeded by (seed, epoch, batch) of its data position, drawn
for the global batch, each rank taking its rows: a resumed run draws the same masks, and N ranks
under torchrun mask the positions one process with the global batch masks (tested). Each rank
averages the loss over its own masked positions, as BERT and Hugging Face do under data
parallelism, so the loss is the mean of the ranks' means (their counts differ a little). Held-out evaluation masks
the validation windows with a fixed seed: the same positions at every evaluation, so the curve
compares. It reports the masked tokens' loss and accuracy, and beside them the accuracy of always
guessing the training split's most frequent token (the unigram guess).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError

IGNORE = -100  # the label of a position that is not scored (F.cross_entropy's ignore_index)


@dataclass
class MLMConfig:
    probability: float = 0.15  # share of the (non-special) positions selected for prediction
    mask: float = 0.8  # of the selected: replaced by <|mask|>
    random: float = 0.1  # of the selected: replaced by a random token; the rest stay as they are

    def validate(self) -> None:
        if not 0.0 < self.probability < 1.0:
            raise ConfigError(f"must be between 0 and 1, got {self.probability}", field="mlm.probability")
        if self.mask < 0 or self.random < 0 or self.mask + self.random > 1.0:
            raise ConfigError(f"mask ({self.mask}) and random ({self.random}) must be >= 0 and sum to at most 1", field="mlm.mask")


def special_mask(vocab_size: int, special_ids: list[int]) -> torch.Tensor:
    """(vocab_size,) bool: True at the special tokens' ids."""
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[[i for i in special_ids if i < vocab_size]] = True
    return special


def mask_tokens(ids: torch.Tensor, cfg: MLMConfig, mask_id: int, special: torch.Tensor, generator: torch.Generator, *, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a batch of token ids (B, T): returns (inputs, labels), the labels the
    original ids at the selected positions and IGNORE elsewhere. The random draws are made for
    the global batch of world_size * B rows and this rank's rows taken. At least one position of
    the batch is selected (a loss over none is undefined)."""
    B, T = ids.shape
    rows = slice(rank * B, (rank + 1) * B)
    candidates = (~special).nonzero().squeeze(1)
    u = torch.rand((world_size * B, T), generator=generator)[rows]
    how = torch.rand((world_size * B, T), generator=generator)[rows]
    replacement = candidates[torch.randint(len(candidates), (world_size * B, T), generator=generator)[rows]]
    eligible = ~special[ids]
    selected = (u < cfg.probability) & eligible
    if not selected.any():
        if not eligible.any():
            raise InputError("a batch holds only special tokens: nothing to mask", field="data")
        selected.view(-1)[eligible.view(-1).nonzero()[0]] = True
    inputs = ids.clone()
    inputs[selected & (how < cfg.mask)] = mask_id
    swap = selected & (how >= cfg.mask) & (how < cfg.mask + cfg.random)
    inputs[swap] = replacement[swap]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return inputs, labels


class MaskedBatches:
    """A `BatchLoader` whose windows come masked: (inputs, labels), each (batch_size, seq_len). Its
    position, progress and saved state are the loader's, so the loop checkpoints and resumes it
    as it does the causal batches."""

    def __init__(self, loader, cfg: MLMConfig, mask_id: int, special: torch.Tensor, seed: int):
        self.loader, self.cfg, self.mask_id, self.special, self.seed = loader, cfg, mask_id, special, seed

    def __iter__(self) -> MaskedBatches:
        return self

    def __next__(self):
        position = [self.seed, self.loader.epoch, self.loader.batch]
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(position).generate_state(1)[0]))
        x, _ = next(self.loader)
        return mask_tokens(x, self.cfg, self.mask_id, self.special, g, rank=self.loader.rank, world_size=self.loader.world_size)

    @property
    def progress(self) -> float:
        return self.loader.progress

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


def mlm_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy of the original tokens at the selected positions (the equation above)."""
    inputs, labels = batch
    logits = model(inputs)
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE)
    return loss, {"tokens": inputs.numel()}


@torch.no_grad()
def evaluate_mlm(model, stream: np.ndarray, seq_len: int, batch_size: int, cfg: MLMConfig, mask_id: int, special: torch.Tensor, unigram_id: int, max_batches: int = 0, seed: int = 0) -> dict:
    """Held-out masked-token loss and accuracy over the windows of `stream` (the val split read in
    order; with `max_batches`, its first max_batches * batch_size windows), masked with a fixed
    seed; `unigram_accuracy`: how often the masked token is the training split's most frequent."""
    n_windows = len(stream) // seq_len
    if max_batches > 0:
        n_windows = min(n_windows, max_batches * batch_size)
    if n_windows == 0:
        raise InputError(f"the val split has {len(stream)} tokens: fewer than one window of {seq_len}", field="data.seq_len")
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    loss_sum, correct, unigram, n = 0.0, 0, 0, 0
    for lo in range(0, n_windows, batch_size):
        hi = min(lo + batch_size, n_windows)
        x = torch.from_numpy(np.asarray(stream[lo * seq_len : hi * seq_len], dtype=np.int64)).view(hi - lo, seq_len)
        inputs, labels = mask_tokens(x, cfg, mask_id, special, g)
        scored = labels != IGNORE
        logits = model(inputs.to(device))[scored.to(device)].float()
        target = labels[scored].to(device)
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(-1) == target).sum())
        unigram += int((target == unigram_id).sum())
        n += int(scored.sum())
    return {"loss": loss_sum / n, "accuracy": correct / n, "unigram_accuracy": unigram / n, "masked_tokens": n}
