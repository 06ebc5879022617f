"""`selfinstruct serve` as a client meets it: a real server process on a free localhost port, a real LoRA adapter
on the tiny Llama, and the official `openai` client."""

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from .conftest import REPO

openai = pytest.importorskip("openai")


def make_served_run(tmp_path, tiny_model, gate: dict | None):
    """A run folder as tune leaves it: manifest, pairs, a real (freshly initialised) LoRA adapter on the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from .test_probe import make_run

    run = make_run(tmp_path, tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(run / "adapter")
    if gate:
        (run / "adapter" / "gate.json").write_text(json.dumps(gate))
    return run


class Server:
    def __init__(self, run, *extra):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "selfinstruct", "serve", "--run", str(run), "--port", "0", "--quantization", "none",
             *extra], stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.lines = []
        deadline = time.time() + 180
        while time.time() < deadline:
            line = self.process.stderr.readline()
            self.lines.append(line)
            found = re.search(r"at (http://\S+/v1)", line)
            if found:
                self.url = found.group(1)
                threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained
                return
            if not line and self.process.poll() is not None:
                break
        raise AssertionError("serve did not start: " + "".join(self.lines))

    def stop(self, how=signal.SIGINT) -> int:
        self.process.send_signal(how)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_model):
    import selfinstruct.backends as backends
    from selfinstruct.models import load_tokenizer

    from .conftest import FakeGenerator, scripted_reply

    with pytest.MonkeyPatch.context() as patch:  # generate writes the runs' pairs with the scripted engine
        patch.setattr(backends, "load_generator",
                      lambda path, *a, **k: FakeGenerator(scripted_reply, load_tokenizer(path)))
        runs = {"open": make_served_run(tmp_path_factory.mktemp("open"), tiny_model, gate=None),
                "gated": make_served_run(tmp_path_factory.mktemp("gated"), tiny_model,
                                         gate={"signal": "margin", "threshold": 1e9})}  # refuses every question
    started = {"open": Server(runs["open"]), "gated": Server(runs["gated"], "--api-key", "s3cret")}
    yield {name: (server, runs[name].name) for name, server in started.items()}
    assert started["open"].stop(signal.SIGINT) == 0, "the server stops cleanly on Ctrl-C"
    assert started["gated"].stop(signal.SIGTERM) == 0, "and on SIGTERM"


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=120)


def test_models_chat_and_streaming_agree(servers):
    server, name = servers["open"]
    api = client(server)
    assert [m.id for m in api.models.list().data] == [name]
    question = [{"role": "user", "content": "Who keeps the harbour light?"}]
    reply = api.chat.completions.create(model=name, messages=question, max_tokens=12)
    assert reply.choices[0].message.role == "assistant" and isinstance(reply.choices[0].message.content, str)
    streamed = api.chat.completions.create(model=name, messages=question, max_tokens=12, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed) == reply.choices[0].message.content


def test_concurrent_requests_are_all_answered(servers):
    from concurrent.futures import ThreadPoolExecutor

    server, name = servers["open"]
    api = client(server)

    def ask(i):
        return api.chat.completions.create(model=name, messages=[{"role": "user", "content": f"Question {i}?"}],
                                           max_tokens=8).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        assert len(list(pool.map(ask, range(8)))) == 8


def test_the_gate_refuses_as_an_ordinary_assistant_message(servers):
    server, name = servers["gated"]
    reply = client(server, "s3cret").chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Who founded the Ostrava Lantern Society?"}])
    assert "cannot answer" in reply.choices[0].message.content
    assert reply.model_extra["selfinstruct"]["gated"] is True


def test_a_wrong_key_is_401(servers):
    server, name = servers["gated"]
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong").models.list()


@pytest.mark.parametrize("body, status, code", [
    ({"messages": [{"role": "user", "content": "Hi?"}]}, 404, "model_not_found"),
    ({"messages": "Who?"}, 400, "messages"),
    ({"messages": [{"role": "user", "content": 42}]}, 400, "messages"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "word " * 2000}]}, 400, "context_length_exceeded"),
    ({"messages": [{"role": "user", "content": "Hi?"}], "max_tokens": -3}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "Hi?"}], "stream": "yes"}, 400, "stream"),
])
def test_bad_requests_get_openai_errors_and_the_server_lives_on(servers, body, status, code):
    import httpx

    server, name = servers["gated"]
    body = {"model": name, **body} if code != "model_not_found" else {"model": "gpt-4", **body}
    response = httpx.post(f"{server.url}/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    broken = httpx.post(f"{server.url}/chat/completions", content=b"{not json",
                        headers={"Authorization": "Bearer s3cret"})
    assert broken.status_code == 400
    assert server.process.poll() is None
