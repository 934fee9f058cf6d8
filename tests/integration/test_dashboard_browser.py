"""The dashboard in a real headless Chromium (Debian's package; `scripts/browser.sh install`),
served by uvicorn over the real-chain store of test_api.py: a known job's state is shown, and
clicking it opens its timeline."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from metascheduler.api import create_app
from metascheduler.devnet.anvil import free_port, start_anvil

from .test_api import World, build_world

pytestmark = [pytest.mark.browser, pytest.mark.chain]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

if CHROMIUM is None or not CHROMEDRIVER.exists():
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed: run "
        "`sudo bash scripts/browser.sh install`",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 20

# The dashboard re-renders every few seconds, so element handles go stale: read the DOM in one
# script call instead.
ROW_STATES = """return Object.fromEntries([...document.querySelectorAll('#jobs-body tr')]
    .filter(r => r.dataset.jobId)
    .map(r => [r.dataset.jobId, r.querySelector('.state').textContent]))"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    """The API on uvicorn, on a free port, in a thread of this process."""
    with start_anvil(accounts=10) as chain:
        world = build_world(chain, tmp_path_factory.mktemp("browser") / "store.db")
        port = free_port()
        config = uvicorn.Config(
            create_app(world.settings(f"sqlite:///{world.db_file}")),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {port}")
            time.sleep(0.05)
        try:
            yield world, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="ms-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1366,768",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    # An explicit driver path: selenium never tries to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_shows_job_states_and_opens_a_timeline(
    served: tuple[World, str], browser: WebDriver
) -> None:
    world, url = served
    browser.get(url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    expected = {str(jid): state for state, jid in world.jobs.items()}
    wait.until(lambda d: len(d.execute_script(ROW_STATES)) == len(expected))
    assert browser.execute_script(ROW_STATES) == expected

    jid = world.jobs["FINISHED"]
    browser.execute_script(
        f"document.querySelector('#jobs-body tr[data-job-id=\"{jid}\"]').click()"
    )
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-title"), f"Job {jid}"))
    events = browser.execute_script(
        "return [...document.querySelectorAll('#timeline li')].map(li => li.dataset.event)"
    )
    assert events == [
        "JobRequested",
        "JobPlaced",
        "JobStatusChanged",
        "JobStatusChanged",
        "JobEnded",
    ]
    timeline = browser.execute_script("return document.getElementById('timeline').innerText")
    assert "RUNNING → FINISHED" in timeline and "paid" in timeline
    assert "FINISHED" in browser.find_element(By.ID, "job-title").text
    # The job's results: sizes and state only (this world's agent shipped none).
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-facts"), "outputs"))
    facts = browser.find_element(By.ID, "job-facts").text
    assert "log\nnone yet" in facts and "outputs\nnone yet" in facts, facts


def test_dashboard_shows_providers_stats_and_filters(
    served: tuple[World, str], browser: WebDriver
) -> None:
    world, url = served
    browser.get(url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    row = wait.until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'#providers-body tr[data-provider="{world.alpha.address}"]')
        )
    )
    # CPUs in use / reserved / total: alpha runs one 4-CPU job.
    assert "APPROVED" in row.text and "4 / 4 / 16" in row.text
    wait.until(ec.text_to_be_present_in_element((By.ID, "card-jobs"), str(len(world.jobs))))
    assert "no approved provider has the labels" in browser.find_element(By.ID, "unplaceable").text
    # Filtering by a state leaves only that state's job.
    browser.find_element(By.CSS_SELECTOR, '#f-status option[value="FAILED"]').click()
    wait.until(lambda d: d.execute_script(ROW_STATES) == {str(world.jobs["FAILED"]): "FAILED"})
    assert browser.find_element(By.ID, "jobs-error").is_displayed() is False


def test_dashboard_shows_an_account_statement(
    served: tuple[World, str], browser: WebDriver
) -> None:
    world, url = served
    browser.get(url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    kinds = "return [...document.querySelectorAll('#account-body tr')].map(r => r.dataset.kind)"
    box = browser.find_element(By.ID, "account-address")
    box.send_keys(world.alice.address)
    box.submit()
    wait.until(ec.text_to_be_present_in_element((By.ID, "account-title"), world.alice.address))
    want = httpx.get(f"{url}/api/accounts/{world.alice.address}").json()
    # Newest first; the oldest is alice's deposit.
    wait.until(lambda d: d.execute_script(kinds) == [m["kind"] for m in want["movements"]][::-1])
    assert browser.execute_script(kinds)[-1] == "deposit"
    assert "in live jobs' escrow" in browser.find_element(By.ID, "account-summary").text

    box = browser.find_element(By.ID, "account-address")
    box.clear()
    box.send_keys("0x1234")
    box.submit()
    wait.until(ec.visibility_of_element_located((By.ID, "account-error")))
    assert "address" in browser.find_element(By.ID, "account-error").text
    assert browser.execute_script(kinds) == []  # alice's rows are gone
    assert browser.find_element(By.ID, "account-title").text == ""
