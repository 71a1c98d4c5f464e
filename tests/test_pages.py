"""The chat page and the labeling page, driven in headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs) through Selenium."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")

from tests.test_serve import Server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_chat_page_streams_an_answer(browser, chain):
    from selenium.webdriver.common.by import By

    from lmforge.serve.app import Limits, create_app, load_served

    limits = Limits(default_max_tokens=12)
    served = load_served({"sft": str(chain / "sft")}, limits)
    server = Server(create_app(served, limits=limits))
    try:
        browser.get(server.url + "/")
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        t = browser.find_element(By.ID, "temperature")
        t.clear()
        t.send_keys("0")
        m = browser.find_element(By.ID, "max_tokens")
        m.clear()
        m.send_keys("12")
        box = browser.find_element(By.ID, "input")
        box.send_keys("Where does Rila live?")
        browser.find_element(By.ID, "send").click()
        answer = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".assistant[data-done='true']"))
        shown = answer.text
        # what the page shows is the API's greedy answer to the same conversation, streamed in
        import urllib.request

        req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps({"model": "sft", "messages": [{"role": "user", "content": "Where does Rila live?"}], "temperature": 0, "max_tokens": 12}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            expected = json.loads(r.read())["choices"][0]["message"]["content"]
        assert expected.strip() and shown.strip() == expected.strip()
        assert served["sft"].batcher.waves >= 2
        # a second turn carries the conversation
        box.send_keys("And the Zorblat?")
        browser.find_element(By.ID, "send").click()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant[data-done='true']")) == 2)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".user")) == 2
    finally:
        server.stop()


def test_labeling_page_ranking_reaches_the_export(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from lmforge.serve.labeling import LabelStore, create_label_app, export

    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completions": [f"answer {i}.{j}" for j in range(3)]}) + "\n" for i in range(2)))
    store = LabelStore(tmp_path / "labels.sqlite")
    store.add_samples(samples)
    server = Server(create_label_app(store))
    try:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "annotator").send_keys("dana")
        browser.find_element(By.ID, "start").click()
        _wait(browser, lambda d: d.find_element(By.ID, "prompt").text == "Question 0?")
        # rank the answers by their text, answer 0.2 best, 0.0 worst; flag 0.0 as harmful
        wanted = {"answer 0.2": "1", "answer 0.1": "2", "answer 0.0": "3"}
        for row in browser.find_elements(By.CSS_SELECTOR, ".answer"):
            text = row.find_element(By.CSS_SELECTOR, ".text").text
            Select(row.find_element(By.CSS_SELECTOR, "select.rank")).select_by_value(wanted[text])
            if text == "answer 0.0":
                row.find_element(By.CSS_SELECTOR, ".harmful").click()
        browser.find_element(By.ID, "submit").click()
        _wait(browser, lambda d: d.find_element(By.ID, "prompt").text == "Question 1?")
        browser.find_element(By.ID, "skip").click()
        _wait(browser, lambda d: "All done" in d.find_element(By.ID, "status").text)
    finally:
        server.stop()
        store.close()
    export(tmp_path / "labels.sqlite", tmp_path / "rankings.jsonl")
    (rec,) = [json.loads(x) for x in (tmp_path / "rankings.jsonl").read_text().splitlines()]
    assert rec["prompt"] == "Question 0?" and rec["ranking"] == [2, 1, 0] and rec["labeler"] == "dana" and rec["harmful"] == [0]
