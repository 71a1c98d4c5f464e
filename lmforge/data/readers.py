"""Readers: a user's corpus or dataset, streamed from disk as text or records.

A data PATH is one of
  - a `.txt` file, or a folder of them: one document per file (the default), per line, or per
    blank-line-separated paragraph (`sample_by`);
  - a `.jsonl` file: one JSON object per line;
  - a `.parquet` file: one record per row, read in batches through pyarrow;
  - a Hugging Face dataset saved with `save_to_disk` (a folder holding `dataset_info.json` or
    `dataset_dict.json`), read through `datasets.load_from_disk` (memory-mapped arrow);
  - `hf:NAME[:CONFIG]`: `datasets.load_dataset(NAME, CONFIG, streaming=True)`, when online;
  - a folder holding any mix of `.txt`, `.jsonl` and `.parquet` files, read in sorted order.

Everything is streamed: no reader holds more than one batch of records, or one chunk of a long
text file, in memory, so a corpus larger than memory works. Every problem is an `InputError`
naming the file and the line (or row) and, for records, the field.

This module reads; it does not tokenize (see `lmforge.tokenizer`) or check record schemas
beyond "is a JSON object" (see `lmforge.data.schemas`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal

from ..errors import InputError

TEXT_EXTS = (".txt", ".text", ".md")
RECORD_EXTS = (".jsonl", ".parquet")
SUPPORTED = TEXT_EXTS + RECORD_EXTS

SampleBy = Literal["document", "line", "paragraph"]

# A long text document is handed on in pieces of about this many characters.
CHUNK_CHARS = 1 << 20


@dataclass(frozen=True)
class Location:
    """Where a record came from: a file and its 1-based line (JSONL) or row (Parquet, datasets)."""

    path: str
    line: int

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field)


# --------------------------------------------------------------------------- finding files


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("dataset_info.json", "dataset_dict.json", "state.json"))


def list_files(path: str | os.PathLike, exts: tuple[str, ...] = SUPPORTED) -> list[Path]:
    """The data files under `path` (itself, if a file), in a stable sorted order."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", path=p)
    if p.is_file():
        if p.suffix.lower() not in exts:
            raise InputError(f"unsupported file type '{p.suffix}'; expected one of {', '.join(exts)}", path=p)
        return [p]
    files = sorted(
        (f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts and not any(part.startswith(".") for part in f.relative_to(p).parts)),
        key=lambda f: f.relative_to(p).as_posix(),
    )
    if not files:
        raise InputError(f"directory has no readable data files ({', '.join(exts)})", path=p)
    return files


def text_bytes(path: str | os.PathLike) -> int | None:
    """Total size of a plain-text corpus (for a progress bar's ETA); None for records."""
    spec = str(path)
    if spec.startswith("hf:") or is_hf_dataset_dir(Path(spec)):
        return None
    try:
        files = list_files(spec)
    except InputError:
        return None
    if any(f.suffix.lower() not in TEXT_EXTS for f in files):
        return None
    return sum(f.stat().st_size for f in files)


def _check_not_empty(f: Path) -> None:
    if f.stat().st_size == 0:
        raise InputError("file is empty", path=f)


# --------------------------------------------------------------------------- plain text


def _decode(raw: bytes, f: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"not valid UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1} ({e.reason}); re-encode the file as UTF-8",
            path=f,
            line=lineno,
        ) from None


def _safe_split(prev: str, nxt: str) -> bool:
    """May a long document be cut between two lines without changing how it tokenizes?

    Byte-level BPE pre-tokenizes with the GPT-2 regex, whose whitespace rule looks ahead one
    character: a run of whitespace at the end of a piece splits differently from the same run
    before a letter. A cut right after a single newline that follows a non-space and precedes a
    non-space gives the same pre-tokens either way, so pieces encode exactly like the whole.
    """
    return len(prev) >= 2 and prev[-1] == "\n" and not prev[-2].isspace() and nxt[:1] != "" and not nxt[0].isspace()


def iter_text_file(f: Path, sample_by: SampleBy = "document") -> Iterator[tuple[str, bool]]:
    """Pieces of text from one UTF-8 file, each with a flag: does a document end here?"""
    _check_not_empty(f)
    with open(f, "rb") as fh:
        if sample_by == "line":
            for lineno, raw in enumerate(fh, 1):
                text = _decode(raw, f, lineno).rstrip("\r\n")
                if text.strip():
                    yield text, True
        elif sample_by == "paragraph":
            para: list[str] = []
            for lineno, raw in enumerate(fh, 1):
                line = _decode(raw, f, lineno)
                if line.strip():
                    para.append(line)
                elif para:
                    yield "".join(para).rstrip("\r\n"), True
                    para = []
            if para:
                yield "".join(para).rstrip("\r\n"), True
        elif sample_by == "document":
            buf: list[str] = []
            size = 0
            any_text = False
            for lineno, raw in enumerate(fh, 1):
                line = _decode(raw, f, lineno)
                if size >= CHUNK_CHARS and buf and _safe_split(buf[-1], line):
                    yield "".join(buf), False
                    any_text = True
                    buf, size = [], 0
                buf.append(line)
                size += len(line)
            text = "".join(buf)
            if text or any_text:
                yield text, True
        else:
            raise InputError(f"sample_by must be document, line or paragraph, not {sample_by!r}", field="sample_by")


# --------------------------------------------------------------------------- records


def iter_jsonl(f: Path) -> Iterator[tuple[dict, Location]]:
    _check_not_empty(f)
    seen = False
    with open(f, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            text = _decode(raw, f, lineno)
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"malformed JSON: {e.msg} at column {e.colno}", path=f, line=lineno) from None
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, got {type(record).__name__}", path=f, line=lineno)
            seen = True
            yield record, Location(str(f), lineno)
    if not seen:
        raise InputError("file has no records (only blank lines)", path=f)


def iter_parquet(f: Path, columns: list[str] | None = None, batch_size: int = 1024) -> Iterator[tuple[dict, Location]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_not_empty(f)
    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file: {e}", path=f) from None
    names = pf.schema_arrow.names
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"missing column (the file has: {', '.join(names)})", path=f, field=missing[0])
    if pf.metadata.num_rows == 0:
        raise InputError("file has no rows", path=f)
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            for record in batch.to_pylist():
                row += 1
                yield record, Location(str(f), row)
    except pa.ArrowException as e:
        raise InputError(f"Parquet read failed after row {row}: {e}", path=f) from None


def _load_hf(spec: str, split: str | None):
    try:
        import datasets
    except ImportError:
        raise InputError("reading Hugging Face datasets needs the `datasets` package: pip install 'lmforge[hf]'", path=spec) from None
    if spec.startswith("hf:"):
        name, _, config = spec[3:].partition(":")
        try:
            return datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
        except Exception as e:  # hub, network and name errors all end up here
            raise InputError(f"load_dataset failed: {e}", path=spec) from None
    try:
        ds = datasets.load_from_disk(spec)
    except Exception as e:
        raise InputError(f"not a dataset saved with save_to_disk: {e}", path=spec) from None
    if isinstance(ds, datasets.DatasetDict):
        split = split or ("train" if "train" in ds else None)
        if split not in ds:
            raise InputError(f"dataset has splits {', '.join(ds)}; choose one with split=", path=spec, field="split")
        ds = ds[split]
    if len(ds) == 0:
        raise InputError("dataset has no rows", path=spec)
    return ds


def iter_hf(spec: str, split: str | None = None) -> Iterator[tuple[dict, Location]]:
    ds = _load_hf(spec, split)
    for row, record in enumerate(ds, 1):
        yield dict(record), Location(spec, row)


def iter_records(path: str | os.PathLike, *, split: str | None = None, columns: list[str] | None = None) -> Iterator[tuple[dict, Location]]:
    """Every record under `path` with its location: JSONL lines, Parquet rows, dataset rows.

    Plain-text files in a folder become records `{"text": document}` (one per file).
    """
    spec = str(path)
    if spec.startswith("hf:") or is_hf_dataset_dir(Path(spec)):
        yield from iter_hf(spec, split)
        return
    for f in list_files(spec):
        ext = f.suffix.lower()
        if ext == ".jsonl":
            yield from iter_jsonl(f)
        elif ext == ".parquet":
            yield from iter_parquet(f, columns)
        else:
            text = "".join(t for t, _ in iter_text_file(f, "document"))
            yield {"text": text}, Location(str(f), 1)


def _text_of(record: dict, loc: Location, field: str) -> str:
    if field not in record:
        raise loc.error(f"missing (record has: {', '.join(map(str, record)) or 'no fields'})", field=field)
    value = record[field]
    if not isinstance(value, str):
        raise loc.error(f"must be a string, got {type(value).__name__}", field=field)
    return value


def field_value(record: dict, loc: Location, name: str) -> str:
    """A record's single value of field `name` as a string (a dotted name reads a nested field:
    meta.language); an error naming the file, line and field when it is missing or not one value."""
    value = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or isinstance(value, (dict, list)):
        raise loc.error(f"missing or not a single value (record has: {', '.join(map(str, record))})", field=name)
    return str(value)


def read_texts(path: str | os.PathLike, text_field: str = "text", label_field: str = "") -> tuple[list[str], list[str] | None]:
    """Every record's text, and with `label_field` its label as a string (present and a single
    value on every record; a dotted name such as meta.language reads a nested field), for the
    commands that take labelled texts (cluster, classify, tokenizer stats --by)."""
    texts, labels = [], []
    for record, loc in iter_records(path):
        texts.append(_text_of(record, loc, text_field))
        if label_field:
            labels.append(field_value(record, loc, label_field))
    if not texts:
        raise InputError("no records", path=path)
    return texts, (labels if label_field else None)


def iter_text_pieces(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    sample_by: SampleBy = "document",
    split: str | None = None,
) -> Iterator[tuple[str, bool]]:
    """Text from any data PATH as (piece, end_of_document) pairs, streamed.

    Records contribute their `text_field`; plain-text files are cut into documents by
    `sample_by`. A long document may arrive in several pieces; only its last has the flag set.
    """
    spec = str(path)
    if spec.startswith("hf:") or is_hf_dataset_dir(Path(spec)):
        for record, loc in iter_hf(spec, split):
            yield _text_of(record, loc, text_field), True
        return
    for f in list_files(spec):
        ext = f.suffix.lower()
        if ext in TEXT_EXTS:
            yield from iter_text_file(f, sample_by)
        else:
            records = iter_jsonl(f) if ext == ".jsonl" else iter_parquet(f, [text_field])
            for record, loc in records:
                yield _text_of(record, loc, text_field), True


def iter_documents(path: str | os.PathLike, **kwargs) -> Iterator[str]:
    """Whole documents (pieces joined); for callers that need a document at once."""
    return _documents_of(iter_text_pieces(path, **kwargs))


def iter_grouped_texts(
    path: str | os.PathLike,
    group_by: str,
    *,
    text_field: str = "text",
    sample_by: SampleBy = "document",
    split: str | None = None,
) -> Iterator[tuple[str, str]]:
    """Every document under `path` as (text, group): the group is a record field's value (a
    dotted name reads a nested one: meta.language) or, with group_by "file", the name of the
    file the document came from (plain-text files cut into documents by `sample_by`)."""
    spec = str(path)
    if group_by == "file" and not (spec.startswith("hf:") or is_hf_dataset_dir(Path(spec))):
        for f in list_files(spec):
            if f.suffix.lower() in TEXT_EXTS:
                for text in _documents_of(iter_text_file(f, sample_by)):
                    yield text, f.name
            else:
                records = iter_jsonl(f) if f.suffix.lower() == ".jsonl" else iter_parquet(f, [text_field])
                for record, loc in records:
                    yield _text_of(record, loc, text_field), f.name
        return
    for record, loc in iter_records(spec, split=split):
        yield _text_of(record, loc, text_field), field_value(record, loc, group_by)


def _documents_of(pieces: Iterable[tuple[str, bool]]) -> Iterator[str]:
    parts: list[str] = []
    for piece, end in pieces:
        parts.append(piece)
        if end:
            yield "".join(parts)
            parts = []
