"""n-gram language models: counts, maximum likelihood, add-k, and interpolated modified Kneser-Ney
as KenLM's lmplz builds it; ARPA and .npz files; perplexity as KenLM's query reports it; sampling.

Kneser-Ney follows Chen & Goodman (1998) in the form Heafield et al. (2013) implement in lmplz:

  - Every sentence is <s> w1 ... wn </s>. Highest-order n-grams keep raw counts; a lower-order
    n-gram gets its continuation count, the number of distinct words seen before it, except
    n-grams that begin with <s>, which cannot be extended to the left and keep raw counts.
  - Each order n has three discounts from its count-of-counts t1..t4 (of the adjusted counts):
    Y = t1 / (t1 + 2 t2), D1 = 1 - 2Y t2/t1, D2 = 2 - 3Y t3/t2, D3+ = 3 - 4Y t4/t3.
  - p(w | h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w | h'), gamma(h) = (D1 N1(h.) + D2 N2(h.)
    + D3+ N3+(h.)) / a(h.), where h' drops the first word of h; unigrams interpolate with the
    uniform distribution over the vocabulary (which counts <unk> and </s> but not <s>).
  - The model is written in ARPA format with log10 probabilities and backoff weights
    log10 gamma(h); <s> gets log10 probability 0, as lmplz writes it.

The count-based baselines (Chen & Goodman 1998, section 2.1) share the counting:
maximum likelihood p(w | h) = c(hw) / c(h), and add-k (Lidstone) p(w | h) = (c(hw) + k) /
(c(h) + k |V|), with c(h) = sum_w c(hw) and |V| the same vocabulary as above. h is the n - 1 words
before w, or fewer at the start of a sentence, where it begins with <s>. Neither backs off, so ARPA
cannot hold them; they are saved as .npz count tables (`save`, `load`).

Reading text follows KenLM to the byte:
  - lmplz splits words on space, tab, CR and NUL; query on space, tab, CR, vertical tab and form
    feed (`split_words`, `split_query_words`). Each line is a sentence.
  - A last line without a newline is an `OpenSentence`: lmplz counts its words but gives it no </s>,
    and query scores it without </s>. (query 0.3.0 then also leaves that line's log10 probability
    out of its total while counting its words as tokens, a bug; lmforge includes the scores.)
  - lmplz refuses <s>, </s> and <unk> as words of the training text, or with --skip_symbols treats
    them as whitespace; `estimate` does the same (`skip_symbols`). query scores such words as
    they come: <unk> is an OOV word, </s> is scored as the end of sentence and the sentence goes on,
    and <s> gets its unigram log10 probability 0 plus backoffs; `evaluate` does the same.

Querying follows KenLM: an unseen n-gram backs off, adding the backoff weights of the contexts
it passes; an out-of-vocabulary word is <unk>; perplexity counts </s> and OOV words as tokens,
and "excluding OOVs" drops only the OOV words' own scores.

Everything is vectorised over integer ids: an n-gram's id is its row in the sorted order-n
table, and the order-n table is keyed by (id of its first n-1 words) * |V| + last word, so one
`np.unique` per order counts, and one `np.searchsorted` per order looks up. No Python loop
touches individual n-grams; the only per-word Python work is mapping words to ids.

Departure from lmplz: its discount computation counts one lower-order n-gram per order by its
raw count (kenlm issues #405, #427); lmforge does not reproduce that bug, which moves
perplexity on some corpora by up to ~2%.
"""

from __future__ import annotations

import abc
import io
import math
import os
import sys
import warnings
import zipfile
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SMOOTHINGS = ("kn", "addk", "mle")
NPZ_FORMAT = "lmforge-ngram-1"


# --------------------------------------------------------------------------- reading text


# Words are interned: every occurrence of a word is then one shared string, which keeps a corpus
# read into lists five times smaller (10M words: 140 MB instead of 750 MB) at no cost in time.


def split_words(line: str) -> list[str]:
    """lmplz's tokenisation: words are separated by space, tab, carriage return and NUL."""
    return list(map(sys.intern, filter(None, line.replace("\t", " ").replace("\r", " ").replace("\0", " ").split(" "))))


def split_query_words(line: str) -> list[str]:
    """query's tokenisation: space, tab, carriage return, vertical tab and form feed (not NUL)."""
    return list(map(sys.intern, filter(None, line.replace("\t", " ").replace("\r", " ").replace("\v", " ").replace("\f", " ").split(" "))))


class OpenSentence(list):
    """The words of a last line that has no newline: lmplz and query give it no </s>."""


class Sentences(list):
    """Sentences read from a file, one a line; `path` lets errors name the file and line."""

    path: str | None = None


def read_sentences(path: str | os.PathLike, *, kenlm_last_line: bool = True, query: bool = False) -> Sentences:
    """Lines of a text file as sentences of words, split as lmplz does (as query does with `query`).

    With `kenlm_last_line` (the default) a final line without a newline becomes an `OpenSentence`,
    which `estimate` and `evaluate` give no </s>, as lmplz and query do; a final line of only
    spaces and no newline is no sentence at all. Without it, every line is a whole sentence.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path)
    data = path.read_bytes()
    if not data:
        raise InputError("file is empty", path=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 ({e.reason})", path=path, line=line) from None
    del data
    split = split_query_words if query else split_words
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    out = Sentences(split(x) for x in lines)
    if last:
        words = split(last)
        if kenlm_last_line and words:
            out.append(OpenSentence(words))
        elif not kenlm_last_line:
            out.append(words)
    out.path = str(path)
    return out


def _word_ids(sentences: Iterable[list[str]], index: dict[str, int], grow: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All words' ids in one flat array, each sentence's length, and which sentences are open.

    With `grow`, unseen words get the next id (the dict keeps insertion order, so `list(index)` is
    the vocabulary); without, they are <unk>.
    """
    flat, lengths, is_open = array("q"), array("q"), array("b")
    lookup = index.setdefault if grow else index.get
    for words in sentences:
        if grow:
            flat.extend([lookup(w, len(index)) for w in words])
        else:
            flat.extend([lookup(w, UNK_ID) for w in words])
        lengths.append(len(words))
        is_open.append(isinstance(words, OpenSentence))
    return np.frombuffer(flat, dtype=np.int64), np.frombuffer(lengths, dtype=np.int64), np.frombuffer(is_open, dtype=np.int8).astype(bool)


def _layout(ids: np.ndarray, lengths: np.ndarray, is_open: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ids <s> w1 .. wn </s> of all sentences end to end (no </s> after an open one), and
    the position of each token's sentence start."""
    size = lengths + 1 + (~is_open)  # tokens per sentence
    first = np.cumsum(size) - size  # position of each sentence's <s>
    tok = np.full(int(size.sum()), EOS_ID, dtype=np.int32)  # word ids: a vocabulary under 2^31 words
    tok[first] = BOS_ID
    word_first = np.cumsum(lengths) - lengths
    tok[np.repeat(first + 1 - word_first, lengths) + np.arange(len(ids))] = ids
    return tok, np.repeat(first, size)


def _perplexity(log10_total: float, n: int) -> float:
    """10^(-total / n), inf when a token had probability zero (or the power overflows)."""
    if n == 0:
        return float("nan")
    x = -log10_total / n
    return math.inf if x > 308 else 10.0**x


# --------------------------------------------------------------------------- models


@dataclass
class _Order:
    """One order of a backoff model (Kneser-Ney, or any ARPA file)."""

    keys: np.ndarray  # int64, sorted: prefix_id * V + last word (order 1: the word id)
    logp: np.ndarray  # float64 log10 p(w | h)
    backoff: np.ndarray  # float64 log10 gamma (0 where the n-gram is no context)


@dataclass
class _CountOrder:
    """One order of a count model (maximum likelihood, add-k)."""

    keys: np.ndarray  # int64, sorted, as in _Order
    counts: np.ndarray  # int64 c(n-gram)


class _NGramBase(abc.ABC):
    """What every n-gram model shares: the vocabulary, n-gram lookup by position, evaluation."""

    order: int
    vocab: list[str]
    orders: list

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @property
    def V(self) -> int:
        return len(self.vocab)

    @property
    def num_entries(self) -> int:
        """Stored n-grams of all orders (what an ARPA file's header adds up to): the model's size."""
        return sum(len(o.keys) for o in self.orders)

    # ------------------------------------------------------------------ lookup

    def _ids(self, tok: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
        """For each position t: the id of the k-gram ending at t in the order-k table (-1 if absent
        or crossing the sentence start), for k = 1..order."""
        out = []
        prev = None
        for k in range(1, self.order + 1):
            o = self.orders[k - 1]
            if k == 1:
                ids = tok.astype(np.int64)
            else:
                ids = np.full(len(tok), -1, dtype=np.int64)
                ok = np.zeros(len(tok), dtype=bool)
                ok[1:] = (prev[:-1] >= 0) & (np.arange(1, len(tok)) - (k - 1) >= starts[1:])
                idx = np.flatnonzero(ok)
                keys = prev[idx - 1] * self.V + tok[idx]
                pos = np.searchsorted(o.keys, keys)
                pos_c = np.minimum(pos, len(o.keys) - 1)
                hit = (pos < len(o.keys)) & (o.keys[pos_c] == keys)
                ids[idx[hit]] = pos_c[hit]
            out.append(ids)
            prev = ids
        return out

    def _context_id(self, h: list[int]) -> int:
        """Row of the n-gram h (word ids) in the order-len(h) table, or -1 if the model lacks it."""
        cid = h[0]
        for j in range(1, len(h)):
            keys = self.orders[j].keys
            key = cid * self.V + h[j]
            pos = int(np.searchsorted(keys, key))
            if pos == len(keys) or keys[pos] != key:
                return -1
            cid = pos
        return cid

    def _children(self, m: int, cid: int) -> slice:
        """Rows of the order-(m+1) table whose first m words are the order-m n-gram `cid`."""
        keys = self.orders[m].keys
        return slice(int(np.searchsorted(keys, cid * self.V)), int(np.searchsorted(keys, (cid + 1) * self.V)))

    def _context(self, context: list[str]) -> list[int]:
        return [self.index.get(w, UNK_ID) for w in context][-(self.order - 1) :] if self.order > 1 else []

    # ------------------------------------------------------------------ scoring

    @abc.abstractmethod
    def score_ids(self, tok: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log10 p of each target position t (tok[t] given the words before it in its sentence)."""

    @abc.abstractmethod
    def next_log10_probs_ids(self, context: list[int]) -> np.ndarray:
        """log10 p(w | context) for every word id w at once, shape (V,); <s> gets -inf."""

    def next_log10_probs(self, context: list[str]) -> np.ndarray:
        """log10 p(w | context) for every word of the vocabulary (indexed as `vocab`), shape (V,).

        Equals `prob(context, w)` for every w but <s>, which is never predicted and gets -inf here
        (scored as a word of the text, it gets KenLM's unigram log10 probability 0).
        """
        return self.next_log10_probs_ids([self.index.get(w, UNK_ID) for w in context])

    def prob(self, context: list[str], word: str) -> float:
        """p(word | context) (both strings; the context may start with <s>)."""
        tok = np.array(self._context(context) + [self.index.get(word, UNK_ID)], dtype=np.int64)
        starts = np.zeros(len(tok), dtype=np.int64)
        return 10 ** float(self.score_ids(tok, starts, np.array([len(tok) - 1]))[0])

    # ------------------------------------------------------------------ evaluation

    def encode_sentences(self, lines: Iterable[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of <s> w.. </s> for each sentence (no </s> for an `OpenSentence`), each
        position's sentence start, the positions to score (everything but the opening <s>), and
        which of those are OOV."""
        ids, lengths, is_open = _word_ids(lines, self.index, grow=False)
        tok, starts = _layout(ids, lengths, is_open)
        targets = np.flatnonzero(np.arange(len(tok)) != starts)
        return tok, starts, targets, tok[targets] == UNK_ID

    def evaluate(self, lines: Iterable[list[str]]) -> dict:
        """KenLM query's numbers: perplexity with and without OOVs, OOV count, tokens, log10 total.

        `zero_prob_tokens` counts tokens the model gives probability 0 (only maximum likelihood
        does): the perplexity is then infinite, which is the honest answer.
        """
        tok, starts, targets, oov = self.encode_sentences(lines)
        if len(targets) == 0:
            raise InputError("no text to score")
        logp = self.score_ids(tok, starts, targets)
        total = float(logp.sum())
        n = len(targets)
        n_oov = int(oov.sum())
        return {
            "perplexity": _perplexity(total, n),
            "perplexity_excluding_oov": _perplexity(float(logp[~oov].sum()), n - n_oov),
            "oov": n_oov,
            "tokens": n,
            "log10_prob": total,
            "zero_prob_tokens": int(np.isneginf(logp).sum()),
        }

    # ------------------------------------------------------------------ .npz

    @abc.abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The model's own arrays for its .npz file."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as an .npz of plain arrays (no pickle), atomically."""
        from ..io import atomic_write_bytes

        encoded = [w.encode("utf-8") for w in self.vocab]
        arrays = {
            "format": np.array(NPZ_FORMAT),
            "order": np.array(self.order),
            "vocab_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "vocab_ends": np.cumsum([len(b) for b in encoded], dtype=np.int64),
            **self._arrays(),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())


@dataclass
class NGramLM(_NGramBase):
    """A backoff model: interpolated modified Kneser-Ney from `estimate`, or any ARPA file."""

    order: int
    vocab: list[str]
    orders: list[_Order] = field(default_factory=list)  # orders[k-1] is order k
    smoothing = "kn"

    def score_ids(self, tok: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        ids = self._ids(tok, starts)
        t = targets
        logp = np.zeros(len(t))
        found = np.zeros(len(t), dtype=bool)
        # the longest n-gram in the model ending at t gives the probability
        for k in range(self.order, 0, -1):
            idk = ids[k - 1][t]
            hit = (idk >= 0) & ~found
            logp[hit] += self.orders[k - 1].logp[idk[hit]]
            # an absent k-gram backs off through its context (the (k-1)-gram ending at t-1)
            miss = (idk < 0) & ~found
            if k > 1:
                ctx = ids[k - 2][t - 1]
                add = miss & (ctx >= 0) & (t - 1 - (k - 2) >= starts[t])
                logp[add] += self.orders[k - 2].backoff[ctx[add]]
            found |= hit
        return logp

    def next_log10_probs_ids(self, context: list[int]) -> np.ndarray:
        """KenLM's backoff recursion for all words at once: start from the unigram column; for each
        longer context that the model has, the words with an n-gram after it take that n-gram's
        probability and the rest add the context's backoff weight."""
        h = list(context)[-(self.order - 1) :] if self.order > 1 else []
        dist = self.orders[0].logp.copy()
        for m in range(1, len(h) + 1):
            cid = self._context_id(h[-m:])
            if cid < 0:
                continue
            rows = self._children(m, cid)
            dist += self.orders[m - 1].backoff[cid]
            dist[self.orders[m].keys[rows] % self.V] = self.orders[m].logp[rows]
        dist[BOS_ID] = -np.inf
        return dist

    # ------------------------------------------------------------------ files

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"smoothing": np.array("kn")}
        for k, o in enumerate(self.orders, 1):
            out |= {f"keys_{k}": o.keys, f"logp_{k}": o.logp, f"backoff_{k}": o.backoff}
        return out

    def words_of(self, k: int) -> np.ndarray:
        """(m_k, k) word ids of every n-gram of order k, in table order."""
        rows = np.arange(self.V, dtype=np.int64)[:, None]
        for j in range(2, k + 1):
            keys = self.orders[j - 1].keys
            rows = np.column_stack([rows[keys // self.V], keys % self.V])
        return rows

    def write_arpa(self, path: str | os.PathLike) -> None:
        from ..io import atomic_write_text

        vocab = np.array(self.vocab, dtype=object)
        parts = ["", "\\data\\"]
        parts += [f"ngram {k}={len(self.orders[k - 1].keys)}" for k in range(1, self.order + 1)]
        for k in range(1, self.order + 1):
            o = self.orders[k - 1]
            parts += ["", f"\\{k}-grams:"]
            words = self.words_of(k)
            text = [" ".join(r) for r in vocab[words]]
            for i, t in enumerate(text):
                lp = "0" if (k == 1 and words[i, 0] == BOS_ID) else f"{o.logp[i]:.7g}"
                if k < self.order:
                    parts.append(f"{lp}\t{t}\t{o.backoff[i]:.7g}")
                else:
                    parts.append(f"{lp}\t{t}")
        parts += ["", "\\end\\", ""]
        atomic_write_text(path, "\n".join(parts))

    @classmethod
    def read_arpa(cls, path: str | os.PathLike) -> NGramLM:
        path = Path(path)
        if not path.exists():
            raise InputError("ARPA file not found", path=path)
        counts: dict[int, int] = {}
        sections: dict[int, list[tuple[int, list[str], float, float]]] = {}
        cur = None
        with open(path, encoding="utf-8", errors="strict") as f:
            try:
                for lineno, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    if line.startswith("ngram ") and cur is None:
                        k, n = line[6:].split("=")
                        counts[int(k)] = int(n)
                    elif line.startswith("\\") and line.endswith("-grams:"):
                        cur = int(line[1:].split("-")[0])
                        sections[cur] = []
                    elif line in ("\\data\\", "\\end\\"):
                        continue
                    elif cur is not None:
                        parts = line.split("\t")
                        if len(parts) < 2:
                            parts = line.split()
                            parts = [parts[0], " ".join(parts[1 : 1 + cur])] + parts[1 + cur :]
                        words = parts[1].split(" ")
                        if len(words) != cur:
                            raise InputError(f"expected {cur} words, got {len(words)}", path=path, line=lineno)
                        sections[cur].append((lineno, words, float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0))
            except UnicodeDecodeError as e:
                raise InputError(f"not valid UTF-8 ({e.reason})", path=path) from None
            except ValueError as e:
                raise InputError(f"malformed ARPA line: {e}", path=path, line=lineno) from None
        if not sections or 1 not in sections:
            raise InputError("not an ARPA file (no \\1-grams: section)", path=path)
        for k, n in counts.items():
            if len(sections.get(k, [])) != n:
                raise InputError(f"header says {n} {k}-grams, the file has {len(sections.get(k, []))}", path=path)
        order = max(sections)
        vocab = [UNK, BOS, EOS] + [w[0] for _, w, _, _ in sections[1] if w[0] not in (UNK, BOS, EOS)]
        lm = cls(order, vocab)
        V = lm.V
        for k in range(1, order + 1):
            rows = sections[k]
            if k == 1:
                keys = np.array([lm.index[w[0]] for _, w, _, _ in rows], dtype=np.int64)
                logp = np.full(V, -99.0)  # a special word the file leaves out is never predicted
                backoff = np.zeros(V)
                logp[keys] = [p for _, _, p, _ in rows]
                backoff[keys] = [b for _, _, _, b in rows]
                lm.orders.append(_Order(np.arange(V, dtype=np.int64), logp, backoff))
                continue
            ids = np.array([[lm.index.get(x, -1) for x in w] for _, w, _, _ in rows], dtype=np.int64).reshape(len(rows), k)
            if (ids < 0).any():
                bad = rows[int(np.flatnonzero((ids < 0).any(1))[0])]
                raise InputError("n-gram has a word missing from the unigrams", path=path, line=bad[0])
            # prefix id: look the (k-1)-word prefix up in the order k-1 table
            pid = ids[:, 0]
            for j in range(2, k):
                pkeys = pid * V + ids[:, j - 1]
                tab = lm.orders[j - 1].keys
                pos = np.searchsorted(tab, pkeys)
                if (pos >= len(tab)).any() or (tab[np.minimum(pos, len(tab) - 1)] != pkeys).any():
                    raise InputError(f"a {k}-gram's prefix is missing from the {j}-grams", path=path)
                pid = pos
            keys = pid * V + ids[:, -1]
            order_idx = np.argsort(keys, kind="stable")
            lm.orders.append(_Order(keys[order_idx], np.array([p for _, _, p, _ in rows])[order_idx], np.array([b for _, _, _, b in rows])[order_idx]))
        return lm


@dataclass
class CountLM(_NGramBase):
    """Maximum likelihood (`smoothing="mle"`) or add-k (`"addk"`) from raw n-gram counts.

    p(w | h) = (c(hw) + k) / (c(h) + k |V|), with k = 0 for maximum likelihood (Chen & Goodman
    1998, section 2.1). |V| counts <unk> and </s> but not <s>, as for Kneser-Ney; c(h) = sum_w c(hw).
    An unseen context gets add-k's uniform 1/|V|, and probability 0 under maximum likelihood.
    """

    order: int
    vocab: list[str]
    orders: list[_CountOrder] = field(default_factory=list)
    smoothing: str = "addk"
    k: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        # c(h) for every context h of length j = 0..order-1: how often h is followed by a word
        self.context_totals = [np.array([float(self.orders[0].counts.sum())])]
        for j in range(1, self.order):
            child = self.orders[j]
            self.context_totals.append(np.bincount(child.keys // self.V, weights=child.counts, minlength=len(self.orders[j - 1].keys)))

    @property
    def _k(self) -> float:
        return self.k if self.smoothing == "addk" else 0.0

    def _log10p(self, c: np.ndarray, ch: np.ndarray) -> np.ndarray:
        """log10 (c(hw) + k) / (c(h) + k |V|); -inf where c(hw) + k = 0 (an unseen event under MLE)."""
        k = self._k
        ok = c + k > 0
        out = np.full(len(c), -np.inf)
        out[ok] = np.log10((c[ok] + k) / (ch[ok] + k * (self.V - 1)))
        return out

    def score_ids(self, tok: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        ids = self._ids(tok, starts)
        t = targets
        # the n-gram scored at t: the last `order` words, fewer at the start of a sentence
        span = np.minimum(self.order, t - starts[t] + 1)
        c = np.zeros(len(t))
        ch = np.zeros(len(t))
        for k in range(1, self.order + 1):
            sel = np.flatnonzero(span == k)
            idk = ids[k - 1][t[sel]]
            c[sel] = np.where(idk >= 0, self.orders[k - 1].counts[np.maximum(idk, 0)], 0)
            if k == 1:
                ch[sel] = self.context_totals[0][0]
            else:
                ctx = ids[k - 2][t[sel] - 1]
                ch[sel] = np.where(ctx >= 0, self.context_totals[k - 1][np.maximum(ctx, 0)], 0.0)
        return self._log10p(c, ch)

    def next_log10_probs_ids(self, context: list[int]) -> np.ndarray:
        """c(hw) for the words seen after h (one slice of the sorted table), the formula's floor
        k / (c(h) + k|V|) for the rest."""
        h = list(context)[-(self.order - 1) :] if self.order > 1 else []
        c = np.zeros(self.V)
        ch = 0.0
        cid = self._context_id(h) if h else 0
        if cid >= 0:
            if h:
                rows = self._children(len(h), cid)
                c[self.orders[len(h)].keys[rows] % self.V] = self.orders[len(h)].counts[rows]
            else:
                c[:] = self.orders[0].counts
            ch = self.context_totals[len(h)][cid]
        dist = self._log10p(c, np.full(self.V, ch))
        dist[BOS_ID] = -np.inf
        return dist

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"smoothing": np.array(self.smoothing), "k": np.array(float(self.k))}
        for k, o in enumerate(self.orders, 1):
            out |= {f"keys_{k}": o.keys, f"counts_{k}": o.counts}
        return out

    def write_arpa(self, path: str | os.PathLike) -> None:
        raise InputError(
            f"a {'maximum likelihood' if self.smoothing == 'mle' else 'add-k'} model cannot be written as ARPA "
            "(it does not back off, so ARPA cannot hold its probabilities); save it as .npz",
            path=path,
        )


def load(path: str | os.PathLike) -> NGramLM | CountLM:
    """A model from an .npz written by `save` (any smoothing) or an ARPA file (lmforge's or KenLM's)."""
    path = Path(path)
    if not path.exists():
        raise InputError("model file not found", path=path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return NGramLM.read_arpa(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"not a readable .npz model ({e})", path=path) from None
    if str(a.get("format", "")) != NPZ_FORMAT:
        raise InputError(f"not an lmforge n-gram model (expected format {NPZ_FORMAT!r})", path=path)
    try:
        order, smoothing = int(a["order"]), str(a["smoothing"])
        blob, ends = a["vocab_bytes"].tobytes(), a["vocab_ends"]
        vocab = [blob[s:e].decode("utf-8") for s, e in zip(np.concatenate([[0], ends[:-1]]), ends)]
        if smoothing == "kn":
            orders = [_Order(a[f"keys_{k}"], a[f"logp_{k}"], a[f"backoff_{k}"]) for k in range(1, order + 1)]
        elif smoothing in ("mle", "addk"):
            orders = [_CountOrder(a[f"keys_{k}"], a[f"counts_{k}"]) for k in range(1, order + 1)]
        else:
            raise InputError(f"unknown smoothing {smoothing!r}", path=path)
    except KeyError as e:
        raise InputError(f"model file lacks the array {e}", path=path) from None
    V, prev = len(vocab), len(vocab)
    for k, o in enumerate(orders, 1):
        rows = {x.shape for x in vars(o).values()}
        keys = o.keys
        if (
            len(rows) != 1
            or keys.ndim != 1
            or keys.dtype.kind not in "iu"
            or (k == 1 and not np.array_equal(keys, np.arange(V)))
            or (len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= prev * V))
        ):
            raise InputError(f"model file's {k}-gram table is inconsistent", path=path)
        prev = len(o.keys)
    if smoothing == "kn":
        return NGramLM(order, vocab, orders)
    return CountLM(order, vocab, orders, smoothing, float(a["k"]))


# --------------------------------------------------------------------------- estimation


FALLBACK = (0.5, 1.0, 1.5)  # lmplz --discount_fallback's default


def discounts(adjusted: np.ndarray, order: int, fallback: tuple[float, float, float] | None = None) -> tuple[float, float, float]:
    """(D1, D2, D3+) from the count-of-counts of one order's adjusted counts (Chen & Goodman).

    Where a count-of-count is zero the formula is undefined: lmplz stops unless given
    --discount_fallback, and so does this, unless given `fallback`.
    """
    t = [int((adjusted == i).sum()) for i in (1, 2, 3, 4)]
    problem = None
    if min(t[:3]) == 0:  # t4 may be zero: D3+ is then 3 (lmplz checks t1..t3 only)
        problem = f"count-of-counts t1..t4 = {t} (a zero among t1..t3 makes a discount undefined)"
    else:
        # Chen & Goodman eq. 26, in single precision as lmplz computes it (adjust_counts.cc)
        f = np.float32
        y = f(t[0]) / f(f(t[0]) + f(2.0) * f(t[1]))
        ds = tuple(float(f(j) - f(j + 1) * y * f(t[j]) / f(t[j - 1])) for j in (1, 2, 3))
        bad = [j for j, dj in zip((1, 2, 3), ds) if not 0.0 <= dj <= j]
        if not bad:
            return ds
        problem = f"discount D{bad[0]} = {ds[bad[0] - 1]:.4g} is out of range [0, {bad[0]}]"
    if fallback is not None:
        return fallback
    raise InputError(
        f"the corpus is too small or too odd for Kneser-Ney discounts at order {order}: {problem}; "
        "use more text, a lower order, or --discount-fallback",
        field="order",
    )


def _discount(a: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    return np.select([a == 0, a == 1, a == 2], [0.0, d[0], d[1]], d[2])


def _training_tokens(sentences: Iterable[list[str]], skip_symbols: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The vocabulary (<unk> <s> </s> first, then words as met), token ids, and each token's
    position in its sentence (0 for <s>).

    lmplz refuses <s>, </s> and <unk> as words of the training text (corpus_count.cc), or with
    --skip_symbols reads them as whitespace; so does this.
    """
    index = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
    ids, lengths, is_open = _word_ids(sentences, index, grow=True)
    vocab = list(index)
    special = ids < 3
    if special.any():
        sentence_of = np.repeat(np.arange(len(lengths)), lengths)[special]
        if not skip_symbols:
            j = int(np.flatnonzero(special)[0])
            s = int(sentence_of[0])
            path = getattr(sentences, "path", None)
            where = "" if path else f" (sentence {s + 1})"
            raise InputError(
                f"special word {vocab[ids[j]]} is not allowed in the training text{where}, as in lmplz; "
                "pass skip_symbols (--skip-symbols) to read <s>, </s> and <unk> as whitespace",
                path=path,
                line=s + 1 if path else None,
            )
        n = int(special.sum())
        warnings.warn(f"{n} occurrence{'s' if n > 1 else ''} of <s>, </s> or <unk> in the text read as whitespace (skip_symbols)", stacklevel=3)
        ids = ids[~special]
        lengths = lengths - np.bincount(sentence_of, minlength=len(lengths))
    tok, starts = _layout(ids, lengths, is_open)
    return vocab, tok, (np.arange(len(tok)) - starts).astype(np.int32)


@dataclass
class _Counts:
    """Every n-gram of orders 1..N in the training text, with what Kneser-Ney needs besides."""

    keys: list[np.ndarray]  # order k: sorted prefix_id * V + last word (order 1: arange(V))
    raw: list[np.ndarray]  # order k: how often each n-gram occurs (<s> itself is never counted)
    suffix: list[np.ndarray]  # order k: row of each n-gram's last k-1 words in the order k-1 table
    bos_initial: list[np.ndarray]  # order k: whether the n-gram begins with <s>


def _unique(keys: np.ndarray, row: type) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(keys, return_index=True, return_inverse=True, return_counts=True), with the inverse
    in `row` (int32 where it fits): a third less time and memory than np.unique on 10M keys."""
    perm = np.argsort(keys, kind="stable")
    sorted_keys = keys[perm]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    begin = np.flatnonzero(new)
    inverse = np.empty(len(keys), dtype=row)
    inverse[perm] = np.cumsum(new) - 1
    return sorted_keys[begin], perm[begin], inverse, np.diff(begin, append=len(keys))


def _count(tok: np.ndarray, offset: np.ndarray, V: int, order: int) -> _Counts:
    """One np.unique per order over the keys of the n-grams ending at each position.

    tok: (T,) int32 word ids; offset: (T,) int32 position in the sentence (0 for <s>).
    """
    counted = offset != 0  # <s> itself is context, never a counted event
    c = _Counts([np.arange(V, dtype=np.int64)], [np.bincount(tok[counted], minlength=V).astype(np.int64)], [np.zeros(0, dtype=np.int64)], [np.arange(V) == BOS_ID])
    del counted
    row = np.int32 if len(tok) < 2**31 else np.int64
    prev = tok.astype(row)  # (T,) row of the (k-1)-gram ending at each position; for k-1 = 1 the word
    for k in range(2, order + 1):
        t_valid = np.flatnonzero(offset >= k - 1)  # where a k-gram ends without crossing <s>
        keys = prev[t_valid - 1].astype(np.int64) * V + tok[t_valid]
        uniq, first, inverse, counts = _unique(keys, row)
        del keys
        t_first = t_valid[first]
        c.keys.append(uniq)
        c.raw.append(counts.astype(np.int64))
        c.suffix.append(prev[t_first].astype(np.int64))  # the (k-1)-gram ending at the same position
        c.bos_initial.append(tok[t_first - (k - 1)] == BOS_ID)
        prev = np.full(len(tok), -1, dtype=row)
        prev[t_valid] = inverse
        del inverse, t_valid
    return c


def _kneser_ney(c: _Counts, vocab: list[str], order: int, discount_fallback) -> NGramLM:
    """Interpolated modified Kneser-Ney from the counts, as lmplz computes it (Heafield et al. 2013)."""
    V = len(vocab)
    # adjusted counts: raw at the highest order and for <s>-initial n-grams, else continuation counts
    adjusted: list[np.ndarray] = []
    for k in range(1, order + 1):
        if k == order:
            a = c.raw[k - 1].copy()
        else:
            a = np.bincount(c.suffix[k], minlength=len(c.keys[k - 1])).astype(np.int64)
            a[c.bos_initial[k - 1]] = c.raw[k - 1][c.bos_initial[k - 1]]
        if k == 1:
            a[BOS_ID] = 0
        adjusted.append(a)

    # unigrams: interpolated with the uniform distribution over |V| - 1 words (no <s>)
    a1 = adjusted[0]
    d = discounts(a1[a1 > 0], 1, discount_fallback)
    total = a1.sum()
    gamma0 = (d[0] * (a1 == 1).sum() + d[1] * (a1 == 2).sum() + d[2] * (a1 >= 3).sum()) / total
    p1 = (a1 - _discount(a1, d)) / total + gamma0 / (V - 1)
    probs = [p1]
    backoffs = [np.zeros(V)]
    for k in range(2, order + 1):
        a = adjusted[k - 1]
        pid = c.keys[k - 1] // V
        d = discounts(a, k, discount_fallback)
        m_prev = len(c.keys[k - 2])
        denom = np.bincount(pid, weights=a, minlength=m_prev)
        n1 = np.bincount(pid, weights=(a == 1), minlength=m_prev)
        n2 = np.bincount(pid, weights=(a == 2), minlength=m_prev)
        n3 = np.bincount(pid, weights=(a >= 3), minlength=m_prev)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(denom > 0, (d[0] * n1 + d[1] * n2 + d[2] * n3) / denom, 1.0)
        p = (a - _discount(a, d)) / denom[pid] + gamma[pid] * probs[k - 2][c.suffix[k - 1]]
        probs.append(p)
        backoffs[k - 2] = np.where(denom > 0, np.log10(np.where(denom > 0, gamma, 1.0)), 0.0)
        backoffs.append(np.zeros(len(c.keys[k - 1])))
    lm = NGramLM(order, vocab)
    for k in range(1, order + 1):
        with np.errstate(divide="ignore"):
            logp = np.log10(probs[k - 1])
        if k == 1:
            logp[BOS_ID] = 0.0  # as lmplz writes it; query scores a literal <s> with it
        lm.orders.append(_Order(c.keys[k - 1], logp, backoffs[k - 1]))
    return lm


def estimate(
    sentences: Iterable[list[str]],
    order: int,
    *,
    smoothing: str = "kn",
    k: float = 1.0,
    discount_fallback: tuple[float, float, float] | None = None,
    skip_symbols: bool = False,
) -> NGramLM | CountLM:
    """An n-gram model of `order` from sentences of words.

    smoothing: "kn" interpolated modified Kneser-Ney as lmplz computes it (an `NGramLM`, writable as
    ARPA); "addk" add-k with `k`; "mle" maximum likelihood (both a `CountLM`, saved as .npz).
    discount_fallback: Kneser-Ney discounts to use where the count-of-counts leave them undefined
    (lmplz's --discount_fallback; `FALLBACK` is its default); without it that is an error.
    skip_symbols: read <s>, </s> and <unk> in the text as whitespace, as lmplz --skip_symbols does;
    without it they are an error, as in lmplz. An `OpenSentence` gets no </s>.
    """
    if order < 1:
        raise InputError(f"order must be at least 1, got {order}", field="order")
    if smoothing not in SMOOTHINGS:
        raise InputError(f"unknown smoothing {smoothing!r} (choose from {', '.join(SMOOTHINGS)})", field="smoothing")
    if smoothing == "addk" and not (k > 0 and math.isfinite(k)):
        raise InputError(f"k must be a positive number, got {k}", field="k")
    vocab, tok, offset = _training_tokens(sentences, skip_symbols)
    if not offset.any():
        raise InputError("no words to count (the text is empty)")
    c = _count(tok, offset, len(vocab), order)
    del tok, offset
    if smoothing == "kn":
        return _kneser_ney(c, vocab, order, discount_fallback)
    return CountLM(order, vocab, [_CountOrder(kk, r) for kk, r in zip(c.keys, c.raw)], smoothing, float(k))


def perplexity_of(lm: NGramLM | CountLM, path: str | os.PathLike) -> dict:
    """`evaluate` on a text file read as KenLM's query reads it."""
    return lm.evaluate(read_sentences(path, query=True))


# --------------------------------------------------------------------------- sampling


def sample(lm: NGramLM | CountLM, rng: np.random.Generator, max_words: int = 50, context: list[str] | None = None) -> list[str]:
    """Draw a sentence word by word from the model (the "price of gold per ton" demonstration).

    Each step takes the whole next-word distribution at once (`next_log10_probs_ids`) and draws
    from it without <s> and <unk>, renormalised; the sentence ends at </s> or after `max_words`.
    """
    words = list(context or [])
    hist = [BOS_ID] + [lm.index.get(w, UNK_ID) for w in words]
    keep = np.ones(lm.V, dtype=bool)
    keep[[BOS_ID, UNK_ID]] = False
    candidates = np.flatnonzero(keep)
    out: list[str] = []
    for _ in range(max_words):
        p = 10.0 ** lm.next_log10_probs_ids(hist)[candidates]
        total = p.sum()
        if not total > 0:
            raise InputError(f"the model gives no word any probability after {' '.join([BOS] + words + out)!r} (a maximum likelihood model that never saw this context)")
        i = int(rng.choice(candidates, p=p / total))
        if i == EOS_ID:
            break
        hist.append(i)
        out.append(lm.vocab[i])
    return out
