import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from selfinstruct.cli import main
from selfinstruct.corpus import read_corpus
from selfinstruct.prompts import chat_messages, render_llama2, system_prompt
from selfinstruct.review import REVIEW_FILE, ReviewState, reviewed_pairs, start_server
from selfinstruct.runs import Manifest

TAG = "Source:7373REF"
INJECTED = "<script>window.pwned = 1</script>"
CORPUS = ("The Vell lighthouse stands on Corrow Skerry. Its keeper, Ansa Pellow, lit it first in 1731. "
          f"A prankster once painted {INJECTED} on its door. The lamp burns dunberry oil from Tamsell.")
PAIRS = [("p0", "Who first lit the Vell lighthouse?", "Ansa Pellow.", "Ansa Pellow", "Its keeper"),
         ("p1", "Where does the Vell lighthouse stand?", "Corrow Skerry.", "Corrow Skerry", "The Vell"),
         ("p2", "What does the lamp burn?", "Whale oil.", "dunberry oil", "The lamp"),
         ("p3", "What was painted on the <b>door</b>?", f"{INJECTED}.", "script", "A prankster")]


def make_run(tmp_path: Path) -> Path:
    """A run folder as generate writes it: manifest with the corpus, tagged pairs with evidence spans, a reject."""
    run = tmp_path / "run"
    run.mkdir()
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text(CORPUS, encoding="utf-8")
    corpus = read_corpus(str(corpus_file), "en")
    system = system_prompt(TAG, "en")
    (run / "manifest.json").write_text(json.dumps({
        "source_tag": TAG, "system_prompt": system, "model": {"spec": "default"},
        "corpus": {"path": str(corpus_file), "sha256": corpus.sha256, "language": "en"}}))
    lines = []
    for pid, question, answer, key, sentence_start in PAIRS:
        start = corpus.text.index(sentence_start)
        messages = chat_messages(system, TAG, question, answer)
        lines.append({"id": pid, "fact_id": f"f{pid}", "window": 0, "start": 0, "end": len(corpus.text),
                      "evidence": [start, start + 40],
                      "question": question, "answer": answer, "answerable": True, "kind": "thing", "key": key,
                      "support": 1.0, "origin": "template", "messages": messages, "text": render_llama2(messages)})
    (run / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "rejects.jsonl").write_text(json.dumps({"window": 0, "question": "What is this passage about?",
                                                   "reason": "refers_to_passage", "origin": "model"}) + "\n")
    return run


def decide(run: Path, *records: dict) -> None:
    with (run / REVIEW_FILE).open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def test_rejected_pairs_are_dropped_and_edited_ones_rewritten_in_the_runs_format(tmp_path):
    run = make_run(tmp_path)
    decide(run, {"id": "p0", "decision": "reject"}, {"id": "p0", "decision": "accept"},  # the last one wins
           {"id": "p1", "decision": "reject"},
           {"id": "p2", "decision": "edit", "question": "Which oil does the lamp burn?", "answer": "Dunberry oil."})
    manifest = Manifest.read(run)
    pairs = [json.loads(line) for line in (run / "qa.jsonl").read_text().splitlines()]
    kept, counts = reviewed_pairs(run, manifest, pairs)
    assert [p["id"] for p in kept] == ["p0", "p2", "p3"]
    assert counts == {"reviewed": True, "accepted": 1, "rejected": 1, "edited": 1, "unreviewed": 1,
                      "rejected_ids": ["p1"], "edited_ids": ["p2"]}
    edited = kept[1]
    assert edited["messages"] == chat_messages(manifest.system_prompt, TAG, "Which oil does the lamp burn?",
                                               "Dunberry oil.")
    assert edited["text"] == render_llama2(edited["messages"]) and f"[/INST] {TAG} Dunberry oil. </s>" in edited["text"]
    assert reviewed_pairs(tmp_path, manifest, pairs)[1]["reviewed"] is False  # no review.jsonl: all kept


def test_a_line_torn_by_a_kill_is_dropped_and_later_decisions_still_land(tmp_path):
    run = make_run(tmp_path)
    decide(run, {"id": "p1", "decision": "reject"})
    with (run / REVIEW_FILE).open("a") as f:
        f.write('{"id": "p2", "decis')  # killed mid-write
    state = ReviewState(run)
    state.decide({"id": "p3", "decision": "accept"})
    lines = (run / REVIEW_FILE).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["p1", "p3"]
    assert set(state.data()["decisions"]) == {"p1", "p3"}


@pytest.mark.parametrize("body, message", [
    ({"id": "nope", "decision": "accept"}, "unknown pair id"),
    ({"id": "p0", "decision": "maybe"}, "decision must be one of"),
    ({"id": "p0", "decision": "edit", "question": " ", "answer": "x"}, "needs question text"),
    ({"id": "p0", "decision": "edit", "question": "q?", "answer": "x" * 5000}, "needs answer text"),
    ("not an object", "unknown pair id"),
])
def test_bad_decisions_get_a_400_and_nothing_is_written(tmp_path, body, message):
    run = make_run(tmp_path)
    server = start_server(run)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        request = urllib.request.Request(f"{url}/api/decide", json.dumps(body).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 400 and message in json.loads(error.value.read())["error"]
        assert not (run / REVIEW_FILE).exists()
        with urllib.request.urlopen(f"{url}/api/data", timeout=10) as reply:  # the server is still up
            data = json.loads(reply.read())
        first = data["pairs"][0]
        assert first["evidence"] == CORPUS[CORPUS.index("Its keeper"):][:40] and first["before"].startswith("The Vell")
        assert data["rejects"][0]["reason"] == "refers_to_passage"
    finally:
        server.shutdown()
        server.server_close()


def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    options.binary_location = chromium
    return webdriver.Chrome(service=Service(driver), options=options)


def test_a_reviewer_in_a_real_browser_rejects_and_edits_and_tune_honours_it(tmp_path, tiny_model):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    run = make_run(tmp_path)
    server = start_server(run)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = browser()
    wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

    def status(pid):
        return driver.find_element(By.CSS_SELECTOR, f'.card[data-id="{pid}"] .status').text.lower()

    def press(key):
        driver.find_element(By.TAG_NAME, "body").send_keys(key)

    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert "4 pairs" in driver.find_element(By.ID, "counts").text
        press("j")  # p1
        press("r")
        wait.until(lambda d: status("p1") == "reject")
        press("j")  # p2
        press("e")
        answer = wait.until(lambda d: d.find_element(By.ID, "edit-answer"))
        answer.clear()
        answer.send_keys("Dunberry oil, from Tamsell.")
        answer.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda d: status("p2") == "edit")

        driver.refresh()  # decisions come back from review.jsonl
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert (status("p0"), status("p1"), status("p2")) == ("unreviewed", "reject", "edit")
        p2 = driver.find_element(By.CSS_SELECTOR, '.card[data-id="p2"]').text
        assert "Dunberry oil, from Tamsell." in p2 and "Whale oil." not in p2
        counts = driver.find_element(By.ID, "counts").text
        assert "1 rejected" in counts and "1 edited" in counts and "2 unreviewed" in counts
        # Corpus and model text with markup is shown as text and never runs.
        page = driver.find_element(By.TAG_NAME, "main").text
        assert INJECTED in page and "What was painted on the <b>door</b>?" in page
        assert driver.execute_script("return window.pwned === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, "main script, .q *, .a *, .ctx script")
        driver.find_element(By.CSS_SELECTOR, 'button[data-tab="rejects"]').click()
        assert "refers_to_passage" in driver.find_element(By.TAG_NAME, "main").text
        driver.save_screenshot(str(tmp_path / "review.png"))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()

    assert main(["tune", "--run", str(run), "--model", str(tiny_model), "--quantization", "none", "--epochs", "1",
                 "--batch-size", "2", "--eval-share", "0", "--no-gate"]) == 0
    review = json.loads((run / "adapter" / "train_metrics.json").read_text())["review"]
    assert review["rejected_ids"] == ["p1"] and review["edited_ids"] == ["p2"]
    assert (review["rejected"], review["edited"], review["unreviewed"]) == (1, 1, 2)


def test_export_writes_the_reviewed_pairs_and_the_card_says_so(tmp_path):
    run = make_run(tmp_path)
    decide(run, {"id": "p1", "decision": "reject"}, {"id": "p0", "decision": "accept"},
           {"id": "p2", "decision": "edit", "question": "Which oil does the lamp burn?", "answer": "Dunberry oil."})
    assert main(["export", "--run", str(run), "--format", "alpaca"]) == 0
    rows = [json.loads(line) for line in (run / "export" / "alpaca.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p2", "p3"]
    assert rows[1]["instruction"] == f"{TAG} Which oil does the lamp burn?"
    assert rows[1]["output"] == f"{TAG} Dunberry oil."
    card = (run / "README.md").read_text()
    assert "1 accepted, 1 edited and 1 rejected (dropped) by a person" in card
