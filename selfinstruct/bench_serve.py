"""`make bench`, serve part: a real `selfinstruct serve` process on a free localhost port, answering the same
bounded set of questions one at a time and then 8 at a time. Prints requests/s, p50/p95 latency and the ratio
of batched to sequential throughput, measured in this script on this machine (run after bench.py, whose run
folder and adapter it serves; or pass RUN ADAPTER)."""

import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .bench import publish

OUT = Path("outputs/bench")
REQUESTS = 16  # per concurrency level: bounded in count, and each answer in tokens
MAX_TOKENS = 32


def start_server(run: Path, adapter: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "selfinstruct", "serve", "--run", str(run), "--adapter",
                                str(adapter), "--port", "0", "--batch-size", "8"], stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        found = re.search(r"at (http://\S+/v1)", line)
        if found:
            return process, found.group(1)
    raise RuntimeError(f"serve did not start (exit {process.wait()})")


def load(url: str, model: str, questions: list[str], concurrency: int) -> dict:
    import httpx

    def one(question: str) -> float:
        started = time.perf_counter()
        reply = httpx.post(f"{url}/chat/completions", timeout=600, json={
            "model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": question}]})
        reply.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(one, questions))
    seconds = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(questions), "seconds": round(seconds, 2),
            "requests_per_second": round(len(questions) / seconds, 3),
            "p50_latency_s": round(statistics.median(latencies), 2),
            "p95_latency_s": round(latencies[min(len(latencies) - 1, round(0.95 * len(latencies)))], 2)}


def main(argv: list[str]) -> int:
    run, adapter = (Path(argv[0]), Path(argv[1])) if len(argv) == 2 else (OUT / "gen-transformers", OUT / "adapter")
    pairs = [json.loads(line) for line in (run / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = [p["question"] for p in pairs][:REQUESTS]
    process, url = start_server(run, adapter)
    try:
        load(url, run.name, questions[:2], 2)  # warm-up, not timed
        results = {f"concurrency_{c}": load(url, run.name, questions, c) for c in (1, 8)}
    finally:
        process.terminate()
        process.wait(timeout=60)
    results["batched_vs_sequential_throughput"] = round(
        results["concurrency_8"]["requests_per_second"] / results["concurrency_1"]["requests_per_second"], 2)
    publish("serve", results, OUT / "serve.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
