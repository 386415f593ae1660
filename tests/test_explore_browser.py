"""The explorer's page in a real browser: Debian's chromium, headless, driven by Selenium.

One browser session visits the page three times: over the export loaded in this process, relayed to the
strict REST fake, and over a class-conditional export (conftest's `variants`), where it picks a class.
The test skips only where chromium is not installed and the environment variable
KERAS_VAE_BROWSER_TEST (set by .ci/run) does not say it must run.
"""

import contextlib
import os
import shutil

import fake_rest
import pytest
from test_explore import serving

from keras_vae.config import ExploreConfig
from keras_vae.explore import build_explorer

MUST_RUN = "KERAS_VAE_BROWSER_TEST"
WAIT_SECONDS = 60
# The distinct values among a canvas's pixels, and the share that is not white.
CANVAS_STATS = """
const canvas = document.getElementById(arguments[0]);
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
const values = new Set();
let inked = 0;
for (let i = 0; i < data.length; i += 4) { values.add(data[i]); if (data[i] < 250) inked++; }
return [values.size, inked / (data.length / 4)];
"""


def _draws(driver, canvas):
    script = f"return Number(document.getElementById('{canvas}').dataset.draws || 0)"
    return int(driver.execute_script(script))


def _picture(driver, canvas):
    return driver.execute_script(f"return document.getElementById('{canvas}').toDataURL()")


@pytest.fixture(scope="module")
def browser():
    """A headless chromium, one session for the module."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        found = None, None
    if not all(found):
        message = ("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) "
                   "and selenium (pip install '.[test]')")
        if os.environ.get(MUST_RUN):
            pytest.fail(f"{MUST_RUN} is set, but the browser test {message}.")
        pytest.skip(f"The browser test {message}.")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(trained_export, trained_server, variants):
    """{backend: the page's URL}: the export loaded here, relayed to the strict REST fake, and a
    class-conditional export loaded here."""
    root, data = trained_export
    with contextlib.ExitStack() as stack:
        url, _ = stack.enter_context(fake_rest.rest_server(trained_server))
        configs = {"export": ExploreConfig(export_dir=str(root), data_dir=str(data)),
                   "relay": ExploreConfig(server=url, export_dir=str(root), data_dir=str(data),
                                          map_points=16),
                   "conditional": ExploreConfig(export_dir=str(variants["conditional"][1]),
                                                data_dir=str(data))}
        yield {name: f"http://{stack.enter_context(serving(build_explorer(config)))}/"
               for name, config in configs.items()}


@pytest.mark.parametrize("backend", ["export", "relay", "conditional"])
def test_the_page_draws_samples_moves_with_its_sliders_and_decodes_the_map(browser, pages, backend):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.get(pages[backend])
    browser.get_log("browser")  # only this page's messages count
    wait.until(lambda d: all(_draws(d, c) >= 1 for c in ("samples", "traversed", "reconstruction", "strip")))
    values, inked = browser.execute_script(CANVAS_STATS, "samples")
    assert values > 10 and 0.05 < inked < 0.95, (values, inked)
    facts = browser.execute_script("return [...document.querySelectorAll('#facts div')].map("
                                   "(row) => [row.firstChild.textContent, row.lastChild.textContent])")
    assert ["version", "1"] in facts and ["latent size", "4"] in facts

    before, drawn = _picture(browser, "traversed"), _draws(browser, "traversed")
    slider = browser.find_elements(By.CSS_SELECTOR, "#sliders .slider")[0]
    ActionChains(browser).click_and_hold(slider).move_by_offset(60, 0).release().perform()
    wait.until(lambda d: _draws(d, "traversed") > drawn and _picture(d, "traversed") != before)
    assert float(slider.get_attribute("value")) > 0.5

    pictures = []
    for offset in ((-120, -120), (120, 120)):
        drawn = _draws(browser, "map-decoded")
        the_map = browser.find_element(By.ID, "map")
        ActionChains(browser).move_to_element_with_offset(the_map, *offset).perform()
        wait.until(lambda d, drawn=drawn: _draws(d, "map-decoded") > drawn)
        pictures.append(_picture(browser, "map-decoded"))
    assert pictures[0] != pictures[1]

    picker = browser.find_element(By.ID, "label")
    assert picker.is_displayed() == (backend == "conditional")
    if backend == "conditional":
        from selenium.webdriver.support.ui import Select

        from conftest import CLASSES

        assert [option.text for option in Select(picker).options] == list(CLASSES)
        before, drawn = _picture(browser, "samples"), _draws(browser, "samples")
        Select(picker).select_by_index(7 if picker.get_attribute("value") != "7" else 2)
        wait.until(lambda d: _draws(d, "samples") > drawn and _picture(d, "samples") != before)
    assert not browser.find_element(By.ID, "error").is_displayed()
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
