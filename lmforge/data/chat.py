"""The chat template: conversations as token ids, and which of them a model learns to say.

A conversation is a list of messages {"role": "system" | "user" | "assistant", "content": str}.
Each message becomes its role marker, a space and its content, and an end-of-turn token:

    <|system|> You answer briefly.<|end|><|user|> What colour is the Ripim?<|end|><|assistant|> The Ripim is blue.<|end|>

The space is there for the base model's sake: in pretraining text a word almost always follows
a space ("A: Positive.", ": pink, leaves"), and byte-level BPE gives the word after a space its
own token (" berries") where a word starting the text is cut into rare pieces ("b", "erri",
"es"). With the space, an answer is made of tokens the base model already predicts well.

The role markers and <|end|> are special tokens (ids 4-7 in every lmforge tokenizer); a content
is encoded with special-token strings read as plain text, so what a user types cannot forge a
turn. To ask for an answer, the prompt ends with <|assistant|> (`add_generation_prompt`) and the
model writes the content and <|end|>, where generation stops.

`render` returns the ids and a loss mask: 1 on every assistant content token and the <|end|>
that closes it (the model must learn to stop), 0 on the system and user turns and on the role
markers (Ouyang et al. 2022 train on the labelers' answers; the prompt is context). The same
rendering drives training (`lmforge.data.sft`), generation and evaluation, and it is written
as the Jinja `CHAT_TEMPLATE` that Hugging Face's `apply_chat_template` renders to the same ids.

TRL's standard (non-conversational) prompt/completion records are not chat: `render_plain`
concatenates prompt, completion and the end-of-text token, the loss on the completion and the
end-of-text token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import InputError

ROLES = ("system", "user", "assistant")

# The template in Hugging Face's format (tokenizer_config.json "chat_template").
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|> ' + message['content'] + '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)


@dataclass
class Rendered:
    ids: list[int]
    mask: list[int]  # 1 where the token is one the model learns to produce

    def __len__(self) -> int:
        return len(self.ids)


def _jinja_text(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """An imported model's own template (tokenizer_config.json's Jinja), rendered as
    `transformers`' apply_chat_template renders it: a sandbox, trim_blocks and lstrip_blocks."""
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise InputError(f"this model's chat template is Jinja: pip install jinja2 ({e})") from None

    def raise_exception(message):
        raise InputError(f"the chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    names = {n: tokenizer.hf.id_to_token(tokenizer.specials[n]) if tokenizer.specials.get(n) is not None else "" for n in ("bos", "eos")}
    return env.from_string(tokenizer.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt, bos_token=names["bos"], eos_token=names["eos"])


def _render_jinja(tokenizer, messages: list[dict], add_generation_prompt: bool) -> Rendered:
    """Ids of the rendered text, the mask 1 on each assistant turn: the tokens between the
    conversation up to it asking for an answer and the conversation including it."""
    ids = tokenizer.encode(_jinja_text(tokenizer, messages, add_generation_prompt))
    mask = [0] * len(ids)
    for j, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tokenizer.encode(_jinja_text(tokenizer, messages[:j], True)))
            end = len(tokenizer.encode(_jinja_text(tokenizer, messages[: j + 1], False)))
            mask[start:end] = [1] * (end - start)
    return Rendered(ids, mask)


def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False) -> Rendered:
    """Token ids and loss mask of a conversation (see the module docstring); an imported
    model's conversation through its own template."""
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise InputError(f"unknown role {m.get('role')!r}; expected one of {', '.join(ROLES)}", field=f"messages[{i}].role")
    if getattr(tokenizer, "chat_template", None):
        return _render_jinja(tokenizer, messages, add_generation_prompt)
    end = tokenizer.special_id("end_of_turn")
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field=f"messages[{i}].role")
        content = tokenizer.encode_plain(" " + m["content"])
        learn = int(role == "assistant")
        ids += [tokenizer.special_id(role), *content, end]
        mask += [0, *[learn] * len(content), learn]
    if add_generation_prompt:
        ids.append(tokenizer.special_id("assistant"))
        mask.append(0)
    return Rendered(ids, mask)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The ids that ask the model for the next assistant turn after `messages`."""
    return render(tokenizer, messages, add_generation_prompt=True).ids


def render_plain(tokenizer, prompt: str, completion: str) -> Rendered:
    """A standard prompt/completion pair: prompt + completion + <|endoftext|>, the loss on the
    completion and the end-of-text token (TRL's format for non-conversational data)."""
    p, c = tokenizer.encode_plain(prompt), tokenizer.encode_plain(completion)
    return Rendered(p + c + [tokenizer.eos_id], [0] * len(p) + [1] * (len(c) + 1))


def answer_text(tokenizer, tokens: list[int]) -> str:
    """The text of a generated assistant turn (without the space the template puts before it)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.decode(tokens, skip_special_tokens=True).strip()
    text = tokenizer.decode(tokens)
    return text[1:] if text.startswith(" ") else text


def stop_ids(tokenizer) -> list[int]:
    """Tokens that end an assistant turn: <|end|>, and <|endoftext|> for good measure; for an
    imported model, its generation config's end tokens."""
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.stop_token_ids)
    return [tokenizer.special_id("end_of_turn"), tokenizer.eos_id]
