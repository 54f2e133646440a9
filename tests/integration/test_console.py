"""The operators' console in a real headless browser (Debian's chromium and its driver, installed by
the fixture when missing) against the real service: log in, open every page, promote a model and
roll back, look up a customer, erase one after confirming. Screenshots are kept under
var/test-artifacts/console/ (and the overview is the README's)."""
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from recommenders.bundle import save_bundle
from recommenders.training import TrainParams, train
from recsys.client import Client, Event
from tests.integration.conftest import EXPERIMENT_PLACEMENT, KEYS

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"


def _ensure_chromium() -> str:
    driver = shutil.which("chromedriver")
    if driver is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
        if subprocess.run(command, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run(command, env=env, capture_output=True, check=True)
        driver = shutil.which("chromedriver")
    assert driver, "chromedriver could not be installed"
    return driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(_ensure_chromium()), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(browser, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def find(browser, css: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css)


def text(browser, css: str) -> str:
    """The element's text, read again if the page reloaded meanwhile (the overview reloads itself)."""
    import time

    from selenium.common.exceptions import WebDriverException

    for _ in range(10):
        try:
            return find(browser, css).text
        except WebDriverException:  # stale, or the node left the document as the page reloaded
            time.sleep(0.2)
    raise AssertionError(f"{css} kept going stale")


def rows(browser, css: str) -> int:
    return text(browser, css).count("\n") + 1


def submit(browser, css: str) -> None:
    """Click a form's button and wait for the page it leads to."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    page = find(browser, "html")
    find(browser, css).click()

    def gone(_driver) -> bool:
        try:
            page.is_enabled()
            return False
        except WebDriverException:  # stale, or no longer in the document: the next page is here
            return True
    WebDriverWait(browser, 30).until(gone)


def test_the_console_logs_in_shows_every_page_promotes_and_erases(browser, service, synthetic_bundle,
                                                                   synthetic_dataset):
    base = service.http
    # some traffic first: a customer seen on two channels, and what they are recommended
    customer = f"con-{uuid.uuid4().hex[:8]}"
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10) as client:
        client.track([Event(uuid.uuid4().hex, customer, "view", item_id="i0003", channel="web"),
                      Event(uuid.uuid4().hex, customer, "add_to_cart", item_id="i0004", channel="app")])
        for _ in range(5):
            client.recommend(customer, k=5)
        # a list of the shared service's recommendation experiment, and its impression
        listed = client.recommend("c42", k=3, placement=EXPERIMENT_PLACEMENT)
        client.track([Event(uuid.uuid4().hex, "c42", "impression", item_id=listed.items[0].item_id,
                            attributes={"recommendation_id": listed.recommendation_id})])
    # pages need the admin key: none, or one without the scope, gets the login page
    assert httpx.get(base + "/console", timeout=30).status_code == 401
    assert httpx.post(base + "/console/models/rollback", timeout=30).status_code == 401
    browser.get(base + "/console")
    find(browser, "#key").send_keys(KEYS["reader"])
    submit(browser, "#login")
    assert "admin" in text(browser, "#message")
    find(browser, "#key").send_keys(KEYS["admin"])
    submit(browser, "#login")
    # overview: the model the owners serve, the owners and what they hold, requests per RPC
    assert text(browser, "#model-version") == synthetic_bundle.version
    assert rows(browser, "#owners") == 1 + 2
    rpcs = text(browser, "#rpcs")
    assert "Recommend" in rpcs and "TrackEvents" in rpcs
    shot(browser, "overview")

    # models: promote another bundle with the registry's own checks, then roll back
    other = train(synthetic_dataset, TrainParams(factors=8, iterations=12, covis_neighbours=20, threads=1, seed=11),
                  progress=False)
    save_bundle(other, service.config.model_dir, make_current=False)
    browser.get(base + "/console/models")
    assert other.version in text(browser, "#models")
    submit(browser, f'button[name="promote"][value="{other.version}"]')
    assert f"now serving {other.version}" in text(browser, "#message")
    shot(browser, "models-promoted")
    submit(browser, "#rollback")
    assert f"now serving {synthetic_bundle.version}" in text(browser, "#message")
    submit(browser, "#rollback")  # nothing further back: the registry's refusal, shown
    assert "refused" in text(browser, "#message")

    browser.get(base + "/console/offers")
    assert text(browser, "#catalog-version") and rows(browser, "#offers") > 1
    shot(browser, "offers")

    browser.get(base + "/console/experiments")
    assert "No experiment exposures" in text(browser, "#message")  # the test catalogue runs none
    assert f"it-arms {listed.arm}" in text(browser, "#recommendations")
    shot(browser, "experiments")

    # the customer: their events across channels, what they would get now with the reasons
    browser.get(base + "/console/customer")
    find(browser, "#customer-id").send_keys(customer)
    submit(browser, "#lookup")
    events = text(browser, "#events")
    assert "web" in events and "app" in events and "add_to_cart" in events
    assert rows(browser, "#recommended") == 1 + 10 and "i0004" not in text(browser, "#recommended")  # cart item out
    assert text(browser, "#offer-reason")  # what NextBestOffer would decide, with why
    shot(browser, "customer")
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10) as client:
        kinds = {e["event_type"] for e in client.export(customer)["events"]}
    assert kinds == {"view", "add_to_cart"}, kinds  # the preview recorded no show
    find(browser, "#confirm").send_keys("not-the-id")
    submit(browser, "#erase")
    assert "not erased" in text(browser, "#message")
    browser.get(base + f"/console/customer?id={customer}")
    find(browser, "#confirm").send_keys(customer)
    submit(browser, "#erase")
    assert f"erased {customer}" in text(browser, "#message")
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10) as client:
        with pytest.raises(Exception):
            client.export(customer)
    browser.get(base + "/console/logout")
    assert find(browser, "#login")
