"""`lmforge chat`: a conversation with a model in the terminal, the answer streamed as it is made.

The conversation is a list of messages rendered with the chat template at every turn (the
model sees the whole history, as the server's /v1/chat/completions does); the answer streams
token by token from `lmforge.engine.stream`, printed as soon as the text it decodes to is whole.
Commands: /reset (forget the conversation, keep the system message), /system TEXT (set the
system message), /exit (or end of input). A base model (no chat template) is asked with its
conversation as plain "User:"/"Assistant:" lines (a warning says so).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from ..engine import SamplingParams, stream

HELP = "commands: /reset (new conversation), /system TEXT (system message), /exit"


def _prompt(tok, messages: list[dict], as_chat: bool, context: int, room: int) -> list[int]:
    """The ids that ask for the next answer; the oldest turns are dropped until `room` answer
    tokens fit the context (a system message stays)."""
    from ..data import chat

    msgs = list(messages)
    while True:
        if as_chat:
            ids = chat.prompt_ids(tok, msgs)
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"
            ids = tok.document_ids(text)
        turns = [i for i, m in enumerate(msgs) if m["role"] != "system"]
        if len(ids) + room <= context or len(turns) <= 1:
            return ids[-(context - room) :] if len(ids) + room > context else ids
        msgs.pop(turns[0])


@torch.no_grad()
def answer(model, tok, messages: list[dict], params: SamplingParams, as_chat: bool, write) -> str:
    """Streams one answer through `write(piece)`; returns its text."""
    from ..data import chat

    context = model.cfg.max_seq_len
    room = min(params.max_new_tokens, context // 2)
    ids = _prompt(tok, messages, as_chat, context, room)
    stops = set(chat.stop_ids(tok) if as_chat else [tok.eos_id])
    p = replace(params, max_new_tokens=room, stop_ids=sorted(stops), stop_strings=[])
    tokens: list[int] = []
    shown = ""
    for tok_, _, _ in stream(model, [ids], p):  # one prompt: nothing to pad
        t = int(tok_[0])
        if t in stops:
            break
        tokens.append(t)
        text = tok.decode(tokens)
        if as_chat and text.startswith(" "):
            text = text[1:]
        if not as_chat and "\nUser:" in text:  # a base model writing the user's next line
            text = text[: text.index("\nUser:")]
            write(text[len(shown) :])
            return text.strip()
        if not text.endswith("\ufffd") and len(text) > len(shown):
            write(text[len(shown) :])
            shown = text
    text = tok.decode(tokens)
    text = text[1:] if as_chat and text.startswith(" ") else text
    if len(text) > len(shown):
        write(text[len(shown) :])
    return text.strip()


def chat_loop(model, tok, params: SamplingParams, *, system: str | None = None, inp=None, out=None) -> int:
    """Reads turns from `inp` until /exit or end of input; returns the number of answers given."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    as_chat = getattr(model, "chat_template", None) is not None
    interactive = hasattr(inp, "isatty") and inp.isatty()

    def write(s):
        out.write(s)
        out.flush()

    if not as_chat:
        write("(a base model: it continues the conversation as plain text)\n")
    write(HELP + "\n")
    messages = [{"role": "system", "content": system}] if system else []
    answers = 0
    while True:
        if interactive:
            write("you> ")
        line = inp.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = [m for m in messages if m["role"] == "system"]
            write("(conversation reset)\n")
            continue
        if text.startswith("/system"):
            content = text[len("/system") :].strip()
            messages = [m for m in messages if m["role"] != "system"]
            if content:
                messages.insert(0, {"role": "system", "content": content})
            write(f"(system message {'set' if content else 'cleared'})\n")
            continue
        if text.startswith("/"):
            write(f"(unknown command {text.split()[0]}; {HELP})\n")
            continue
        messages.append({"role": "user", "content": text})
        write("model> ")
        reply = answer(model, tok, messages, params, as_chat, write)
        write("\n")
        messages.append({"role": "assistant", "content": reply})
        answers += 1
    return answers
