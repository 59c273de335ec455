"""The playground in headless Chromium (Selenium, Debian's ``chromium`` + ``chromium-driver``): type a
prompt, watch the reply grow token by token, press Stop; the encoder's similarity box; the live run
plot. Screenshots go to the test's tmp dir. Skipped, with the reason, where no browser is installed."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from serving_models import live_server

from zeroforge.serve import load_app

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no Chromium/chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 20.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting for the page")


def test_chat_streams_token_by_token_and_stop_ends_it(browser, chat_dir, tmp_path):
    from selenium.webdriver.common.by import By

    app = load_app(chat_dir)
    scheduler = app.state.scheduler
    step = scheduler._step
    scheduler._step = lambda: (time.sleep(0.03), step())  # 30 ms a token, slow enough to watch
    with live_server(app) as url:
        browser.get(url + "/")
        wait_for(lambda: browser.find_element(By.ID, "chat-panel").is_displayed())
        assert browser.find_element(By.ID, "model-name").text == "tiny-chat"
        browser.find_element(By.ID, "system").send_keys("Be brief.")
        for field, value in (("temperature", "0"), ("max-tokens", "200")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "prompt").send_keys("the user asked")
        browser.find_element(By.ID, "send").click()

        def reply() -> str:
            found = browser.find_elements(By.CSS_SELECTOR, ".message.assistant")
            return found[-1].text if found else ""

        lengths = []
        deadline = time.monotonic() + 20
        while len(set(lengths)) < 4 and time.monotonic() < deadline:
            lengths.append(len(reply()))
            time.sleep(0.05)
        grown = sorted(set(lengths))
        assert len(grown) >= 4 and lengths == sorted(lengths)  # the text appeared piece by piece
        browser.find_element(By.ID, "stop").click()
        wait_for(lambda: browser.find_element(By.ID, "chat-status").text == "stopped")
        stopped_at = len(reply())
        assert browser.find_element(By.ID, "send").is_enabled()
        wait_for(lambda: scheduler.cancelled == 1 and scheduler.running == 0, timeout=10)
        time.sleep(0.2)
        assert len(reply()) == stopped_at  # nothing arrives after Stop
        assert browser.find_element(By.ID, "error").text == ""
        browser.save_screenshot(str(tmp_path / "chat.png"))
    assert (tmp_path / "chat.png").stat().st_size > 1000


def test_encoder_page_shows_similarity(browser, encoder_dir, tmp_path):
    from selenium.webdriver.common.by import By

    with live_server(load_app(encoder_dir)) as url:
        browser.get(url + "/")
        wait_for(lambda: browser.find_element(By.ID, "embed-panel").is_displayed())
        assert not browser.find_element(By.ID, "chat-panel").is_displayed()
        browser.find_element(By.ID, "compare").click()
        text = wait_for(lambda: browser.find_element(By.ID, "similarity").text)
        assert text.startswith("cosine similarity ") and -1.0001 <= float(text.split()[-1]) <= 1.0001
        browser.save_screenshot(str(tmp_path / "embed.png"))


def test_runs_page_plots_a_growing_metrics_csv(browser, chat_dir, tmp_path):
    from selenium.webdriver.common.by import By

    run = tmp_path / "runs" / "gpt-a"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("step,train_loss\n1,4.0\n")
    with live_server(load_app(chat_dir, runs_dir=tmp_path / "runs")) as url:
        browser.get(url + "/runs")
        wait_for(lambda: browser.find_element(By.ID, "run").get_attribute("value") == "gpt-a")
        points = lambda: int(browser.find_element(By.ID, "plot").get_attribute("data-points") or 0)  # noqa: E731
        wait_for(lambda: points() == 1)
        stop = threading.Event()

        def train():  # a run that keeps appending rows, as a training loop does
            for step in range(2, 40):
                if stop.is_set():
                    return
                with open(run / "metrics.csv", "a") as f:
                    f.write(f"{step},{4.0 / step**0.5}\n")
                time.sleep(0.05)

        writer = threading.Thread(target=train)
        writer.start()
        try:
            wait_for(lambda: points() >= 20, timeout=15)  # re-read while the run writes
        finally:
            stop.set()
            writer.join()
        assert "train_loss" in browser.find_element(By.ID, "columns").text
        browser.save_screenshot(str(tmp_path / "runs.png"))
