
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.data import readers
from lmforge.data.readers import iter_documents, iter_records, iter_text_pieces
from lmforge.errors import InputError


def test_txt_document_line_paragraph(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo\n\nthree\n")
    assert list(iter_documents(f)) == ["one\ntwo\n\nthree\n"]
    assert list(iter_documents(f, sample_by="line")) == ["one", "two", "three"]
    assert list(iter_documents(f, sample_by="paragraph")) == ["one\ntwo", "three"]


def test_folder_reads_every_file_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jsonl").write_text('{"text": "third"}\n')
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    assert list(iter_documents(tmp_path)) == ["first", "second", "third"]


def test_parquet_and_custom_text_field(tmp_path):
    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["x y", "z"], "id": [1, 2]}), f)
    assert list(iter_documents(f, text_field="body")) == ["x y", "z"]
    with pytest.raises(InputError) as e:
        list(iter_documents(f))
    assert e.value.field == "text" and "missing column" in str(e.value)


def test_hf_dataset_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = tmp_path / "ds"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a b", "c"]}), "test": datasets.Dataset.from_dict({"text": ["t"]})}).save_to_disk(d)
    assert list(iter_documents(d)) == ["a b", "c"]
    assert list(iter_documents(d, split="test")) == ["t"]
    with pytest.raises(InputError, match="splits"):
        list(iter_documents(d, split="dev"))


def test_long_document_is_streamed_in_pieces_that_tokenize_like_the_whole(tmp_path, monkeypatch, bpe):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 200)
    lines = [("word " * (i % 7 + 1)).strip() + ("\n\n" if i % 5 == 0 else "\n") + (" indented\n" if i % 11 == 0 else "") for i in range(300)]
    text = "".join(lines)
    f = tmp_path / "long.txt"
    f.write_text(text)
    pieces = list(iter_text_pieces(f))
    assert len(pieces) > 5
    assert [end for _, end in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(p for p, _ in pieces) == text
    assert sum((bpe.encode(p) for p, _ in pieces), []) == bpe.encode(text)


def test_records_carry_their_line(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert [(r["text"], loc.line) for r, loc in iter_records(f)] == [("a", 1), ("b", 3)]


# ------------------------------------------------------------------ bad input


def test_malformed_json_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "ok"}\n{"text": "oops}\n')
    with pytest.raises(InputError) as e:
        list(iter_documents(f))
    assert e.value.path == str(f) and e.value.line == 2 and "malformed JSON" in str(e.value)


def test_json_line_that_is_not_an_object(tmp_path):
    f = tmp_path / "list.jsonl"
    f.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="expected a JSON object"):
        list(iter_records(f))


def test_missing_and_mistyped_text_field(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(InputError) as e:
        list(iter_documents(f))
    assert (e.value.line, e.value.field) == (2, "text") and "missing" in str(e.value)
    f.write_text('{"text": 5}\n')
    with pytest.raises(InputError) as e:
        list(iter_documents(f))
    assert (e.value.line, e.value.field) == (1, "text") and "must be a string" in str(e.value)


def test_empty_files(tmp_path):
    for name in ("e.txt", "e.jsonl", "e.parquet"):
        f = tmp_path / name
        f.write_bytes(b"")
        with pytest.raises(InputError, match="file is empty"):
            list(iter_documents(f))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(InputError, match="no records"):
        list(iter_documents(blank))


def test_non_utf8_names_the_line(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        list(iter_documents(f))
    assert e.value.line == 2 and "not valid UTF-8" in str(e.value) and "0xe9" in str(e.value)
    j = tmp_path / "latin1.jsonl"
    j.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError) as e:
        list(iter_records(j))
    assert e.value.line == 2


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.bin").write_bytes(b"x")
    (tmp_path / ".hidden.txt").write_text("x")
    with pytest.raises(InputError, match="no readable data files"):
        list(iter_documents(tmp_path))


def test_missing_path_and_unsupported_type(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_documents(tmp_path / "nope.txt"))
    f = tmp_path / "x.csv"
    f.write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported file type"):
        list(iter_documents(f))


def test_corrupt_parquet(tmp_path):
    f = tmp_path / "c.parquet"
    f.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(iter_documents(f))


def test_hf_load_dataset_by_name_streams(tmp_path, monkeypatch):
    """`hf:NAME` goes through datasets.load_dataset(streaming=True); a local folder stands in for a hub name."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    d = tmp_path / "hubdata"
    d.mkdir()
    (d / "train.jsonl").write_text('{"text": "from the hub"}\n{"text": "second"}\n')
    assert list(iter_documents(f"hf:{d}")) == ["from the hub", "second"]
    with pytest.raises(InputError, match="load_dataset failed"):
        list(iter_documents(f"hf:{tmp_path / 'no-such-dataset'}"))
