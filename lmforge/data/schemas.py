"""Record schemas of the datasets the pipeline reads, and their validation.

lmforge follows TRL's dataset formats so that users' data works as it is:

  text                  {"text": str}                                   pretraining
  messages              {"messages": [{"role", "content"}, ...]}        SFT (conversational)
  prompt_completion     {"prompt", "completion"}                        SFT
  preference            {"prompt", "chosen", "rejected"}                DPO, reward model
  unpaired_preference   {"prompt", "completion", "label": bool}         KTO
and two of its own:
  ranking               {"prompt", "completions": [str, ...], "ranking": [int, ...], "labeler"?}
                        K answers to one prompt; `ranking` lists the indices of
                        `completions` from best to worst (InstructGPT's K-way rankings)
  evaluation            {"prompt", "task", "meta"?}                     held-out prompts

Prompts and answers may be strings or, as in TRL's conversational variants, lists of
messages. Extra keys are allowed and ignored. A record that breaks its schema raises an
`InputError` that names the file, the line and the field.
"""

from __future__ import annotations

from typing import Callable, Iterator

from ..errors import InputError
from .readers import Location, iter_records

ROLES = ("system", "user", "assistant")


def _need(record: dict, loc: Location, field: str):
    if field not in record:
        keys = ", ".join(map(str, record)) or "no fields"
        raise loc.error(f"missing (record has: {keys})", field=field)
    return record[field]


def _string(record: dict, loc: Location, field: str, *, allow_empty: bool = False) -> str:
    value = _need(record, loc, field)
    if not isinstance(value, str):
        raise loc.error(f"must be a string, got {_kind(value)}", field=field)
    if not allow_empty and not value.strip():
        raise loc.error("is empty", field=field)
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", type(None): "null", bool: "a boolean"}.get(type(value), type(value).__name__)


def check_messages(messages, loc: Location, field: str = "messages") -> None:
    if not isinstance(messages, list):
        raise loc.error(f"must be a list of messages, got {_kind(messages)}", field=field)
    if not messages:
        raise loc.error("has no messages", field=field)
    for i, m in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise loc.error(f"must be an object with 'role' and 'content', got {_kind(m)}", field=where)
        if "role" not in m:
            raise loc.error("missing", field=f"{where}.role")
        role = m["role"]
        if role not in ROLES:
            raise loc.error(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field=f"{where}.role")
        if "content" not in m:
            raise loc.error("missing", field=f"{where}.content")
        if not isinstance(m["content"], str):
            raise loc.error(f"must be a string, got {_kind(m['content'])}", field=f"{where}.content")


def _text_or_messages(record: dict, loc: Location, field: str) -> None:
    value = _need(record, loc, field)
    if isinstance(value, list):
        check_messages(value, loc, field)
    elif not isinstance(value, str):
        raise loc.error(f"must be a string or a list of messages, got {_kind(value)}", field=field)
    elif not value.strip() and field not in ("prompt", "rejected"):  # an empty answer can be the worse one
        raise loc.error("is empty", field=field)


def check_text(r: dict, loc: Location) -> None:
    _string(r, loc, "text")


def check_messages_record(r: dict, loc: Location) -> None:
    check_messages(_need(r, loc, "messages"), loc)


def check_prompt_completion(r: dict, loc: Location) -> None:
    _text_or_messages(r, loc, "prompt")
    _text_or_messages(r, loc, "completion")


def check_preference(r: dict, loc: Location) -> None:
    _text_or_messages(r, loc, "prompt")
    _text_or_messages(r, loc, "chosen")
    _text_or_messages(r, loc, "rejected")


def check_unpaired(r: dict, loc: Location) -> None:
    check_prompt_completion(r, loc)
    if not isinstance(_need(r, loc, "label"), bool):
        raise loc.error(f"must be true or false, got {_kind(r['label'])}", field="label")


def check_ranking(r: dict, loc: Location) -> None:
    _string(r, loc, "prompt", allow_empty=True)
    completions = _need(r, loc, "completions")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise loc.error("must be a list of strings", field="completions")
    if len(completions) < 2:
        raise loc.error(f"needs at least 2 answers to rank, got {len(completions)}", field="completions")
    ranking = _need(r, loc, "ranking")
    if not isinstance(ranking, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ranking):
        raise loc.error("must be a list of integer indices into 'completions', best first", field="ranking")
    if sorted(ranking) != list(range(len(completions))):
        raise loc.error(
            f"must be a permutation of 0..{len(completions) - 1} (indices of 'completions', best first), got {ranking}",
            field="ranking",
        )
    if "labeler" in r and not isinstance(r["labeler"], str):
        raise loc.error(f"must be a string, got {_kind(r['labeler'])}", field="labeler")


def check_evaluation(r: dict, loc: Location) -> None:
    _string(r, loc, "prompt", allow_empty=True)
    _string(r, loc, "task")
    if "meta" in r and not isinstance(r["meta"], dict):
        raise loc.error(f"must be an object, got {_kind(r['meta'])}", field="meta")


SCHEMAS: dict[str, Callable[[dict, Location], None]] = {
    "text": check_text,
    "messages": check_messages_record,
    "prompt_completion": check_prompt_completion,
    "preference": check_preference,
    "unpaired_preference": check_unpaired,
    "ranking": check_ranking,
    "evaluation": check_evaluation,
}


def detect_schema(record: dict, loc: Location) -> str:
    """The schema a record is written in, judged by its keys (most specific first)."""
    keys = set(record)
    if "ranking" in keys or "completions" in keys:
        return "ranking"
    if "chosen" in keys or "rejected" in keys:
        return "preference"
    if "label" in keys and "completion" in keys:
        return "unpaired_preference"
    if "completion" in keys:
        return "prompt_completion"
    if "messages" in keys:
        return "messages"
    if "task" in keys:
        return "evaluation"
    if "text" in keys:
        return "text"
    raise loc.error(
        f"matches no known schema (keys: {', '.join(map(str, keys)) or 'none'}); expected one of: "
        "text; messages; prompt+completion; prompt+chosen+rejected; prompt+completion+label; "
        "prompt+completions+ranking; prompt+task"
    )


def iter_validated(path, schema: str | None = None, *, split: str | None = None) -> Iterator[tuple[dict, Location]]:
    """Records under `path`, each checked against `schema` (or the schema of the first record)."""
    if schema is not None and schema not in SCHEMAS:
        raise InputError(f"unknown schema {schema!r}; expected one of {', '.join(SCHEMAS)}", field="schema")
    for record, loc in iter_records(path, split=split):
        if schema is None:
            schema = detect_schema(record, loc)
        SCHEMAS[schema](record, loc)
        yield record, loc


def validate(path, schema: str | None = None, *, split: str | None = None) -> tuple[str, int]:
    """Check every record; returns (schema, number of records)."""
    n = 0
    found = schema
    for record, loc in iter_validated(path, schema, split=split):
        if found is None:
            found = detect_schema(record, loc)
        n += 1
    return found or "text", n
