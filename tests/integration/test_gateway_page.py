"""The gateway's chat page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): a person types a prompt and reads the tiny model's known answer; Stop cancels."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from qwenops.tinymodel import KNOWN_PROMPTS
from tests.gateway_harness import running_gateway
from tests.integration.conftest import RunningServer
from tests.integration.test_gateway_engine import TOKEN, gateway_process
from tests.synthetic_upstream import synthetic_upstream

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("Chromium is not installed: scripts/test.sh installs Debian's chromium and chromium-driver",
                    pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1000,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def ask(driver: Any, prompt: str, *, timeout_s: float = 180) -> Any:
    """Type PROMPT, press Enter, and wait until the answer ends; the answer's element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout_s)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "connected"))
    box = driver.find_element(By.ID, "prompt")
    box.send_keys(prompt, Keys.ENTER)
    return wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".answer[data-state]") or False)[-1]


@pytest.mark.engine
def test_a_person_types_a_prompt_and_reads_the_known_answer(vllm_server: RunningServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    prompt = "Tell me about the sea."
    with gateway_process(vllm_server.base_url, token=TOKEN) as gw:
        browser.get(f"http://127.0.0.1:{gw.port}/")
        assert browser.title == "qwenops chat"
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "reconnect").click()
        answer = ask(browser, prompt)
        assert answer.get_attribute("data-state") == "done"
        assert answer.text == KNOWN_PROMPTS[prompt]
        stats = browser.find_element(By.ID, "stats").text
        assert stats.startswith("TTFT ") and "tokens/s" in stats, stats
        browser.save_screenshot(str(gw_screenshot()))


def gw_screenshot() -> Any:
    from tests.conftest import REPO

    path = REPO / ".state" / "screenshots" / "gateway-page.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_stop_cancels_the_answer_upstream(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with synthetic_upstream() as upstream, running_gateway(upstream.base_url) as gw:
        browser.get(f"http://127.0.0.1:{gw.config.port}/")
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support import expected_conditions

        wait = WebDriverWait(browser, 30)
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "connected"))
        browser.find_element(By.ID, "prompt").send_keys("hang", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".answer").text.strip() == "t0")
        browser.find_element(By.ID, "stop").click()
        answer = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".answer[data-state]") or False)[-1]
        assert answer.get_attribute("data-state") == "error"
        assert browser.find_element(By.CSS_SELECTOR, ".error").text == "cancelled: cancelled by the client"
        wait.until(lambda _d: upstream.counters.aborted == 1)
