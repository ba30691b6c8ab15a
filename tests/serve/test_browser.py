"""The page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against ``postergenre serve`` on a free loopback
port. Skips, saying why, where no Chromium is installed; ``.ci/run`` installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import encode, make_poster

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")


@dataclass
class Server:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            found = re.search(r"serving (http://\S+/)", line)
            if found:
                self.url = found.group(1)
                self.started.set()
        self.started.set()  # exited: stop waiting

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture
def server(tiny_model: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``postergenre serve --port 0`` in a child process, stopped (and checked) after;
    ``request.param`` (indirect parametrisation) may give a genre mix for ``--prior``."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    extra: list[str] = []
    mix = getattr(request, "param", None)
    if mix:
        prior = tmp_path / "mix.json"
        prior.write_text(json.dumps(mix))
        extra = ["--prior", str(prior)]
    process = subprocess.Popen(
        [sys.executable, "-m", "postergenre", "serve", "--port", "0", "--model",
         str(tiny_model), "--device", "cpu", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    srv = Server(process)
    reader = threading.Thread(target=srv.read, daemon=True)
    reader.start()
    try:
        assert srv.started.wait(60) and srv.url, "server did not start:\n" + "\n".join(srv.lines)
        yield srv
    finally:
        code = srv.stop()
        reader.join(10)
    assert code == 0, "\n".join(srv.lines)
    # Spooled uploads lived in the server's private temporary directory, removed at exit.
    assert list(tmp.iterdir()) == []


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (.[test])")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Chromium and its driver: apt-get install chromium chromium-driver "
            f"(found browser={CHROMIUM}, driver={CHROMEDRIVER})"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,2200", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: object, timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_page_analyses_a_poster_and_reports_a_corrupt_file(
    server: Server, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    good = tmp_path / "night-poster.jpg"
    good.write_bytes(encode(make_poster(21, size=(360, 240)), "JPEG", quality=90))
    whole = encode(make_poster(22, size=(400, 300)), "JPEG", quality=90)
    bad = tmp_path / "damaged.jpg"
    bad.write_bytes(whole[: len(whole) // 2])

    driver.get(server.url)  # type: ignore[attr-defined]
    status = driver.find_element(By.ID, "status")  # type: ignore[attr-defined]
    wait_for(lambda: status.get_attribute("data-state") == "ready", what="the model")
    assert "Ready" in status.text
    assert not driver.find_element(By.ID, "prior-note").is_displayed()  # no --prior

    # Keyboard: Tab from the top reaches the file picker (skip link first).
    body = driver.find_element(By.TAG_NAME, "body")  # type: ignore[attr-defined]
    body.send_keys(Keys.TAB)
    for _ in range(4):
        if driver.switch_to.active_element.get_attribute("id") == "files":  # type: ignore[attr-defined]
            break
        driver.switch_to.active_element.send_keys(Keys.TAB)  # type: ignore[attr-defined]
    assert driver.switch_to.active_element.get_attribute("id") == "files"  # type: ignore[attr-defined]

    picker = driver.find_element(By.ID, "files")  # type: ignore[attr-defined]
    picker.send_keys(f"{good}\n{bad}")

    def finished() -> list[object]:
        panels = driver.find_elements(By.CSS_SELECTOR, "article.poster")  # type: ignore[attr-defined]
        states = [p.get_attribute("data-state") for p in panels]
        return panels if len(panels) == 2 and set(states) <= {"done", "error"} else []

    panels = wait_for(finished, what="both posters")
    by_name = {p.find_element(By.CSS_SELECTOR, ".name").text: p for p in panels}  # type: ignore[attr-defined]
    ok, broken = by_name["night-poster.jpg"], by_name["damaged.jpg"]
    assert ok.get_attribute("data-state") == "done"
    assert broken.get_attribute("data-state") == "error"
    # The file's size, and the size the model read it at (fitted into 160x236).
    size = ok.find_element(By.CSS_SELECTOR, ".state").text  # type: ignore[attr-defined]
    assert size == "240\u00d7360 pixels, read at 157\u00d7236"

    # Genre bars, with each genre's threshold marked, most probable first.
    rows = ok.find_elements(By.CSS_SELECTOR, "ol.bars > li.bar")
    genres = [r.find_element(By.CSS_SELECTOR, ".genre").get_attribute("textContent") for r in rows]
    assert sorted(genres) == ["Animation", "Comedy", "Drama", "Horror"]
    assert len(ok.find_elements(By.CSS_SELECTOR, ".track .threshold")) == 4
    percents = [int(r.find_element(By.CSS_SELECTOR, ".pct").text.strip("%<>")) for r in rows]
    assert percents == sorted(percents, reverse=True)
    predicted = [e.text for e in ok.find_elements(By.CSS_SELECTOR, ".predicted strong")]
    assert predicted and set(predicted) <= set(genres)
    assert {r.find_element(By.CSS_SELECTOR, ".genre").text for r in rows if
            "predicted" in r.get_attribute("class")} == set(predicted)  # fmt: skip

    # Each predicted genre's cues, in words, raising or lowering it by so many points.
    sections = ok.find_elements(By.CSS_SELECTOR, "section.why")
    assert [s.find_element(By.TAG_NAME, "h3").text.split("?")[0] for s in sections] == [
        f"Why {g}" for g in predicted
    ]
    cues = ok.find_elements(By.CSS_SELECTOR, "tr.cue.raise, tr.cue.lower")
    assert cues
    for cue in cues:
        text, value = (td.text for td in cue.find_elements(By.TAG_NAME, "td"))
        assert re.search(r"[a-z]{3,} ", text), text  # plain words, not a feature name
        assert text.endswith(("(raises it)", "(lowers it)")), text
        assert re.fullmatch(r"[+\u2212]\d+(\.\d)? pts", value), value
    assert "log-odds" not in ok.text

    # The corrupt file: its one-line error and hint, in place.
    error = broken.find_element(By.CSS_SELECTOR, ".error")
    assert error.get_attribute("role") == "alert"
    assert "Damaged image" in error.text and "truncated or corrupt" in error.text
    assert "Hint: re-download the poster" in error.text

    # The card, on demand.
    button = ok.find_element(By.CSS_SELECTOR, ".card-controls button")
    button.click()
    wait_for(
        lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = arguments[0].querySelector('figure.card img');"
            "return i !== null && i.complete && i.naturalWidth > 600;",
            ok,
        ),
        what="the card image",
    )
    assert button.get_attribute("aria-expanded") == "true"
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


@pytest.mark.parametrize("server", [{"Drama": 0.4}], indirect=True)
def test_page_says_which_genre_mix_a_prior_server_answers_for(
    server: Server, browser: object
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server.url)  # type: ignore[attr-defined]
    note = driver.find_element(By.ID, "prior-note")  # type: ignore[attr-defined]
    wait_for(lambda: note.is_displayed(), what="the prior note")
    assert note.text == (
        "Probabilities are adapted to this catalogue's genre mix: Drama 40%; the other "
        "genres keep the model's reference shares."
    )
