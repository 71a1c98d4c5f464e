"""The OpenAI-compatible server, its batching and limits, and the terminal chat."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class Server:
    """The app served on a thread for the tests of a module."""

    def __init__(self, app):
        from lmforge.serve.app import BackgroundServer

        self.bg = BackgroundServer(app)
        self.url = self.bg.start()

    def stop(self):
        self.bg.stop()


@pytest.fixture(scope="module")
def served(chain):
    from lmforge.serve.app import Limits, create_app, load_served

    limits = Limits(max_queue=16, max_batch=16, max_tokens=64, default_max_tokens=16, timeout_s=30)
    models = load_served({"sft": str(chain / "sft"), "base": str(chain / "base")}, limits)
    server = Server(create_app(models, api_key="secret", limits=limits))
    yield server, models
    server.stop()


@pytest.fixture
def client(served):
    openai = pytest.importorskip("openai")
    server, _ = served
    return openai.OpenAI(base_url=server.url + "/v1", api_key="secret", max_retries=0)


def test_openai_client_chat_and_completion(client, served):
    _, models = served
    assert {m.id for m in client.models.list().data} == {"sft", "base"}

    r = client.chat.completions.create(model="sft", messages=[{"role": "user", "content": "Where does Rila live?"}], max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens == len(models["sft"].tokenizer.encode_plain(" " + text)) or r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    # streamed, greedy: the same answer as the whole response
    pieces, finish = [], None
    for chunk in client.chat.completions.create(model="sft", messages=[{"role": "user", "content": "Where does Rila live?"}], max_tokens=12, temperature=0, stream=True):
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == text and finish == r.choices[0].finish_reason

    c = client.completions.create(model="base", prompt="The Zorblat", max_tokens=10, temperature=0)
    assert c.object == "text_completion" and c.choices[0].text and c.usage.completion_tokens <= 10
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(model="base", prompt="The Zorblat", max_tokens=10, temperature=0, stream=True) if ch.choices)
    assert streamed == c.choices[0].text


def test_sampling_options(client):
    msgs = [{"role": "user", "content": "Tell me a story about Rila."}]
    a = client.chat.completions.create(model="sft", messages=msgs, max_tokens=20, temperature=1.0, seed=7, n=3)
    b = client.chat.completions.create(model="sft", messages=msgs, max_tokens=20, temperature=1.0, seed=7, n=3)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]  # a seed reproduces
    assert [c.index for c in a.choices] == [0, 1, 2]
    # a stop string cuts the answer before it
    full = client.completions.create(model="base", prompt="The", max_tokens=30, temperature=0).choices[0].text
    word = full.split()[2] if len(full.split()) > 2 else full.strip()[:2]
    cut = client.completions.create(model="base", prompt="The", max_tokens=30, temperature=0, stop=[word]).choices[0]
    assert cut.text == full[: full.index(word)] and cut.finish_reason == "stop"
    # max_tokens bounds the answer; a long one ends with "length"
    r = client.completions.create(model="base", prompt="The", max_tokens=3, temperature=1.0)
    assert r.usage.completion_tokens <= 3
    streamed = list(client.chat.completions.create(model="sft", messages=msgs, max_tokens=5, stream=True, stream_options={"include_usage": True}))
    assert streamed[-1].usage is not None and streamed[-1].usage.completion_tokens <= 5


class Reply:
    def __init__(self, status: int, text: str):
        self.status_code, self.text = status, text

    def json(self):
        return json.loads(self.text)


def _http(method, url, data=None, headers=None) -> Reply:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return Reply(r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read().decode())


def _post(url, path, body, key="secret", raw=None) -> Reply:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return _http("POST", url + path, raw if raw is not None else json.dumps(body).encode(), headers)


def _get(url, key=None) -> Reply:
    return _http("GET", url, headers={"Authorization": f"Bearer {key}"} if key else {})


@pytest.mark.parametrize(
    "body,raw,key,status,param",
    [
        (None, b"{not json", "secret", 400, None),
        ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, None, "secret", 404, "model"),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, None, "secret", 400, "max_tokens"),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, None, "secret", 400, "max_tokens"),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi " * 400}]}, None, "secret", 400, "messages"),
        ({"model": "sft", "messages": [{"role": "robot", "content": "hi"}]}, None, "secret", 400, "messages[0].role"),
        ({"model": "sft", "messages": []}, None, "secret", 400, "messages"),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, None, "secret", 400, "temperature"),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi"}]}, None, "wrong", 401, None),
        ({"model": "sft", "messages": [{"role": "user", "content": "hi"}]}, None, None, 401, None),
        (None, b'{"model": "sft", "messages": [], "pad": "' + b"x" * (2 << 20) + b'"}', "secret", 413, None),
        (None, b'"a string"', "secret", 400, None),
    ],
)
def test_bad_requests_get_openai_errors(served, body, raw, key, status, param):
    server, _ = served
    r = _post(server.url, "/v1/chat/completions", body, key=key, raw=raw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] and err["param"] == param


def test_bad_completion_prompt_and_routes(served):
    server, _ = served
    r = _post(server.url, "/v1/completions", {"model": "base", "prompt": "word " * 400})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = _post(server.url, "/v1/completions", {"model": "base", "prompt": 42})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = _get(server.url + "/v1/nothing", key="secret")
    assert r.status_code == 404 and "error" in r.json()
    assert _get(server.url + "/health").json()["status"] == "ok"  # no key needed
    assert "lmforge chat" in _get(server.url + "/").text


def test_200_concurrent_requests_answered_or_refused(served):
    """Load: every request is answered or refused (429/503); the server lives on, and the
    requests it answered shared forward passes."""
    server, models = served
    batcher = models["sft"].batcher
    waves0, rows0 = batcher.waves, batcher.rows_served

    def one(i):
        try:
            r = _post(server.url, "/v1/chat/completions", {"model": "sft", "messages": [{"role": "user", "content": f"Where does Rila live? {i}"}], "max_tokens": 8})
            return r.status_code, r.json()
        except OSError as e:  # a refused or dropped connection would count as a crash
            return -1, str(e)

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    codes = [c for c, _ in results]
    assert set(codes) <= {200, 429, 503}, set(codes)
    assert codes.count(200) >= 16
    assert all("error" in b for c, b in results if c != 200)
    assert all(b["choices"][0]["message"]["content"] is not None for c, b in results if c == 200)
    answered = codes.count(200)
    assert batcher.waves - waves0 < answered and batcher.rows_served - rows0 >= answered  # batched
    ok = _post(server.url, "/v1/chat/completions", {"model": "sft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert ok.status_code == 200


def test_batched_answers_equal_answers_alone(chain):
    """A greedy answer does not depend on what it shares a forward pass with."""
    import asyncio

    from lmforge.data import chat
    from lmforge.engine import SamplingParams
    from lmforge.models import load_model
    from lmforge.serve.batcher import Batcher, Job
    from lmforge.tokenizer import Tokenizer

    model, folder = load_model(chain / "sft")
    tok = Tokenizer.load(folder)
    prompts = [chat.prompt_ids(tok, [{"role": "user", "content": q}]) for q in ["Where does Rila live?", "What is 2 + 3?", "Sort these words: b, a."]]

    async def ask(batcher, prompts):
        jobs = [Job([p], SamplingParams(max_new_tokens=10, temperature=0, stop_ids=chat.stop_ids(tok))) for p in prompts]
        for j in jobs:
            batcher.submit(j)
        out = []
        for j in jobs:
            toks = []
            while True:
                _, t, end = await j.events.get()
                if end:
                    break
                toks.append(t)
            out.append(toks)
        return out

    alone, together = Batcher(model.eval(), pad_id=tok.pad_id, mode="off"), Batcher(model.eval(), pad_id=tok.pad_id)
    try:
        a = asyncio.run(ask(alone, prompts))
        b = asyncio.run(ask(together, prompts))
    finally:
        alone.close()
        together.close()
    assert a == b and alone.waves == 3
    import shutil

    if shutil.which("g++"):  # the decode step compiled (`serve --compile`), two rows: graphs for batches of 1 and 2
        compiled = Batcher(model.eval(), pad_id=tok.pad_id, max_batch=2, compile=True)
        try:
            assert asyncio.run(ask(compiled, prompts)) == a
        finally:
            compiled.close()


def test_the_token_budget_refuses_with_429_and_retry_after_and_a_cancelled_stream_frees_its_row(chain):
    """A request holds n * (prompt + max_tokens) tokens while queued or running; one that would
    take the total past the budget is refused at once with 429 and Retry-After. A streamed request
    whose client goes away leaves the batch at the next step, and its tokens return."""
    import http.client
    import time
    from urllib.parse import urlparse

    from lmforge.serve.app import Limits, create_app, load_served

    limits = Limits(max_batch=4, max_tokens=64, max_tokens_in_flight=120, timeout_s=30)
    models = load_served({"sft": str(chain / "sft")}, limits)
    batcher = models["sft"].batcher
    engine, added = batcher.engine, []
    step, add = engine.step, engine.add
    engine.step = lambda: (time.sleep(0.02), step())[1]  # slow enough that an answer of 64 tokens is still running
    engine.add = lambda *a, **k: added.append(add(*a, **k)) or added[-1]
    server = Server(create_app(models, limits=limits))
    try:
        body = {"model": "sft", "messages": [{"role": "user", "content": "Where does Rila live?"}], "max_tokens": 64, "temperature": 1.0, "seed": 0, "stream": True, "stop": ["never said"]}
        host = urlparse(server.url)
        held = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        held.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        stream = held.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b"data: ")  # running, its tokens held
        assert batcher.in_flight > 64
        req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps({**body, "stream": False}).encode(), headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 429 and int(refused.value.headers["Retry-After"]) >= 1
        assert "tokens are in flight" in json.loads(refused.value.read())["error"]["message"]
        small = _post(server.url, "/v1/chat/completions", {**body, "stream": False, "max_tokens": 4}, key=None)
        assert small.status_code == 200  # what fits the budget beside it is answered
        held.close()  # the client goes away mid-answer
        for _ in range(200):
            if batcher.in_flight == 0 and not batcher.engine.rows:
                break
            time.sleep(0.05)
        assert batcher.in_flight == 0 and not batcher.engine.rows and batcher.engine.cache.lengths.sum() == 0
        assert added[0].end == "cancelled" and 0 < len(added[0].tokens) < 64  # it left mid-answer
        assert _post(server.url, "/v1/chat/completions", {**body, "stream": False}, key=None).status_code == 200
    finally:
        server.stop()


def test_terminal_chat(chain):
    from lmforge.engine import SamplingParams
    from lmforge.models import load_model
    from lmforge.serve.terminal import chat_loop
    from lmforge.tokenizer import Tokenizer

    model, folder = load_model(chain / "sft")
    tok = Tokenizer.load(folder)
    out = io.StringIO()
    n = chat_loop(model.eval(), tok, SamplingParams(max_new_tokens=8, temperature=0), inp=io.StringIO("/system Be brief.\nWhere does Rila live?\n/reset\n/what\nHello\n/exit\nnever read\n"), out=out)
    text = out.getvalue()
    assert n == 2 and text.count("model> ") == 2
    assert "(system message set)" in text and "(conversation reset)" in text and "unknown command /what" in text


def test_serve_cli_bad_input(cli, tmp_path):
    code, _, err = cli("serve", "--model", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err and "Traceback" not in err
    code, _, err = cli("serve", "--model", "a=x", "--model", "a=y", "--max-queue", "0")
    assert code == 2 and "max-queue" in err
    code, _, err = cli("serve", "--model", str(tmp_path / "missing"), "--workers", "2")
    assert code == 2 and "missing" in err and "Traceback" not in err


def test_several_worker_processes_serve_one_port(chain, tmp_path):
    """`lmforge serve --workers 2`: two processes, each with its own copy of the model, behind one
    port; every request is answered, by both of them."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", "--model", f"sft={chain / 'sft'}", "--workers", "2", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        pids, deadline = set(), time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                pids.add(_get(url + "/health").json()["pid"])
            except OSError:
                time.sleep(0.5)
        assert len(pids) == 2 and proc.pid not in pids
        body = {"model": "sft", "messages": [{"role": "user", "content": "Where does Rila live?"}], "max_tokens": 8}
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(lambda _: _post(url, "/v1/chat/completions", body, key=None).status_code, range(32)))
        assert codes == [200] * 32
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_servers_bind_localhost_by_default():
    from lmforge.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "--model", "m"]).host == "127.0.0.1"
    assert parser.parse_args(["label", "serve", "--db", "l.sqlite"]).host == "127.0.0.1"


def test_chat_command_reads_turns_from_stdin(cli, chain, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 3?\n/reset\nWhere does Rila live?\n"))
    code, out, err = cli("chat", "--model", chain / "sft", "--temperature", "0", "--max-new-tokens", "6")
    assert code == 0 and out.count("model> ") == 2 and "(conversation reset)" in out
    code, _, err = cli("chat", "--model", chain / "sft", "--top-p", "0")
    assert code == 2 and "top_p" in err
