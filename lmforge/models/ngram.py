"""n-gram language models with interpolated modified Kneser-Ney smoothing, as KenLM's lmplz builds them.

Estimation follows Chen & Goodman (1998) in the form Heafield et al. (2013) implement in lmplz:

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

Querying follows KenLM: an unseen n-gram backs off, adding the backoff weights of the contexts
it passes; an out-of-vocabulary word is <unk>; perplexity counts </s> and OOV words as tokens,
and "excluding OOVs" drops only the OOV words' own scores.

Everything is vectorised over integer ids: an n-gram's id is its row in the sorted order-n
table, and the order-n table is keyed by (id of its first n-1 words) * |V| + last word, so one
`np.unique` per order counts, and one `np.searchsorted` per order looks up. No Python loop
touches individual n-grams.

Departure from lmplz: its discount computation counts one lower-order n-gram per order by its
raw count (kenlm issues #405, #427); lmforge does not reproduce that bug, which moves
perplexity on some corpora by up to ~2%.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


def split_words(line: str) -> list[str]:
    """KenLM's tokenisation: words are separated by space, tab, carriage return and NUL."""
    return [w for w in line.replace("\t", " ").replace("\r", " ").replace("\0", " ").split(" ") if w]


@dataclass
class _Order:
    keys: np.ndarray  # int64, sorted: prefix_id * V + last word (order 1: the word id)
    logp: np.ndarray  # float64 log10 p(w | h)
    backoff: np.ndarray  # float64 log10 gamma (0 where the n-gram is no context)


@dataclass
class NGramLM:
    order: int
    vocab: list[str]
    orders: list[_Order] = field(default_factory=list)  # orders[k-1] is order k

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @property
    def V(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ lookup

    def _ids(self, positions_tokens: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
        """For each position t: the id of the k-gram ending at t in the order-k table (-1 if absent
        or crossing the sentence start), for k = 1..order."""
        tok = positions_tokens
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
                keys = prev[np.flatnonzero(ok) - 1] * self.V + tok[ok]
                pos = np.searchsorted(o.keys, keys)
                pos_c = np.minimum(pos, len(o.keys) - 1)
                hit = (pos < len(o.keys)) & (o.keys[pos_c] == keys)
                idx = np.flatnonzero(ok)
                ids[idx[hit]] = pos_c[hit]
            out.append(ids)
            prev = ids
        return out

    def score_ids(self, tok: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log10 p of each target position t (tok[t] given the words before it in its sentence)."""
        ids = self._ids(tok, starts)
        n = self.order
        t = targets
        logp = np.zeros(len(t))
        found = np.zeros(len(t), dtype=bool)
        # the longest n-gram in the model ending at t gives the probability
        for k in range(n, 0, -1):
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

    # ------------------------------------------------------------------ evaluation

    def encode_sentences(self, lines: Iterable[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of <s> w.. </s> for each sentence, each position's sentence start, the positions
        to score (everything but <s>), and which of those are OOV."""
        tok, starts = [], []
        for words in lines:
            s = len(tok)
            tok.append(BOS_ID)
            tok.extend(self.index.get(w, UNK_ID) for w in words)
            tok.append(EOS_ID)
            starts.extend([s] * (len(words) + 2))
        tok_a = np.array(tok, dtype=np.int64)
        starts_a = np.array(starts, dtype=np.int64)
        targets = np.flatnonzero(np.arange(len(tok_a)) != starts_a)
        return tok_a, starts_a, targets, tok_a[targets] == UNK_ID

    def evaluate(self, lines: Iterable[list[str]]) -> dict:
        """KenLM query's numbers: perplexity with and without OOVs, OOV count, tokens."""
        tok, starts, targets, oov = self.encode_sentences(lines)
        if len(targets) == 0:
            raise InputError("no text to score")
        logp = self.score_ids(tok, starts, targets)
        total = float(logp.sum())
        n = len(targets)
        n_in = n - int(oov.sum())
        return {
            "perplexity": 10 ** (-total / n),
            "perplexity_excluding_oov": 10 ** (-float(logp[~oov].sum()) / n_in) if n_in else float("nan"),
            "oov": int(oov.sum()),
            "tokens": n,
            "log10_prob": total,
        }

    def prob(self, context: list[str], word: str) -> float:
        """p(word | context) (both strings; the context may start with <s>)."""
        ctx = [self.index.get(w, UNK_ID) for w in context][-(self.order - 1) :] if self.order > 1 else []
        tok = np.array(ctx + [self.index.get(word, UNK_ID)], dtype=np.int64)
        starts = np.zeros(len(tok), dtype=np.int64)
        return 10 ** float(self.score_ids(tok, starts, np.array([len(tok) - 1]))[0])

    # ------------------------------------------------------------------ ARPA

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
    def read_arpa(cls, path: str | os.PathLike) -> "NGramLM":
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
                logp = np.full(V, -99.0)
                backoff = np.zeros(V)
                logp[keys] = [p for _, _, p, _ in rows]
                backoff[keys] = [b for _, _, _, b in rows]
                logp[BOS_ID] = -99.0  # <s> is never predicted
                lm.orders.append(_Order(np.arange(V, dtype=np.int64), logp, backoff))
                continue
            ids = np.array([[lm.index.get(x, -1) for x in w] for _, w, _, _ in rows], dtype=np.int64)
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


def estimate(sentences: Iterable[list[str]], order: int, *, discount_fallback: tuple[float, float, float] | None = None) -> NGramLM:
    """Interpolated modified Kneser-Ney, lmplz's way, from sentences of words."""
    if order < 1:
        raise InputError(f"order must be at least 1, got {order}", field="order")
    vocab = [UNK, BOS, EOS]
    index = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
    tok: list[int] = []
    starts: list[int] = []
    for words in sentences:
        s = len(tok)
        tok.append(BOS_ID)
        for w in words:
            i = index.get(w)
            if i is None:
                i = index[w] = len(vocab)
                vocab.append(w)
            tok.append(i)
        tok.append(EOS_ID)
        starts.extend([s] * (len(words) + 2))
    if not tok:
        raise InputError("no sentences to count")
    lm = NGramLM(order, vocab)
    V = lm.V
    tok_a = np.array(tok, dtype=np.int64)
    starts_a = np.array(starts, dtype=np.int64)
    pos = np.arange(len(tok_a))
    counted = pos != starts_a  # <s> itself is context, never a counted event

    # ids[k-1][t]: id of the k-gram ending at t (-1 if it would cross the sentence start)
    ids: list[np.ndarray] = [np.where(counted | (tok_a == BOS_ID), tok_a, -1)]
    raw: list[np.ndarray] = [np.bincount(tok_a[counted], minlength=V).astype(np.int64)]
    keys_by_order: list[np.ndarray] = [np.arange(V, dtype=np.int64)]
    suffix: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]  # order k: id of each n-gram's last k-1 words
    bos_initial: list[np.ndarray] = [np.arange(V) == BOS_ID]
    for k in range(2, order + 1):
        valid = np.zeros(len(tok_a), dtype=bool)
        valid[1:] = (pos[1:] - (k - 1) >= starts_a[1:]) & (ids[-1][:-1] >= 0)
        t_valid = np.flatnonzero(valid)
        keys = ids[-1][t_valid - 1] * V + tok_a[t_valid]
        uniq, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        idk = np.full(len(tok_a), -1, dtype=np.int64)
        idk[t_valid] = inverse
        ids.append(idk)
        raw.append(counts.astype(np.int64))
        keys_by_order.append(uniq)
        t_first = t_valid[first]
        suffix.append(ids[k - 2][t_first])  # the (k-1)-gram ending at the same position
        bos_initial.append(tok_a[t_first - (k - 1)] == BOS_ID)

    # adjusted counts: raw at the highest order and for <s>-initial n-grams, else continuation counts
    adjusted: list[np.ndarray] = []
    for k in range(1, order + 1):
        if k == order:
            a = raw[k - 1].copy()
        else:
            a = np.bincount(suffix[k], minlength=len(keys_by_order[k - 1])).astype(np.int64)
            a[bos_initial[k - 1]] = raw[k - 1][bos_initial[k - 1]]
        if k == 1:
            a[BOS_ID] = 0
        adjusted.append(a)

    # unigrams: interpolated with the uniform distribution over |V| - 1 words (no <s>)
    a1 = adjusted[0]
    d = discounts(a1[a1 > 0], 1, discount_fallback)
    total = a1.sum()
    gamma0 = (d[0] * (a1 == 1).sum() + d[1] * (a1 == 2).sum() + d[2] * (a1 >= 3).sum()) / total
    p1 = (a1 - _discount(a1, d)) / total + gamma0 / (V - 1)
    p1[BOS_ID] = 0.0
    probs = [p1]
    backoffs = [np.zeros(V)]
    for k in range(2, order + 1):
        a = adjusted[k - 1]
        keys = keys_by_order[k - 1]
        pid = keys // V
        d = discounts(a, k, discount_fallback)
        m_prev = len(keys_by_order[k - 2])
        denom = np.bincount(pid, weights=a, minlength=m_prev)
        n1 = np.bincount(pid, weights=(a == 1), minlength=m_prev)
        n2 = np.bincount(pid, weights=(a == 2), minlength=m_prev)
        n3 = np.bincount(pid, weights=(a >= 3), minlength=m_prev)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(denom > 0, (d[0] * n1 + d[1] * n2 + d[2] * n3) / denom, 1.0)
        p = (a - _discount(a, d)) / denom[pid] + gamma[pid] * probs[k - 2][suffix[k - 1]]
        probs.append(p)
        backoffs[k - 2] = np.where(denom > 0, np.log10(np.where(denom > 0, gamma, 1.0)), 0.0)
        backoffs.append(np.zeros(len(keys)))
    for k in range(1, order + 1):
        with np.errstate(divide="ignore"):
            logp = np.log10(probs[k - 1])
        if k == 1:
            logp[BOS_ID] = -99.0
        lm.orders.append(_Order(keys_by_order[k - 1], logp, backoffs[k - 1]))
    return lm


def read_sentences(path: str | os.PathLike, *, kenlm_last_line: bool = True) -> list[list[str]]:
    """Lines of a text file as sentences of words (KenLM's splitting).

    With `kenlm_last_line`, a final line without a newline is read as lmplz reads it (see
    `estimate_file`): it is returned with a marker that it has no end.
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
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [split_words(x) for x in lines]


def perplexity_of(lm: NGramLM, path: str | os.PathLike) -> dict:
    return lm.evaluate(read_sentences(path))


def sample(lm: NGramLM, rng: np.random.Generator, max_words: int = 50, context: list[str] | None = None) -> list[str]:
    """Draw a sentence word by word from the model (the "price of gold per ton" demonstration)."""
    words = list(context or [])
    out = []
    candidates = np.array([i for i in range(lm.V) if i not in (BOS_ID, UNK_ID)])
    for _ in range(max_words):
        hist = [BOS] + words
        p = np.array([lm.prob(hist, lm.vocab[i]) for i in candidates])
        i = int(rng.choice(candidates, p=p / p.sum()))
        if i == EOS_ID:
            break
        words.append(lm.vocab[i])
        out.append(lm.vocab[i])
    return out
