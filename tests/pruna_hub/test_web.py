"""The web catalogue (`pruna-hub ui`) in a real headless chromium, served by uvicorn on a loopback port,
over a seeded catalogue on SQLite and PostgreSQL.

Every page the browser visits must leave its console free of errors; a screenshot of each page type is
saved to benchmarks/results/screenshots/. The browser comes from ``scripts/setup-browser`` (Debian's
chromium and chromium-driver); the browser tests skip only when no chromium binary exists at all.
"""

# The catalogue fixtures are imported from registry_db.testing, and pytest fixtures are used by naming them
# as parameters:
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from pruna_hub.cli import cli, main
from pruna_hub.web import create_app
from registry_db.errors import CatalogueMissingError, SchemaBehindError
from registry_db.models import Artifact
from registry_db.session import Catalogue
from registry_db.testing import (  # noqa: F401
    BASE_LATENCY_MS,
    LATENCIES,
    backend,
    catalogue,
    db_url,
    empty_db_url,
    namespace,
    pg_database,
    seed_catalogue,
    sqlite_template,
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# smashed/llama-a-llama-hqq-4bit and the three others of the seeded catalogue
ALL_ARTIFACTS = {f"smashed/{base.split('/')[1]}-{recipe}" for base, recipe in LATENCIES}


def chromium_binary() -> str | None:
    """``PRUNA_HUB_CHROMIUM``, else the first chromium or chrome on PATH."""
    explicit = os.environ.get("PRUNA_HUB_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


# --- the browser and the server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium binary found (run scripts/setup-browser, or set PRUNA_HUB_CHROMIUM)")
    chromedriver = os.environ.get("PRUNA_HUB_CHROMEDRIVER") or shutil.which("chromedriver")
    assert chromedriver, (
        f"chromium is at {binary} but chromedriver is not on PATH: run scripts/setup-browser "
        "(apt-get install chromium-driver) or set PRUNA_HUB_CHROMEDRIVER"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Site:
    url: str
    backend: str
    seeded: dict[str, Any]
    app: Any

    def artifact_id(self, repo_id: str) -> int:
        catalogue = self.app.state.catalogue
        with catalogue.read_session() as session:
            found: int = session.scalars(
                select(Artifact.id).where(
                    Artifact.namespace == catalogue.namespace, Artifact.repo_id == repo_id
                )
            ).one()
        return found


@pytest.fixture
def site(catalogue: Catalogue, backend: str) -> Iterator[Site]:
    """The app over a freshly seeded catalogue, served by uvicorn from a thread on a free loopback port."""
    import uvicorn

    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
    url = catalogue.engine.url.render_as_string(hide_password=False)
    app = create_app(url, namespace=catalogue.namespace)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Site(f"http://127.0.0.1:{port}", backend, seeded, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def console_errors(driver: Any) -> list[str]:
    return [f"{e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def visit(driver: Any, url: str) -> None:
    """Load a page and check that the browser logged no error while loading it."""
    driver.get(url)
    errors = console_errors(driver)
    assert not errors, f"console errors on {url}: {errors}"


def screenshot(driver: Any, name: str, site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{site.backend}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5_000, f"screenshot {path} is suspiciously small"


def submit_filters(driver: Any, **fields: str) -> None:
    """Fill the list's filter form as a user would, submit it, wait for the new page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    for name, value in fields.items():
        element = driver.find_element(By.ID, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    navigate_by_click(driver, driver.find_element(By.ID, "apply"))


def navigate_by_click(driver: Any, element: Any) -> None:
    """Click a link or button and wait until the next page has replaced this one (no console errors)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 20).until(
        lambda d: _stale(old) and d.execute_script("return document.readyState") == "complete"
    )
    errors = console_errors(driver)
    assert not errors, f"console errors on {driver.current_url}: {errors}"


def _stale(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def listed(driver: Any) -> set[str]:
    from selenium.webdriver.common.by import By

    return {a.text for a in driver.find_elements(By.CSS_SELECTOR, "#artifacts a.artifact-link")}


def table(driver: Any, table_id: str) -> dict[str, list[str]]:
    """A table's rows keyed by their first cell."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    return {row[0]: row[1:] for row in cells}


# --- in the browser -----------------------------------------------------------------------------------------


def test_list_search_and_filters(driver: Any, site: Site) -> None:
    visit(driver, site.url + "/")
    assert listed(driver) == ALL_ARTIFACTS
    screenshot(driver, "artifacts", site)

    submit_filters(driver, q="LLAMA-A")  # case-insensitive, matches the base's repo id too
    assert listed(driver) == {"smashed/llama-a-llama-hqq-4bit", "smashed/llama-a-llama-int8"}
    submit_filters(driver, q="", min_top1="0.98")  # int8 recipes agree 0.99, hqq 0.95
    assert listed(driver) == {"smashed/llama-a-llama-int8", "smashed/qwen-llama-int8"}
    submit_filters(driver, min_top1="", max_decode_ms="20")
    assert listed(driver) == {"smashed/llama-a-llama-hqq-4bit", "smashed/llama-b-llama-hqq-4bit"}
    submit_filters(driver, max_decode_ms="", family="Qwen2ForCausalLM")
    assert listed(driver) == {"smashed/qwen-llama-int8"}
    submit_filters(driver, family="", algorithm="hqq", device="cpu", state="published")
    assert listed(driver) == {"smashed/llama-a-llama-hqq-4bit", "smashed/llama-b-llama-hqq-4bit"}
    submit_filters(driver, algorithm="", state="failed")
    assert listed(driver) == set()
    assert "No artifact matches" in driver.page_source


def test_artifact_page(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    visit(driver, site.url + "/")
    navigate_by_click(driver, driver.find_element(By.LINK_TEXT, "smashed/qwen-llama-int8"))
    assert driver.find_element(By.ID, "artifact-title").text.startswith("smashed/qwen-llama-int8")
    metrics = table(driver, "metrics")
    assert metrics["decode_latency_ms"] == [
        f"{BASE_LATENCY_MS:g} ms",
        "25 ms",
        f"{25 / BASE_LATENCY_MS:.2f}x",
    ]
    assert metrics["top1_agreement"][:2] == ["-", "0.99"]
    fields = driver.find_element(By.ID, "card-fields").text
    assert "org/qwen" in fields and "apache-2.0" in fields and "int8_weight" in fields
    assert json.loads(driver.find_element(By.ID, "smash-config").text) == {
        "format_version": 1,
        "algorithms": {"int8_weight": {}},
    }
    assert "org/qwen" in driver.find_element(By.ID, "lineage").text
    assert "quantized" in driver.find_element(By.ID, "lineage").text
    jobs = table(driver, "base-jobs")  # the base's other job failed its quality gate
    assert {row[0]: row[1] for row in jobs.values()} == {
        "llama-int8": "published",
        "llama-hqq-4bit": "failed",
    }
    failed = next(row for row in jobs.values() if row[1] == "failed")
    assert failed[3] == "QualityGateError: top1_agreement 0.41 < 0.9"
    assert "No plot recorded" in driver.find_element(By.ID, "plot-missing").text
    screenshot(driver, "artifact", site)


def test_comparison(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    hqq = site.artifact_id("smashed/llama-a-llama-hqq-4bit")
    visit(driver, f"{site.url}/artifacts/{hqq}")
    navigate_by_click(driver, driver.find_element(By.ID, "compare-link"))
    headings = [th.text.split("\n")[0] for th in driver.find_elements(By.CSS_SELECTOR, "#comparison th")]
    assert headings == ["Metric", "Base", "smashed/llama-a-llama-hqq-4bit", "smashed/llama-a-llama-int8"]
    rows = table(driver, "comparison")
    assert rows["decode_latency_ms"][:3] == ["57 ms", "12 ms (0.21x)", "30 ms (0.53x)"]
    best = driver.find_elements(By.CSS_SELECTOR, "#comparison tr[data-metric=decode_latency_ms] td.best")
    assert [cell.text for cell in best] == ["12 ms (0.21x)"]  # lower latency is better
    best = driver.find_elements(By.CSS_SELECTOR, "#comparison tr[data-metric=top1_agreement] td.best")
    assert [cell.text for cell in best] == ["0.99"]  # higher agreement is better
    screenshot(driver, "compare", site)

    driver.find_elements(By.CSS_SELECTOR, "#pick input[type=checkbox]")[1].click()  # drop int8
    navigate_by_click(driver, driver.find_element(By.CSS_SELECTOR, "#pick button"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#comparison thead th")) == 3


def test_discovery_log(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    visit(driver, site.url + "/discovery")
    jobs = table(driver, "jobs")
    assert len(jobs) == 7  # 4 published, 1 failed, 1 queued, 1 skipped
    reasons = {row[3]: row[4] for row in jobs.values()}
    assert reasons["skipped"] == "gated: token cannot read it"
    assert reasons["failed"] == "QualityGateError: top1_agreement 0.41 < 0.9"
    assert "never" not in driver.find_element(By.ID, "last-pass").text
    screenshot(driver, "discovery", site)
    navigate_by_click(driver, driver.find_element(By.PARTIAL_LINK_TEXT, "skipped 1"))
    assert [row[1] for row in table(driver, "jobs").values()] == ["org/gated @ddddddd"]


def test_health_and_metrics_in_the_browser(driver: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    visit(driver, site.url + "/healthz")
    health = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    assert health["status"] == "ok" and health["database"]["reachable"] is True
    assert health["schema"]["at_head"] is True and health["last_discovery_at"]
    screenshot(driver, "healthz", site)
    visit(driver, site.url + "/metrics")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert 'pruna_hub_jobs{state="published"} 4.0' in body
    assert "pruna_hub_catalogue_up 1.0" in body
    screenshot(driver, "metrics", site)


# --- over HTTP, without the browser -------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_endpoints_answer_with_status_and_type(site: Site) -> None:
    code, kind, body = fetch(site.url + "/metrics")
    assert code == 200 and kind.startswith("text/plain") and "version=" in kind
    counts = {
        line.split('"')[1]: float(line.split()[-1])
        for line in body.splitlines()
        if line.startswith("pruna_hub_jobs{")
    }
    assert counts == {
        "discovered": 0,
        "queued": 1,
        "running": 0,
        "smashed": 0,
        "benchmarked": 0,
        "published": 4,
        "failed": 1,
        "skipped": 1,
    }
    assert "pruna_hub_catalogue_last_discovery_timestamp_seconds" in body
    assert "# TYPE pruna_hub_step_duration_seconds histogram" in body
    code, kind, body = fetch(site.url + "/healthz")
    assert code == 200 and kind == "application/json" and json.loads(body)["status"] == "ok"
    code, _, body = fetch(site.url + "/artifacts/999999")
    assert code == 404 and "no artifact 999999" in body
    code, _, body = fetch(site.url + "/?min_top1=lots")
    assert code == 400 and "min_top1=&#39;lots&#39; is not valid; use a number" in body
    code, _, body = fetch(site.url + "/?state=sleeping")
    assert code == 400 and "sleeping" in body
    other = site.artifact_id("smashed/llama-b-llama-hqq-4bit")
    code, _, body = fetch(f"{site.url}/bases/{site.seeded['bases']['org/llama-a']}/compare?artifact={other}")
    assert code == 400 and "artifacts of base org/llama-a" in body


def test_plot_and_card_when_the_catalogue_knows_them(catalogue: Catalogue) -> None:
    """A published benchmark.png is shown from the Hub given --hub-url; a recorded card text is shown."""
    from registry_db.records import record_artifact, record_benchmark_run

    with catalogue.session() as session:
        seeded = seed_catalogue(session, catalogue.namespace)
        job_id = seeded["jobs"][("org/llama-a", "llama-hqq-4bit")]
        repo, sha = "smashed/llama-a-llama-hqq-4bit", f"{job_id:040x}"
        files = {"model.safetensors": 1000, "README.md": 500, "benchmark.png": 2000}
        artifact = record_artifact(session, job_id=job_id, repo_id=repo, commit_sha=sha, files=files)
        record_benchmark_run(
            session,
            subject="smashed",
            base_model_id=seeded["bases"]["org/llama-a"],
            job_id=job_id,
            metrics={"decode_latency_ms": 11.0},
            report={"card": "# llama-a smashed\n<script>alert(1)</script>"},
            namespace=catalogue.namespace,
        )
        artifact_id = artifact.id
    url = catalogue.engine.url.render_as_string(hide_password=False)
    app = create_app(url, namespace=catalogue.namespace, hub_url="http://hub.test/")
    try:
        code, page = asgi_get(app, f"/artifacts/{artifact_id}")
    finally:
        app.state.catalogue.dispose()
    assert code == 200, page
    assert f'src="http://hub.test/{repo}/resolve/{sha}/benchmark.png"' in page
    assert "# llama-a smashed\n&lt;script&gt;alert(1)&lt;/script&gt;" in page  # untrusted: escaped
    assert "<script>" not in page


def test_list_pages(site: Site) -> None:
    first = fetch(site.url + "/?limit=3")[2]
    second = fetch(site.url + "/?limit=3&offset=3")[2]
    assert first.count('class="artifact-row"') == 3 and second.count('class="artifact-row"') == 1
    assert 'id="next" href="?limit=3&amp;offset=3"' in first and 'id="next"' not in second
    assert "4 artifacts match; showing 4-4." in second


def test_the_cli_serves_the_catalogue(catalogue: Catalogue, backend: str) -> None:
    """`pruna-hub ui` as a user starts it: a process that listens, answers /healthz, and stops on SIGTERM."""
    import subprocess
    import sys

    url = catalogue.engine.url.render_as_string(hide_password=False)
    port = free_port()
    command = [sys.executable, "-c", "from pruna_hub.cli import main; main()", "ui", "--port", str(port)]
    command += ["--database-url", url, "--namespace", catalogue.namespace]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                code, _, body = fetch(f"http://127.0.0.1:{port}/healthz")
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "pruna-hub ui did not start listening"
                time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert code == 200 and json.loads(body)["schema"]["at_head"] is True
    assert f"on http://127.0.0.1:{port}/" in stderr


def test_the_app_cannot_write(site: Site) -> None:
    """Read-only down to the database: SQLite's query_only, PostgreSQL's read-only transactions."""
    catalogue = site.app.state.catalogue
    with pytest.raises(DBAPIError, match=r"(?i)read.?only"), catalogue.read_session() as session:
        session.execute(text("UPDATE jobs SET attempts = attempts + 1"))
        session.commit()


def asgi_get(app: Any, path: str) -> tuple[int, str]:
    """One request straight to the ASGI app (no server, no lifespan)."""
    import asyncio

    import httpx2

    async def get() -> tuple[int, str]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://ui.test") as client:
            response = await client.get(path)
            return response.status_code, response.text

    return asyncio.run(get())


def test_a_catalogue_gone_meanwhile_is_unhealthy_not_recreated(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app(f"sqlite:///{path}")
    try:
        assert asgi_get(app, "/healthz")[0] == 200
        app.state.catalogue.dispose()
        path.rename(tmp_path / "moved.db")
        code, body = asgi_get(app, "/healthz")
        page_code, page = asgi_get(app, "/")
    finally:
        app.state.catalogue.dispose()
    health = json.loads(body)
    assert code == 503 and health["database"]["reachable"] is False and "cannot connect" in health["error"]
    assert page_code == 503 and "unable to open database file" in page
    assert not path.exists()


def test_missing_catalogue_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "catalogue.db"
    with pytest.raises(CatalogueMissingError, match="pruna-hub db upgrade"):
        create_app(f"sqlite:///{path}")
    assert not path.parent.exists()
    code = 0
    with CliRunner().isolation() as (_, stderr, _):
        try:
            main(["ui", "--database-url", f"sqlite:///{path}", "--port", str(free_port())])
        except SystemExit as e:
            code = int(e.code or 0)
        message = stderr.getvalue().decode()
    assert code == 1 and "pruna-hub db upgrade" in message and not path.parent.exists()


def test_catalogue_behind_head_is_refused(empty_db_url: str) -> None:
    with Catalogue.open(empty_db_url) as opened, opened.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    with pytest.raises(SchemaBehindError, match="pruna-hub db upgrade"):
        create_app(empty_db_url)


def test_ui_command_is_registered() -> None:
    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--database-url", "--host", "--port", "--namespace"):
        assert option in result.output
