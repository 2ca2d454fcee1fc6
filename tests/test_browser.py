"""What a user sees in a browser, checked with headless Chromium (Debian's package, driven by
Playwright), offline: every request that is not to 127.0.0.1/localhost is aborted and recorded.

- `forecastflow serve`'s Swagger UI (/docs) renders with every file from the installation.
- The trigger form of `train_us_macro` in the Airflow UI shows titled fields, no editable
  `problem`, and a multi-select of exactly the families the problem's YAML declares.
- The "MLflow run" link opens MLflow's model-training view of the run, not its GenAI view.

Screenshots go to pytest's tmp folder and their paths are printed. Run it by hand with
``.venv/bin/python -m pytest tests/test_browser.py -s``. Needs ``apt-get install -y chromium``
and the pinned ``playwright`` (requirements.txt); never ``playwright install``. Skipped when
either is missing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import free_port
from tests.dags.conftest import BIN, ROOT, base_env
from tests.support.standalone import standalone

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed (pip install -r requirements.txt -c constraints.txt)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium",
                allow_module_level=True)

DAG_ID = "train_us_macro"
FORM_TITLES = ["Horizon", "Model families", "Backtest windows", "Selection metric",
               "Trials per family", "Force promotion", "Search batches"]
SWAGGER_PATHS = ["/health", "/problems", "/problems/{name}/forecast"]



def declared_families(problem: str) -> list[str]:
    spec = yaml.safe_load((ROOT / "include" / "problems" / f"{problem}.yaml").read_text())
    return list(dict.fromkeys(model["family"] for model in spec["models"]))



def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` died."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"{url} did not answer (process exit {proc.poll()}); see {log}")
        time.sleep(1)


@dataclass
class Network:
    """Requests the page made that were not answered: ``blocked`` (off-host, aborted by us)
    and ``failed`` (local requests that failed)."""

    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page(browser):
    """A page that can reach 127.0.0.1/localhost only, and the record of what it missed."""
    net = Network()
    context = browser.new_context(viewport={"width": 1400, "height": 1500},
                                  service_workers="block")

    def route(route) -> None:
        if urlparse(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            net.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    page.on("requestfailed", lambda req: None if req.url in net.blocked
            else net.failed.append(f"{req.url}: {req.failure}"))
    yield page, net
    context.close()


def shot(page, target, path: Path) -> Path:
    (target or page).screenshot(path=str(path), **({} if target else {"full_page": True}))
    print(f"screenshot: {path}")
    return path


def test_swagger_ui_renders_offline(offline_page, tmp_path):
    page, net = offline_page
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLFLOW", "FORECASTFLOW"))}
    env["FORECASTFLOW_HOME"] = str(tmp_path / "state")  # no champions: still serves /docs
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "forecastflow"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/openapi.json", server, log, timeout=120)
        page.goto(f"{base}/docs")
        blocks = page.locator(".swagger-ui .opblock")
        with contextlib.suppress(sync_api.TimeoutError):  # reported below, with the cause
            blocks.nth(len(SWAGGER_PATHS) - 1).wait_for(timeout=20_000)
        path = shot(page, None, tmp_path / "swagger_ui.png")
        assert not net.blocked, (f"/docs needs files from off the host (blocked offline): "
                                 f"{net.blocked}; screenshot {path}")
        assert not net.failed, f"/docs requests failed: {net.failed}; screenshot {path}"
        assert blocks.count() >= len(SWAGGER_PATHS), f"Swagger UI did not render; see {path}"
        shown = [blocks.nth(k).locator(".opblock-summary-path").get_attribute("data-path")
                 for k in range(blocks.count())]
        assert set(SWAGGER_PATHS) <= set(shown), shown
        assert page.locator(".swagger-ui .info .title").first.is_visible()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def check_trigger_form(page, base: str, tmp_path: Path) -> list[Path]:
    """Open the trigger form of ``DAG_ID`` and check it; returns the screenshots."""
    families = declared_families("us_macro")
    page.goto(f"{base}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click(timeout=60_000)
    dialog = page.get_by_role("dialog")
    form = dialog.get_by_test_id("config-form")
    form.wait_for(timeout=30_000)

    # The form's params are in accordion sections (one open at a time): open each, keep
    # the titles it shows, and a screenshot of it.
    titles: dict[str, list[str]] = {}
    shots = []
    triggers = form.locator("[data-part=item-trigger]")
    for k in range(triggers.count()):
        trigger = triggers.nth(k)
        section = trigger.inner_text().strip()
        if section == "Advanced Options":  # Airflow's run id / raw conf / note
            continue
        if trigger.get_attribute("aria-expanded") != "true":
            trigger.click()
        content = form.locator(f"[id='{trigger.get_attribute('aria-controls')}']")
        content.wait_for(state="visible")
        page.wait_for_timeout(500)  # the accordion's opening animation
        labels = content.locator("label[data-part=label]")
        titles[section] = [labels.nth(j).inner_text().removesuffix("*").strip()
                           for j in range(labels.count()) if labels.nth(j).is_visible()]
        slug = "".join(c if c.isalnum() else "_" for c in section.lower())
        shots.append(shot(page, dialog, tmp_path / f"trigger_form_{slug}.png"))
    print(f"trigger form sections: {titles}")
    empty = [section for section, shown in titles.items() if not shown]
    assert not empty, f"the trigger form shows empty sections {empty}; see {shots}"
    shown = [title for section in titles.values() for title in section]
    missing = [title for title in FORM_TITLES if title not in shown]
    assert not missing, f"form titles missing: {missing}; shown {titles}; see {shots}"
    raw = [title for title in shown if title.replace("_", "").islower()]
    assert not raw, f"fields without a title (raw param names): {raw}; see {shots}"
    editable_problem = dialog.locator("[name=element_problem]:not([type=hidden])")
    assert editable_problem.count() == 0, "the form has an editable `problem` field"

    # Families: a multi-select, all declared families selected by default; cleared, its
    # menu offers exactly the declared families.
    select = dialog.locator("#element_families")
    section = select.locator("xpath=ancestor::*[@data-part='item-content'][1]")
    trigger = form.locator(f"[aria-controls='{section.get_attribute('id')}']")
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    select.wait_for(state="visible")
    selected = [v.get_attribute("value")
                for v in select.locator("input[type=hidden]").all()]
    assert selected == families, f"default families {selected}, YAML declares {families}"
    select.locator("[aria-label='Clear selected options']").click()
    select.get_by_role("combobox").click()
    options = dialog.get_by_role("option")
    options.first.wait_for()
    offered = options.all_inner_texts()
    shots.append(shot(page, dialog, tmp_path / "trigger_form_families_menu.png"))
    assert sorted(offered) == sorted(families), (
        f"families menu offers {offered}, YAML declares {families}; see {shots[-1]}")
    return shots


def test_trigger_form_of_training_dag(offline_page, tmp_path):
    page, net = offline_page
    home = tmp_path / "airflow"
    home.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = base_env(home, state=tmp_path / "state")
    env.update({
        # Simple auth manager without a login page: everyone is admin (local test only).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        # Nothing runs: no scheduled runs, and the form is never submitted.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    })
    log = home / "standalone.log"
    group = None
    try:
        with standalone(env, port, [], log) as server:
            group = server.pid
            wait_http(f"{base}/api/v2/dags/{DAG_ID}", server, log, timeout=180)  # serialized
            shots = check_trigger_form(page, base, tmp_path)
    finally:
        if group is not None:  # the helper stops standalone; a scheduler may linger
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    assert not net.blocked, (f"the Airflow UI asked for files off the host: {net.blocked}; "
                             f"see {shots}")


def test_mlflow_run_link_opens_the_classic_run_page(offline_page, tmp_path):
    """The Airflow "MLflow run" button's URL opens MLflow's model-training view (with its
    Models and Model registry entries), not the GenAI view."""
    page, _ = offline_page
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW")}
    env["FORECASTFLOW_HOME"] = str(tmp_path / "state")
    port = free_port()
    env["FORECASTFLOW_MLFLOW_UI"] = f"http://127.0.0.1:{port}"
    made = subprocess.run(
        [str(BIN / "python"), "-c", "from forecastflow.lifecycle import tracking; "
         "run = tracking.find_or_create_run('link_check', {'airflow_run_id': 'r'}, 'r'); "
         "print(tracking.run_url(run))"], env=env, capture_output=True, text=True,
        timeout=120, check=True)
    url = made.stdout.strip().splitlines()[-1]
    log = tmp_path / "mlflow-ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen([str(BIN / "forecastflow"), "mlflow-ui", "--port", str(port)],
                              env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", ui, log, timeout=120)
        page.goto(url)
        page.get_by_text("Model registry").first.wait_for(timeout=30_000)
        shot(page, None, tmp_path / "mlflow_run_link.png")
        assert page.get_by_text("Models", exact=True).first.is_visible()
        assert "workflowType=machine_learning" in page.url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
