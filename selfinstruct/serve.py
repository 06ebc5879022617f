"""`selfinstruct serve`: the tuned model behind an OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`,
streaming included), with the closed-book system prompt and the confidence gate: a gated refusal is an ordinary
assistant message.

A small FastAPI app over the transformers engine rather than vLLM's own server: the gate reads the tuned and
refusal log-probs, which only the transformers engine exposes (and on a CPU without bf16 it is also the faster
engine, backends/__init__.py). Concurrent requests are answered together: one worker thread takes whatever is
waiting, up to --batch-size, into one batched generate. A bad request gets an OpenAI-style error with a 4xx
status; the server stays up."""


import asyncio
import json
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field

from .ask import answer_questions, load_tuned
from .runs import Manifest


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


@dataclass
class Job:
    question: str
    max_new_tokens: int
    future: Future = field(default_factory=Future)


class Batcher:
    """One thread owns the engine; requests queue up and are answered in batches of what is waiting."""

    def __init__(self, generator, manifest: Manifest, gate: dict | None, batch_size: int):
        self.generator, self.manifest, self.gate, self.batch_size = generator, manifest, gate, batch_size
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.batches: list[int] = []  # sizes, for the record
        threading.Thread(target=self.loop, daemon=True).start()

    def submit(self, question: str, max_new_tokens: int) -> Future:
        job = Job(question, max_new_tokens)
        self.jobs.put(job)
        return job.future

    def loop(self) -> None:
        while True:
            waiting = [self.jobs.get()]
            while len(waiting) < self.batch_size:
                try:
                    waiting.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            self.batches.append(len(waiting))
            by_length = defaultdict(list)  # one generate call takes one max_new_tokens
            for job in waiting:
                by_length[job.max_new_tokens].append(job)
            for max_new_tokens, jobs in by_length.items():
                try:
                    rows = answer_questions(self.generator, [j.question for j in jobs], self.manifest, self.gate,
                                            max_new_tokens, self.batch_size, progress=False)
                except Exception as e:  # the engine failed: these requests get a 500 each, the server lives on
                    for job in jobs:
                        job.future.set_exception(e)
                    continue
                for job, row in zip(jobs, rows, strict=True):
                    job.future.set_result(row)


def parse_request(body, model_name: str, tokenizer, config) -> tuple[str, int, bool]:
    """The question (the last user message), max_new_tokens and stream flag, or a RequestError."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if body.get("model") != model_name:
        raise RequestError(404, f"the model {body.get('model')!r} does not exist; this server has {model_name!r}",
                           code="model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects", code="messages")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool") \
                or not isinstance(m.get("content"), str):
            raise RequestError(400, "each message needs a role and a text content", code="messages")
    users = [m["content"].strip() for m in messages if m["role"] == "user"]
    if not users or not users[-1]:
        raise RequestError(400, "no user message to answer", code="messages")
    question = users[-1]  # closed-book QA: one question, answered under the run's own system prompt
    if len(tokenizer(question, add_special_tokens=False)["input_ids"]) > config.max_question_tokens:
        raise RequestError(400, f"the question is longer than {config.max_question_tokens} tokens",
                           code="context_length_exceeded")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise RequestError(400, "'max_tokens' must be a positive integer", code="max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "'stream' must be true or false", code="stream")
    return question, min(limit or config.max_new_tokens, config.max_new_tokens), stream


def completion(row: dict, model_name: str, request_id: str) -> dict:
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": row["answer"]},
                         "finish_reason": "stop"}],
            "usage": None, "selfinstruct": {k: row[k] for k in ("refused", "gated", "confidence", "threshold")}}


def stream_chunks(row: dict, model_name: str, request_id: str):
    """The answer as server-sent events, a word a chunk (the gate decides on the whole answer first)."""
    base = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_name}
    words = row["answer"].split(" ")
    deltas = [{"role": "assistant", "content": ""}] + [{"content": w if i == 0 else f" {w}"}
                                                       for i, w in enumerate(words)]
    for delta in deltas:
        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n"
    yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
    yield "data: [DONE]\n\n"


def make_app(batcher: Batcher, model_name: str, tokenizer, config, api_key: str | None):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="selfinstruct", docs_url=None, redoc_url=None)

    def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                            status_code=status)

    @app.middleware("http")
    async def authorize(request: Request, call_next):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return error(401, "invalid or missing API key (Authorization: Bearer ...)", "authentication_error",
                         "invalid_api_key")
        return await call_next(request)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return error(404, f"no route {request.method} {request.url.path}", code="not_found")

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc):
        return error(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "selfinstruct"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the request body is not valid JSON")
        try:
            question, max_new_tokens, stream = parse_request(body, model_name, tokenizer, config)
        except RequestError as e:
            return error(e.status, e.message, e.kind, e.code)
        try:
            row = await asyncio.wrap_future(batcher.submit(question, max_new_tokens))
        except Exception as e:
            return error(500, f"the model failed on this request: {e}", "server_error")
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if stream:
            return StreamingResponse(stream_chunks(row, model_name, request_id), media_type="text/event-stream")
        return completion(row, model_name, request_id)

    return app


def run(config) -> int:
    import socket

    import uvicorn

    run_dir, manifest, generator, gate = load_tuned(config, "serve")
    model_name = run_dir.name
    api_key = config.api_key or os.environ.get("SELFINSTRUCT_API_KEY") or None
    batcher = Batcher(generator, manifest, gate, config.batch_size)
    app = make_app(batcher, model_name, generator.tokenizer, config, api_key)
    listener = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((config.host, config.port))
    except OSError as e:
        from .config import UserError

        raise UserError(f"cannot listen on {config.host}:{config.port}: {e.strerror}") from None
    host, port = listener.getsockname()[:2]
    gate_line = (f"gate {gate['signal']} < {gate['threshold']}{' or an unknown name' if gate.get('names') else ''} "
                 "refuses") if gate else "no gate"
    print(f"serve: model {model_name!r} ({gate_line}, key {'required' if api_key else 'not required'}) at "
          f"http://{host}:{port}/v1", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    # uvicorn shuts down gracefully on Ctrl-C or SIGTERM, then raises the signal again: that is a clean stop.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    print(f"serve: stopped after {sum(batcher.batches)} requests in {len(batcher.batches)} batches", file=sys.stderr)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
