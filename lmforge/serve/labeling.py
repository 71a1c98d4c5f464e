"""The labeling page: people rank sampled answers, as InstructGPT's labelers did (`lmforge label serve`).

A samples file (what `lmforge sample` writes: a prompt and its K answers) is loaded into a
SQLite database; the page at / asks an annotator for a name, then shows one prompt at a time
with its K answers in an order shuffled per annotator (so position does not pick the winner),
and takes a ranking (best first), the answers flagged as harmful, or a skip. Several annotators
label at once; each sees every prompt they have not yet ranked or skipped.

Nothing is lost: the database is in WAL mode with synchronous=FULL and each submission is its
own transaction, committed before the page is answered, so a server killed mid-session (even by
SIGKILL) restarts with every acknowledged ranking; a (sample, annotator) pair is unique, so a
re-sent submission is answered "already labeled" and never stored twice. Loading the samples
again into the same database adds new ones only, so a session resumes.

`export(db, out)` writes the rankings in the schema `lmforge rm` reads (and `lmforge label
--labeler human:FILE` matches to samples): {"prompt", "completions", "ranking", "labeler",
"finished"?, "task"?, "meta"?, "harmful"?}.
"""

# no `from __future__ import annotations`: FastAPI reads the route functions' annotations at definition
import json
import random
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,      -- prompt and completions: the same sample loaded twice is one row
    record TEXT NOT NULL           -- the sample's JSON record
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    annotator TEXT NOT NULL,
    ranking TEXT,                  -- JSON list of completion indices, best first; NULL when skipped
    harmful TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    UNIQUE (sample_id, annotator)
);
"""


def _connect(path: str | Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the page hears "saved"
    con.execute("PRAGMA foreign_keys=ON")
    return con


class LabelStore:
    """The samples and the rankings people gave them (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.con = _connect(self.path)
            self.con.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise InputError(f"not a labels database ({e})", path=self.path) from None
        self.lock = threading.Lock()

    def close(self) -> None:
        self.con.close()

    def add_samples(self, path: str | Path, limit: int | None = None) -> int:
        """Load a samples file; returns how many samples were new."""
        from ..label import prompt_key, read_samples

        samples = read_samples(path, limit)
        if not samples:
            raise InputError("no samples to label", path=path)
        added = 0
        with self.lock:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                for s in samples:
                    record = {"prompt": s.prompt, "completions": s.completions}
                    for name in ("finished", "task", "meta", "model"):
                        if getattr(s, name) is not None:
                            record[name] = getattr(s, name)
                    cur = self.con.execute("INSERT OR IGNORE INTO samples (key, record) VALUES (?, ?)", (prompt_key(s.prompt, s.completions), json.dumps(record, ensure_ascii=False)))
                    added += cur.rowcount
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return added

    def counts(self, annotator: str | None = None) -> dict:
        with self.lock:
            total = self.con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            ranked = self.con.execute("SELECT COUNT(*) FROM labels WHERE ranking IS NOT NULL").fetchone()[0]
            out = {"samples": total, "rankings": ranked}
            if annotator is not None:
                out["done_by_you"] = self.con.execute("SELECT COUNT(*) FROM labels WHERE annotator = ?", (annotator,)).fetchone()[0]
            return out

    def next_for(self, annotator: str) -> dict | None:
        """The next sample `annotator` has neither ranked nor skipped, answers shuffled for them."""
        with self.lock:
            row = self.con.execute(
                "SELECT id, record FROM samples WHERE id NOT IN (SELECT sample_id FROM labels WHERE annotator = ?) ORDER BY id LIMIT 1", (annotator,)
            ).fetchone()
        if row is None:
            return None
        sid, record = row[0], json.loads(row[1])
        order = list(range(len(record["completions"])))
        random.Random(f"{sid}:{annotator}").shuffle(order)
        prompt = record["prompt"]
        if isinstance(prompt, list):
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
        return {"sample_id": sid, "prompt": prompt, "answers": [{"index": i, "text": record["completions"][i]} for i in order]}

    def submit(self, annotator: str, sample_id: int, ranking: list[int] | None, harmful: list[int] | None = None) -> bool:
        """Store one ranking (None: a skip). False if this annotator already labeled the sample."""
        with self.lock:
            row = self.con.execute("SELECT record FROM samples WHERE id = ?", (sample_id,)).fetchone()
            if row is None:
                raise InputError(f"no sample {sample_id}", field="sample_id")
            k = len(json.loads(row[0])["completions"])
            if ranking is not None and sorted(ranking) != list(range(k)):
                raise InputError(f"must order all {k} answers, each once (indices 0..{k - 1}), got {ranking}", field="ranking")
            harmful = sorted(set(harmful or []))
            if any(not 0 <= h < k for h in harmful):
                raise InputError(f"answer indices are 0..{k - 1}, got {harmful}", field="harmful")
            try:
                self.con.execute(
                    "INSERT INTO labels (sample_id, annotator, ranking, harmful, created) VALUES (?, ?, ?, ?, ?)",
                    (sample_id, annotator, None if ranking is None else json.dumps(ranking), json.dumps(harmful), time.time()),
                )  # autocommit: one transaction, durable before we answer
            except sqlite3.IntegrityError:
                return False
            return True

    def rankings(self) -> list[dict]:
        """Every ranking (not the skips) as ranking records, in the order they were given."""
        with self.lock:
            rows = self.con.execute(
                "SELECT s.record, l.ranking, l.annotator, l.harmful FROM labels l JOIN samples s ON s.id = l.sample_id WHERE l.ranking IS NOT NULL ORDER BY l.id"
            ).fetchall()
        out = []
        for record, ranking, annotator, harmful in rows:
            r = json.loads(record)
            rec = {"prompt": r["prompt"], "completions": r["completions"], "ranking": json.loads(ranking), "labeler": annotator}
            for name in ("finished", "task", "meta"):
                if name in r:
                    rec[name] = r[name]
            if json.loads(harmful):
                rec["harmful"] = json.loads(harmful)
            out.append(rec)
        return out


def open_store(path: str | Path, *, create: bool) -> LabelStore:
    p = Path(path)
    if not create and not p.exists():
        raise InputError("no labels database here (make one with `lmforge label serve --samples FILE --db DB`)", path=p)
    if create and not p.parent.exists():
        raise InputError("the folder does not exist", path=p.parent)
    return LabelStore(p)


def export(db: str | Path, out: str | Path) -> dict:
    """Write the rankings as JSONL (atomically); returns counts."""
    from ..io import atomic_write_text

    store = open_store(db, create=False)
    try:
        records = store.rankings()
        counts = store.counts()
    finally:
        store.close()
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    by: dict[str, int] = {}
    for r in records:
        by[r["labeler"]] = by.get(r["labeler"], 0) + 1
    return {"rankings": len(records), "samples": counts["samples"], "annotators": by}


def create_label_app(store: LabelStore):
    """The labeling page and its JSON API (GET /api/next, POST /api/label, GET /api/stats)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse

    app = FastAPI(title="lmforge labeling", docs_url=None, redoc_url=None)
    page = Path(__file__).parent / "static" / "label.html"

    def bad(message: str, field: str | None = None, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "field": field}}, status_code=status)

    def annotator_of(value) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 64:
            return None
        return value.strip()

    @app.get("/")
    async def index():
        return FileResponse(page, media_type="text/html")

    @app.get("/api/next")
    async def next_sample(annotator: str = ""):
        name = annotator_of(annotator)
        if name is None:
            return bad("give your name (1 to 64 characters)", "annotator")
        return {"sample": store.next_for(name), **store.counts(name)}

    @app.post("/api/label")
    async def label(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return bad(f"the body is not valid JSON: {e}")
        if not isinstance(body, dict):
            return bad("the body must be a JSON object")
        name = annotator_of(body.get("annotator"))
        if name is None:
            return bad("give your name (1 to 64 characters)", "annotator")
        sid, skip = body.get("sample_id"), bool(body.get("skip", False))
        ranking, harmful = body.get("ranking"), body.get("harmful", [])
        if not isinstance(sid, int):
            return bad("must be an integer", "sample_id")
        if not skip and (not isinstance(ranking, list) or not all(isinstance(i, int) for i in ranking)):
            return bad("must be a list of answer indices, best first", "ranking")
        if not isinstance(harmful, list) or not all(isinstance(i, int) for i in harmful):
            return bad("must be a list of answer indices", "harmful")
        try:
            saved = store.submit(name, sid, None if skip else ranking, harmful)
        except InputError as e:
            return bad(e.message, e.field)
        if not saved:
            return bad(f"{name} has already labeled sample {sid}", "sample_id", status=409)
        return {"saved": True, **store.counts(name)}

    @app.get("/api/stats")
    async def stats():
        return store.counts()

    return app
