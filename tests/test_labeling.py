"""The labeling page's store, its HTTP API, its export, and its survival of SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from lmforge.serve.labeling import LabelStore, export


def _samples(path, n=5, k=4):
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completions": [f"answer {i}.{j}" for j in range(k)], "task": "fact", "meta": {"i": i}}) + "\n" for i in range(n)))
    return path


def test_store_ranks_skips_resumes_and_exports(tmp_path):
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    assert store.add_samples(_samples(tmp_path / "s.jsonl")) == 5
    assert store.add_samples(tmp_path / "s.jsonl") == 0  # loading again adds nothing
    a = store.next_for("ann")
    b = store.next_for("bob")
    assert a["sample_id"] == b["sample_id"] == 1
    assert sorted(x["index"] for x in a["answers"]) == [0, 1, 2, 3]
    assert store.submit("ann", 1, [2, 0, 3, 1], harmful=[3])
    assert not store.submit("ann", 1, [0, 1, 2, 3])  # never twice
    assert store.submit("bob", 1, None)  # a skip
    assert store.next_for("ann")["sample_id"] == 2 and store.next_for("bob")["sample_id"] == 2
    from lmforge.errors import InputError

    with pytest.raises(InputError, match="each once"):
        store.submit("ann", 2, [0, 0, 1, 2])
    with pytest.raises(InputError, match="no sample"):
        store.submit("ann", 99, [0, 1, 2, 3])
    store.close()

    summary = export(db, tmp_path / "rankings.jsonl")
    assert summary == {"rankings": 1, "samples": 5, "annotators": {"ann": 1}}
    (rec,) = [json.loads(x) for x in (tmp_path / "rankings.jsonl").read_text().splitlines()]
    assert rec == {"prompt": "Question 0?", "completions": [f"answer 0.{j}" for j in range(4)], "ranking": [2, 0, 3, 1], "labeler": "ann", "task": "fact", "meta": {"i": 0}, "harmful": [3]}
    # the export is what the reward model reads
    from lmforge.data.comparisons import read_comparisons

    comparisons, _ = read_comparisons(tmp_path / "rankings.jsonl")
    assert len(comparisons) == 1


def test_label_cli_bad_input(cli, tmp_path):
    code, _, err = cli("label", "export", "--db", tmp_path / "none.sqlite", "--out", tmp_path / "r.jsonl")
    assert code == 2 and "none.sqlite" in err and "Traceback" not in err
    code, _, err = cli("label", "export", "--db", tmp_path / "x.sqlite")
    assert code == 2 and "--out" in err
    code, _, err = cli("label", "--samples", tmp_path / "s.jsonl")
    assert code == 2 and "--labeler" in err
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    code, _, err = cli("label", "export", "--db", tmp_path / "junk.sqlite", "--out", tmp_path / "r.jsonl")
    assert code == 2 and "junk.sqlite" in err and not (tmp_path / "r.jsonl").exists()
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "completions": ["only one"]}\n')
    code, _, err = cli("label", "serve", "--samples", tmp_path / "bad.jsonl", "--db", tmp_path / "l.sqlite")
    assert code == 2 and "bad.jsonl:1" in err and "completions" in err


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _start(tmp_path, port, samples=True):
    pytest.importorskip("uvicorn")
    args = [sys.executable, "-m", "lmforge", "label", "serve", "--db", str(tmp_path / "labels.sqlite"), "--port", str(port)]
    if samples:
        args += ["--samples", str(tmp_path / "s.jsonl")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            if _call(f"http://127.0.0.1:{port}/api/stats")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stderr.read().decode())


def test_labels_survive_sigkill(tmp_path):
    """Every ranking the server acknowledged is in the export after a SIGKILL and a restart; a
    ranking re-sent after the restart is refused, so none is stored twice."""
    _samples(tmp_path / "s.jsonl", n=12)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    acked = []
    try:
        for name in ("ann", "bob"):
            for _ in range(4):
                sample = _call(f"{url}/api/next?annotator={name}")[1]["sample"]
                ranking = [a["index"] for a in sample["answers"]]
                status, body = _call(f"{url}/api/label", {"annotator": name, "sample_id": sample["sample_id"], "ranking": ranking})
                assert status == 200 and body["saved"]
                acked.append((name, sample["sample_id"], ranking))
        # bad submissions are refused with the field named
        assert _call(f"{url}/api/label", {"annotator": "ann", "sample_id": 9, "ranking": [0, 0, 1, 2]})[0] == 400
        assert _call(f"{url}/api/label", {"annotator": "", "sample_id": 9, "ranking": [0, 1, 2, 3]})[1]["error"]["field"] == "annotator"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    proc = _start(tmp_path, port, samples=False)  # resumes from the database alone
    try:
        name, sid, ranking = acked[0]
        assert _call(f"{url}/api/label", {"annotator": name, "sample_id": sid, "ranking": ranking})[0] == 409
        assert _call(f"{url}/api/next?annotator=ann")[1]["sample"]["sample_id"] == 5  # ann goes on where she stopped
        sample = _call(f"{url}/api/next?annotator=cy")[1]["sample"]
        assert _call(f"{url}/api/label", {"annotator": "cy", "sample_id": sample["sample_id"], "skip": True})[0] == 200
    finally:
        proc.terminate()
        proc.wait()
    out = tmp_path / "rankings.jsonl"
    assert subprocess.run([sys.executable, "-m", "lmforge", "label", "export", "--db", str(tmp_path / "labels.sqlite"), "--out", str(out)]).returncode == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    got = sorted((r["labeler"], int(r["prompt"].split()[1].rstrip("?")) + 1, r["ranking"]) for r in recs)
    assert got == sorted(acked)
