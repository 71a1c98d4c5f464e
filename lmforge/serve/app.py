"""An OpenAI-compatible HTTP server for lmforge models (FastAPI; run by `lmforge serve`).

Routes, in the shape of OpenAI's API so its clients work unchanged:

  POST /v1/chat/completions   messages -> the assistant's answer, through the chat template
  POST /v1/completions        a prompt -> its continuation (a base model, or any model as text)
  GET  /v1/models             the models served
  GET  /health                liveness, the queue's length, tokens in flight, steps run
  GET  /                      the chat page (static/chat.html)

Both completion routes take `model`, `temperature` (default 1), `top_p`, `max_tokens`, `stop`
(a string or a list), `n`, `seed` and `stream`; they answer with `usage` token counts, and
with `stream: true` as server-sent events of OpenAI's chunk objects ending in `data: [DONE]`
(`stream_options: {"include_usage": true}` adds a last chunk with the usage).

Requests go to the model's `Batcher` (batcher.py), which runs concurrent requests in shared
forward passes, each joining the running batch at the next decode step (continuous batching).
Limits (`Limits`): body size (413), prompt tokens and max_tokens (400), n, the tokens in flight
(429 with Retry-After past them) and the time a request may take (503). Every error is a 4xx/5xx with
OpenAI's error body {"error": {"message", "type", "param", "code"}}. With an API key, a
request to /v1 without `Authorization: Bearer KEY` gets 401; the server binds to 127.0.0.1
unless told otherwise (`lmforge serve --host`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from ..engine import SamplingParams
from .batcher import Batcher, Job, Overloaded

STATIC = Path(__file__).parent / "static"


@dataclass
class Limits:
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 0  # 0: the model's context less one token
    max_tokens: int = 512  # the largest max_tokens a request may ask for
    default_max_tokens: int = 128
    max_n: int = 8
    timeout_s: float = 60.0  # a request's whole time, waiting included
    max_batch: int = 32  # rows a forward pass may carry
    max_queue: int = 1024  # requests that may wait; one more is refused with 429
    max_tokens_in_flight: int = 1 << 18  # prompt + max_tokens of every queued and running answer; past it, 429
    batching: str = "continuous"  # continuous, waves (the scheduler it replaced, for comparison) or off
    compile: bool = False  # torch.compile the decode step (continuous batching; compiled at start)


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Served:
    """One model the server answers with."""

    name: str
    model: object
    tokenizer: object
    batcher: Batcher
    created: int

    @property
    def is_chat(self) -> bool:
        return getattr(self.model, "chat_template", None) is not None


SETTINGS_ENV = "LMFORGE_SERVE_SETTINGS"


def app_from_env():
    """The application of one worker process of `lmforge serve --workers N`: uvicorn starts N
    processes on one port and each calls this factory, loading its own copy of the models (a
    process a model copy, the way uvicorn or gunicorn workers scale a Python server past one
    process). The models, limits, key and threads come from the environment the parent set."""
    import os

    import torch

    cfg = json.loads(os.environ[SETTINGS_ENV])
    torch.set_num_threads(cfg["threads"])
    limits = Limits(**cfg["limits"])
    return create_app(load_served(cfg["models"], limits, cfg["device"]), api_key=cfg["api_key"], limits=limits)


def load_one(path: str, device: str = "cpu"):
    """A served model and its tokenizer."""
    from ..models import load_model
    from ..tokenizer import Tokenizer

    model, folder = load_model(path, device)
    return model.eval(), Tokenizer.load(folder)


def load_served(models: dict[str, str], limits: Limits, device: str = "cpu") -> dict[str, Served]:
    """{name: Served} for {name: model directory}. The batcher pads with id 0 whatever the
    tokenizer: padded positions are masked (skipped by a recurrent model), never read, and many
    imported tokenizers have no padding token."""
    out = {}
    for name, path in models.items():
        model, tok = load_one(path, device)
        batcher = Batcher(model, max_batch=limits.max_batch, max_queue=limits.max_queue, max_tokens_in_flight=limits.max_tokens_in_flight, mode=limits.batching, compile=limits.compile)
        out[name] = Served(name, model, tok, batcher, int(time.time()))
    return out


# --------------------------------------------------------------------------- request checks


def _number(body: dict, name: str, default, kind, lo=None, hi=None, lo_open=False):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise APIError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {json.dumps(v)}", param=name, code="invalid_value")
    v = kind(v)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise APIError(400, f"'{name}' must be {'>' if lo_open else '>='} {lo}, got {v}", param=name, code="invalid_value")
    if hi is not None and v > hi:
        raise APIError(400, f"'{name}' must be <= {hi}, got {v}", param=name, code="invalid_value")
    return v


def _stops(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise APIError(400, "'stop' must be a non-empty string or a list of up to 4 of them", param="stop", code="invalid_value")
    return stop


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "'messages' must be a non-empty list of {role, content}", param="messages", code="invalid_value")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise APIError(400, f"messages[{i}].role must be one of system, user, assistant", param=f"messages[{i}].role", code="invalid_value")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI's content parts: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise APIError(400, f"messages[{i}].content: only text parts are supported", param=f"messages[{i}].content", code="invalid_value")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise APIError(400, f"messages[{i}].content must be a string", param=f"messages[{i}].content", code="invalid_value")
        out.append({"role": m["role"], "content": content})
    if out[-1]["role"] == "assistant":
        raise APIError(400, "the last message must not be the assistant's: the model writes the next assistant turn", param="messages", code="invalid_value")
    return out


class Request:
    """A checked completion request: ids to continue, sampling, stop strings, n, stream."""

    def __init__(self, body: dict, served: dict[str, Served], limits: Limits, chat: bool):
        name = body.get("model")
        if not isinstance(name, str):
            raise APIError(400, "'model' is required: one of " + ", ".join(served), param="model", code="invalid_value")
        if name not in served:
            raise APIError(404, f"the model '{name}' does not exist; this server has: {', '.join(served)}", param="model", code="model_not_found")
        self.served = s = served[name]
        tok, ctx = s.tokenizer, s.model.cfg.max_seq_len
        self.chat = chat
        if chat:
            from ..data import chat as template

            try:
                self.prompt = template.prompt_ids(tok, _messages(body))
            except KeyError as e:
                raise APIError(400, f"this model's tokenizer has no chat tokens ({e}); use /v1/completions", param="messages") from None
            stop_ids = template.stop_ids(tok)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise APIError(400, "'prompt' must be a string", param="prompt", code="invalid_value")
            self.prompt = tok.document_ids(prompt)  # the start of a new document, as in pretraining
            stop_ids = [tok.eos_id]
        limit = min(limits.max_prompt_tokens or ctx - 1, ctx - 1)
        if len(self.prompt) > limit:
            raise APIError(400, f"the prompt has {len(self.prompt)} tokens; this server takes at most {limit}", param="messages" if chat else "prompt", code="context_length_exceeded")
        max_tokens = _number(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens", limits.default_max_tokens, int, 1, limits.max_tokens)
        self.max_tokens = min(max_tokens, ctx - len(self.prompt))
        self.n = _number(body, "n", 1, int, 1, limits.max_n)
        seed = body.get("seed")
        if seed is not None:
            seed = _number(body, "seed", None, int, 0)
        self.params = SamplingParams(
            max_new_tokens=self.max_tokens,
            temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
            top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0, lo_open=True),
            top_k=_number(body, "top_k", None, int, 1),
            repetition_penalty=_number(body, "repetition_penalty", 1.0, float, 0.0, lo_open=True),
            stop_ids=stop_ids,
            seed=seed,
        )
        self.stops = _stops(body)
        self.stream = bool(body.get("stream", False))
        opts = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))

    def text(self, tokens: list[int]) -> str:
        text = self.served.tokenizer.decode(tokens)
        return text[1:] if self.chat and text.startswith(" ") else text  # the template's space before an answer


# --------------------------------------------------------------------------- answers


class Answer:
    """The growing text of one row: decoded, cut at a stop string, released for streaming only
    as far as no stop string could still begin."""

    def __init__(self, req: Request):
        self.req = req
        self.tokens: list[int] = []
        self.sent = 0
        self.finish: str | None = None
        self.cut: str | None = None  # the final text once a stop string ended it

    def add(self, token: int) -> None:
        self.tokens.append(token)
        if self.req.stops:
            text = self.req.text(self.tokens)
            hits = [text.index(s) for s in self.req.stops if s in text]
            if hits:
                self.cut, self.finish = text[: min(hits)], "stop"

    @property
    def text(self) -> str:
        return self.cut if self.cut is not None else self.req.text(self.tokens)

    def pending(self, final: bool) -> str:
        """Text not yet streamed that is safe to send."""
        text = self.text
        if not final:
            if text.endswith("\ufffd"):  # a character split across byte tokens: wait for the rest
                text = text.rstrip("\ufffd")
            hold = max((len(s) for s in self.req.stops), default=1) - 1
            text = text[: max(len(text) - hold, 0)]
        if len(text) <= self.sent:
            return ""
        piece, self.sent = text[self.sent :], len(text)
        return piece


async def _events(job: Job, answers: list[Answer], deadline: float):
    """Yields (row, piece) as the worker's tokens arrive, until every row has finished."""
    open_rows = set(range(len(answers)))
    while open_rows:
        left = deadline - time.monotonic()
        if left <= 0:
            job.cancel()
            raise APIError(503, "the request took longer than this server allows; try fewer tokens or later", type="server_error", code="timeout")
        try:
            row, token, end = await asyncio.wait_for(job.events.get(), timeout=left)
        except asyncio.TimeoutError:
            continue
        if row is None:
            raise APIError(500, f"generation failed ({end})", type="server_error")
        if row not in open_rows:
            continue
        a = answers[row]
        if token is not None:
            a.add(token)
            if a.finish:  # a stop string: the rest of this row is not wanted
                open_rows.discard(row)
                if not open_rows:
                    job.cancel()
                yield row, a.pending(final=True)
                continue
            yield row, a.pending(final=False)
        else:
            a.finish = end
            open_rows.discard(row)
            yield row, a.pending(final=True)


def _usage(req: Request, answers: list[Answer]) -> dict:
    prompt = len(req.prompt)
    completion = sum(len(a.tokens) for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _read_body(request: HTTPRequest, limits: Limits) -> dict:
    """The request's JSON object, its size counted as it arrives (bodies without a content length too)."""
    raw = b""
    async for chunk in request.stream():  # bodies without a content length are counted too
        raw += chunk
        if len(raw) > limits.max_body_bytes:
            raise APIError(413, f"the request body is larger than {limits.max_body_bytes} bytes", code="body_too_large")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_json")
    return body


async def _sse(request, req: Request, job: Job, answers: list[Answer], deadline, rid, created, kind):
    """A streamed answer as server-sent events, in OpenAI's chunk format, ending with [DONE]."""
    chunk_kind = kind + ".chunk" if kind == "chat.completion" else kind

    def chunk(choices, usage=None):
        c = {"id": rid, "object": chunk_kind, "created": created, "model": req.served.name, "choices": choices}
        if req.include_usage:
            c["usage"] = usage
        return "data: " + json.dumps(c, ensure_ascii=False) + "\n\n"

    def choice(i, piece=None, finish=None, role=False):
        if req.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": piece} if piece else {})
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": i, "text": piece or "", "logprobs": None, "finish_reason": finish}

    try:
        if req.chat:
            yield chunk([choice(i, role=True) for i in range(req.n)])
        async for row, piece in _events(job, answers, deadline):
            if await request.is_disconnected():
                job.cancel()
                return
            a = answers[row]
            if piece or a.finish:
                if piece:
                    yield chunk([choice(row, piece)])
                if a.finish:
                    yield chunk([choice(row, None, a.finish)])
        if req.include_usage:
            yield "data: " + json.dumps({"id": rid, "object": chunk_kind, "created": created, "model": req.served.name, "choices": [], "usage": _usage(req, answers)}) + "\n\n"
        yield "data: [DONE]\n\n"
    except APIError as e:  # the status line has gone: the error travels as an event
        job.cancel()
        yield "data: " + json.dumps(e.body()) + "\n\n"
    finally:
        job.cancel()


def create_app(served: dict[str, Served], *, api_key: str | None = None, limits: Limits | None = None):
    """The FastAPI application serving `served` (see the module docstring)."""
    from contextlib import asynccontextmanager

    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app):
        yield
        for s in served.values():
            s.batcher.close()

    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None, lifespan=lifespan)

    def error(e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.middleware("http")
    async def guard(request: HTTPRequest, call_next):
        try:
            if request.url.path.startswith("/v1"):
                if api_key is not None:
                    auth = request.headers.get("authorization", "")
                    given = auth[7:] if auth.lower().startswith("bearer ") else ""
                    if not hmac.compare_digest(given.encode(), api_key.encode()):
                        raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')", type="authentication_error", code="invalid_api_key")
                size = request.headers.get("content-length")
                if size is not None and (not size.isdigit() or int(size) > limits.max_body_bytes):
                    if size.isdigit() and int(size) <= 8 * limits.max_body_bytes:
                        # read what the client is sending before answering: closing with the body
                        # unread resets the connection, and the client never sees the 413
                        async for _ in request.stream():
                            pass
                    raise APIError(413, f"the request body is larger than {limits.max_body_bytes} bytes", code="body_too_large")
            return await call_next(request)
        except APIError as e:
            return error(e)

    async def complete(request: HTTPRequest, chat: bool):
        try:
            req = Request(await _read_body(request, limits), served, limits, chat)
            job = Job([req.prompt] * req.n, req.params)
            try:
                req.served.batcher.submit(job)
            except Overloaded as e:
                raise APIError(429, f"the server is busy: {e}", type="rate_limit_error", code="overloaded", headers={"Retry-After": str(e.retry_after)}) from None
        except APIError as e:
            return error(e)
        deadline = time.monotonic() + limits.timeout_s
        answers = [Answer(req) for _ in range(req.n)]
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"
        if req.stream:
            return StreamingResponse(_sse(request, req, job, answers, deadline, rid, created, kind), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            async for _ in _events(job, answers, deadline):
                if await request.is_disconnected():
                    job.cancel()
                    return JSONResponse({}, status_code=499)
        except APIError as e:
            job.cancel()
            return error(e)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": None, "finish_reason": a.finish} for i, a in enumerate(answers)]
        else:
            choices = [{"index": i, "text": a.text, "logprobs": None, "finish_reason": a.finish} for i, a in enumerate(answers)]
        return {"id": rid, "object": kind, "created": created, "model": req.served.name, "choices": choices, "usage": _usage(req, answers)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest):
        return await complete(request, chat=False)

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": s.name, "object": "model", "created": s.created, "owned_by": "lmforge", "chat": s.is_chat} for s in served.values()]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "pid": os.getpid(), "models": list(served), "queued": sum(s.batcher.queued() for s in served.values()), "tokens_in_flight": sum(s.batcher.in_flight for s in served.values()), "steps": sum(s.batcher.waves for s in served.values())}

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "chat.html", media_type="text/html")

    @app.exception_handler(404)
    async def not_found(request, exc):
        return error(APIError(404, f"no route {request.method} {request.url.path}", code="not_found"))

    @app.exception_handler(405)
    async def not_allowed(request, exc):
        return error(APIError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"))

    return app


class BackgroundServer:
    """A uvicorn server on a thread of this process (tests, benchmarks, notebooks):
    `with BackgroundServer(app) as url: ...`, or `.start()` / `.stop()`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="error"))
        self.thread = None

    def start(self) -> str:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
