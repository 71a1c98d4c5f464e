import json

import pytest

from lmforge.data.schemas import validate
from lmforge.errors import InputError


def write(tmp_path, *records):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    return f


GOOD = {
    "text": {"text": "hello"},
    "messages": {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    "prompt_completion": {"prompt": "2+2=", "completion": "4"},
    "preference": {"prompt": "q", "chosen": "good", "rejected": "bad"},
    "unpaired_preference": {"prompt": "q", "completion": "a", "label": True},
    "ranking": {"prompt": "q", "completions": ["a", "b", "c"], "ranking": [2, 0, 1], "labeler": "L1"},
    "evaluation": {"prompt": "q", "task": "arithmetic", "meta": {"a": 1}},
}


@pytest.mark.parametrize("schema", list(GOOD))
def test_each_schema_is_detected_and_valid(tmp_path, schema):
    f = write(tmp_path, GOOD[schema], GOOD[schema])
    assert validate(f) == (schema, 2)
    assert validate(f, schema) == (schema, 2)


def test_conversational_preference(tmp_path):
    r = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}
    assert validate(write(tmp_path, r)) == ("preference", 1)


@pytest.mark.parametrize(
    "record, field, words",
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "unknown role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "must be a string"),
        ({"messages": []}, "messages", "no messages"),
        ({"prompt": "q", "completion": 4}, "completion", "must be a string"),
        ({"prompt": "q", "chosen": "a"}, "rejected", "missing"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", "empty"),
        ({"prompt": "q", "completion": "a", "label": "yes"}, "label", "true or false"),
        ({"prompt": "q", "completions": ["a"], "ranking": [0]}, "completions", "at least 2"),
        ({"prompt": "q", "completions": ["a", "b"], "ranking": [0, 0]}, "ranking", "permutation"),
        ({"prompt": "q", "completions": ["a", "b"], "ranking": [0, 2]}, "ranking", "permutation"),
        ({"prompt": "q", "task": "t", "meta": [1]}, "meta", "must be an object"),
    ],
)
def test_broken_records_name_line_and_field(tmp_path, record, field, words):
    f = write(tmp_path, first_good_like(record), record)
    with pytest.raises(InputError) as e:
        validate(f)
    assert (e.value.line, e.value.field) == (2, field)
    assert words in str(e.value)


def first_good_like(record):
    """A valid record of the same schema, so the broken one is on line 2."""
    keys = set(record)
    for schema in ("ranking", "preference", "unpaired_preference", "prompt_completion", "messages", "evaluation"):
        if keys <= set(GOOD[schema]) and (schema != "prompt_completion" or "label" not in keys):
            return GOOD[schema]
    raise AssertionError(record)


def test_record_of_no_schema(tmp_path):
    with pytest.raises(InputError, match="matches no known schema"):
        validate(write(tmp_path, {"question": "q"}))


def test_schema_mismatch_against_declared(tmp_path):
    with pytest.raises(InputError) as e:
        validate(write(tmp_path, {"text": "x"}), "preference")
    assert e.value.field == "prompt"
