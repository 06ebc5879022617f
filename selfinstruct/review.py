"""`selfinstruct review`: a local page where a domain expert accepts, rejects or edits each pair before tune.

Decisions go to `RUN/review.jsonl`, one JSON line each, appended and fsynced as they are made, so a killed
server loses nothing already saved; the last line for a pair wins, and a line torn by a kill is dropped when
the file is next opened. `tune` and `export` read the pairs through `reviewed_pairs`: rejected ones dropped,
edited ones rewritten in the run's own chat format.

The page (review.html) puts every corpus and model string on screen with `textContent`, never as HTML, so a
corpus that holds `<script>` shows it as text. Standard library HTTP on 127.0.0.1: nothing to install."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .config import UserError
from .corpus import read_corpus
from .prompts import chat_messages, render_llama2
from .runs import Manifest, append_jsonl, pick_run, read_jsonl, write_jsonl

REVIEW_FILE = "review.jsonl"
DECISIONS = ("accept", "reject", "edit")
CONTEXT_CHARS = 320  # window text shown either side of a pair's evidence
MAX_EDIT_CHARS = 2000


def decision_lines(run_dir: Path) -> tuple[list[dict], bool]:
    """Every decision in review.jsonl in order, and whether some line was torn (a kill mid-write) or foreign."""
    path = run_dir / REVIEW_FILE
    good, bad = [], False
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and record.get("decision") in DECISIONS and isinstance(record.get("id"), str):
            good.append(record)
        else:
            bad = True
    return good, bad


def read_decisions(run_dir: Path) -> dict[str, dict]:
    """The latest decision per pair id."""
    return {record["id"]: record for record in decision_lines(run_dir)[0]}


def edited(pair: dict, decision: dict, manifest: Manifest) -> dict:
    """The pair with the reviewer's question and answer, in the same tagged Llama-2 form generate writes."""
    messages = chat_messages(manifest.system_prompt, manifest.tag, decision["question"], decision["answer"])
    return {**pair, "question": decision["question"], "answer": decision["answer"], "messages": messages,
            "text": render_llama2(messages), "reviewed": "edited"}


def reviewed_pairs(run_dir: Path, manifest: Manifest, pairs: list[dict]) -> tuple[list[dict], dict]:
    """The pairs tune trains on after review: rejected dropped, edited replaced; and what was done to them."""
    decisions = read_decisions(run_dir)
    kept, rejected, edits, accepted = [], [], [], 0
    for pair in pairs:
        decision = decisions.get(pair.get("id"), {}).get("decision")
        if decision == "reject":
            rejected.append(pair["id"])
        elif decision == "edit":
            kept.append(edited(pair, decisions[pair["id"]], manifest))
            edits.append(pair["id"])
        else:
            kept.append(pair)
            accepted += decision == "accept"
    counts = {"reviewed": bool(decisions), "accepted": accepted, "rejected": len(rejected), "edited": len(edits),
              "unreviewed": len(pairs) - accepted - len(rejected) - len(edits),
              "rejected_ids": rejected, "edited_ids": edits}
    return kept, counts


def check_decision(body: dict, ids: set[str]) -> dict:
    """A decision from the page, checked: a known pair, a known verb, and for an edit a non-empty question and
    answer of sane length."""
    if not isinstance(body, dict) or body.get("id") not in ids:
        raise ValueError("unknown pair id")
    if body.get("decision") not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    record = {"id": body["id"], "decision": body["decision"], "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if body["decision"] == "edit":
        for name in ("question", "answer"):
            text = body.get(name)
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_EDIT_CHARS:
                raise ValueError(f"an edit needs {name} text of 1 to {MAX_EDIT_CHARS} characters")
            record[name] = " ".join(text.split())
    return record


def in_context(pair: dict, corpus: str) -> dict:
    """The text around a pair's evidence (or its window start), cut in three so the page can mark the middle,
    and cut at spaces so no word is shown in half."""
    first, last = pair.get("start", 0), pair.get("end", len(corpus))
    start, end = pair.get("evidence") or (first, first)
    lo, hi = max(first, start - CONTEXT_CHARS), min(last, end + CONTEXT_CHARS)
    before, after = corpus[lo:start], corpus[end:hi]
    if lo > first and " " in before:
        before = "… " + before.split(" ", 1)[1]
    if hi < last and " " in after:
        after = after.rsplit(" ", 1)[0] + " …"
    return {"before": before, "evidence": corpus[start:end], "after": after}


PAIR_FIELDS = ("id", "window", "question", "answer", "answerable", "kind", "key", "support", "origin", "entity",
               "replaces", "absence")
REJECT_FIELDS = ("window", "fact_id", "question", "key", "origin", "reason", "raw", "roundtrip", "text")


class ReviewState:
    """What the page shows, read once at start; decisions appended under one lock."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.lock = run_dir, threading.Lock()
        self.manifest = Manifest.read(run_dir)
        self.pairs = read_jsonl(run_dir / "qa.jsonl", required=("id", "question", "answer", "answerable"))
        if not self.pairs:
            raise UserError(f"{run_dir / 'qa.jsonl'} has no pairs to review: run generate first")
        rejects_path = run_dir / "rejects.jsonl"
        self.rejects = read_jsonl(rejects_path) if rejects_path.is_file() else []
        corpus = read_corpus(self.manifest.corpus_path, self.manifest.language) if self.manifest.corpus_path else None
        # A corpus changed since generate has other offsets: no context rather than the wrong one.
        text = corpus.text if corpus and corpus.sha256 == self.manifest.corpus_sha256 else ""
        self.shown = [{**{k: p.get(k) for k in PAIR_FIELDS}, **in_context(p, text)} for p in self.pairs]
        self.ids = {p["id"] for p in self.pairs}
        # A line a kill tore is dropped (the rest written back in one rename) before new ones are appended.
        history, torn = decision_lines(run_dir)
        if torn:
            write_jsonl(run_dir / REVIEW_FILE, history)

    def data(self) -> dict:
        return {"run": self.run_dir.name, "tag": self.manifest.tag, "pairs": self.shown,
                "rejects": [{k: r.get(k) for k in REJECT_FIELDS if k in r} for r in self.rejects],
                "decisions": read_decisions(self.run_dir)}

    def decide(self, body: dict) -> dict:
        record = check_decision(body, self.ids)
        with self.lock:
            append_jsonl(self.run_dir / REVIEW_FILE, [record])
        return record


def make_handler(state: ReviewState):
    page = (Path(__file__).with_name("review.html")).read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # The page runs only its own script: nothing injected into it could execute even if it got in.
            self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                             "style-src 'self' 'unsafe-inline'; "
                             "connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, data) -> None:
            self.send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

        def do_GET(self):  # noqa: N802 (the http.server name)
            if self.path in ("/", "/index.html"):
                self.send(200, page, "text/html; charset=utf-8")
            elif self.path == "/api/data":
                self.send_json(200, state.data())
            else:
                self.send_json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if self.path != "/api/decide":
                return self.send_json(404, {"error": "not found"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(min(length, 64_000)) or b"null")
                self.send_json(200, state.decide(body))
            except (ValueError, json.JSONDecodeError) as e:
                self.send_json(400, {"error": str(e)})

        def log_message(self, *args):  # one line per request on stderr would bury the URL
            pass

    return Handler


def start_server(run_dir: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A review server for a run folder, not yet serving (the caller runs serve_forever)."""
    state = ReviewState(run_dir)
    try:
        return ThreadingHTTPServer((host, port), make_handler(state))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def run(config) -> int:
    run_dir = pick_run(config.run)
    server = start_server(run_dir, config.host, config.port)
    host, port = server.server_address[:2]
    print(f"review: {run_dir} at http://{host}:{port}/  (decisions -> {run_dir / REVIEW_FILE}; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
