"""``lrstudy ui``: loopback by default, remote only on request, and the runs seen in a browser.

Every server is started with the real command (``python -m lrstudy ui``) in its own process
group and killed with that group, whatever happens in the test. The browser test drives
Debian's Chromium through Playwright (never ``playwright install``) and saves screenshots to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from lrstudy import cli

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
START_TIMEOUT_S = 150  # MLflow's server imports take 20-45 s on this 2-core machine under load
UI_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which something listens on TCP ``port``."""
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def non_loopback_ipv4() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (mlflow forwards it to uvicorn), then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the group outlives its leader while a child lives
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


class UI:
    """One ``python -m lrstudy ui ...`` process (or another server's ``command``), its output in
    a log file."""

    def __init__(self, args, log: Path, env=None, command=None):
        self.log = log
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        command = command or [sys.executable, "-m", "lrstudy", "ui"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*command, *map(str, args)], cwd=ROOT,
                env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if needle in text:
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"{needle!r} not printed by lrstudy ui (exit {self.proc.poll()}):\n"
                    f"{self.output()[-3000:]}")

    def wait_until_serving(self, port: int, timeout: float = START_TIMEOUT_S,
                           path: str = "/health") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"lrstudy ui exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"the MLflow UI did not answer within {timeout} s:\n{self.output()[-3000:]}")


@pytest.fixture
def start_ui(tmp_path):
    """Start ``lrstudy ui ARGS``; every process group started is killed at teardown."""
    started: list[UI] = []

    def start(*args, env=None, command=None) -> UI:
        ui = UI(args, tmp_path / f"ui-{len(started)}.log", env=env, command=command)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        stop(ui.proc)


def require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is not installed (Debian package `chromium`)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


# --- binding: loopback unless asked ------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_remote_host_without_allow_remote_exits_2_before_starting(tmp_path, host):
    store = tmp_path / "store" / "mlflow.db"
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "lrstudy", "ui", "--host", host, "--port", str(port),
         "--tracking-uri", f"sqlite:///{store}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--allow-remote" in lines[0] and host in lines[0]
    assert proc.stdout == ""
    assert not store.parent.exists()  # refused before touching the store
    assert listening_addresses(port) == set()


def test_allow_remote_prints_the_warning_then_starts(tmp_path, start_ui):
    store = tmp_path / "store" / "mlflow.db"
    port = free_port()
    ui = start_ui("--host", "0.0.0.0", "--allow-remote", "--port", port,
                  "--tracking-uri", f"sqlite:///{store}")
    text = ui.wait_for_output(f"MLflow UI on http://0.0.0.0:{port}", timeout=60)
    warning = text.index("warning: the MLflow UI on 0.0.0.0 has no authentication")
    assert warning < text.index("MLflow UI on http://")  # warned before starting
    assert "basic-auth" in text
    assert store.parent.is_dir()  # it went on to open the store
    stop(ui.proc)  # no need to let it listen on every interface
    assert ui.proc.poll() is not None


def test_ui_listens_on_loopback_only_by_default(tmp_path, start_ui):
    store = tmp_path / "store" / "mlflow.db"
    port = free_port()
    ui = start_ui("--port", port, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    ui.wait_until_serving(port)
    assert listening_addresses(port) == {"127.0.0.1"}
    assert store.exists()  # the store named by MLFLOW_TRACKING_URI, not the project's
    for address in non_loopback_ipv4():
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=5):
            pass
    # One uvicorn worker and none of MLflow's job runners (see cmd_ui): mlflow + uvicorn.
    commands = [" ".join(cmd) for cmd in group_commands(ui.proc.pid)]
    assert len(commands) == 2, commands
    assert any("uvicorn" in cmd and "--workers 1 " in cmd + " " for cmd in commands), commands


def group_commands(pgid: int) -> list[list[str]]:
    """The command lines of the live processes of process group ``pgid``."""
    commands = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                commands.append(proc.info["cmdline"] or [])
        except (ProcessLookupError, PermissionError):
            continue
    return commands


# --- the study in a browser ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("smoke")  # one worker runs the smoke study once for these
def test_browser_shows_the_study_runs_and_a_trials_learning_rate(smoke_store, start_ui):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    from lrstudy.tracking import store as tracking

    client = tracking.client(smoke_store["uri"])
    exp_id = client.get_experiment_by_name("smoke").experiment_id
    runs = tracking.search(client, [exp_id])
    by_name = {r.info.run_name: r for r in runs}
    scenarios = sorted(r.info.run_name for r in runs
                       if r.data.tags.get("lrstudy.kind") == "scenario")
    assert scenarios == ["fixed-baseline", "fixed-too-large", "warmup-cosine"]
    trial = by_name["warmup-cosine-s0"]
    lr = trial.data.metrics["learning_rate"]  # the last epoch's value, as the UI shows it
    from lrstudy.execution import report_run

    report_run.publish_verdict("smoke", smoke_store["uri"])  # the aggregates on scenario runs
    scenario_run = client.get_run(by_name["warmup-cosine"].info.run_id)
    aggregates = scenario_run.data.metrics
    assert {"test_accuracy_mean", "test_accuracy_ci_low", "p_best"} <= set(aggregates)
    assert exp_id and client.get_experiment(exp_id).tags[tracking.EXPERIMENT_KIND[0]] == \
        tracking.EXPERIMENT_KIND[1]

    port = free_port()
    ui = start_ui("--tracking-uri", smoke_store["uri"], "--port", port)
    ui.wait_until_serving(port)
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)  # actions
            expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions (default 5 s)

            # MLflow 3.17.2's UI ignores the experiment's `mlflow.experimentKind` tag (its
            # workflow switch is on) and opens experiments on its GenAI page unless the URL or
            # the browser's remembered choice says otherwise. The link `lrstudy ui` prints
            # asks for the training view; from it, the study's experiment opens on its runs.
            link = re.search(r"^  smoke: (http://\S+)$", ui.output(), re.M).group(1)
            assert link == f"{base}/#/experiments/{exp_id}?{cli.TRAINING_VIEW}"
            page.goto(link)
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
            expect(page.get_by_text("Detect Issues in Your Traces")).to_have_count(0)
            for scenario in scenarios:  # parents first, each expanded to show its trials
                link = page.get_by_role("link", name=scenario, exact=True)
                expect(link).to_have_attribute(
                    "href", f"#/experiments/{exp_id}/runs/{by_name[scenario].info.run_id}")
                page.get_by_role("gridcell").filter(has=link).get_by_role("button").click()
                for seed in (0, 1):
                    name = f"{scenario}-s{seed}"
                    expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute(
                        "href", f"#/experiments/{exp_id}/runs/{by_name[name].info.run_id}")
            expect(page.get_by_text(f"{len(runs)} matching runs")).to_be_visible()
            _close_assistant(page)
            page.screenshot(path=str(ARTIFACTS / "mlflow-experiment.png"))

            page.goto(f"{base}/#/experiments/{exp_id}/runs/{trial.info.run_id}"
                      f"?{cli.TRAINING_VIEW}")
            expect(page.get_by_role("heading", name="warmup-cosine-s0", exact=True)).to_be_visible()
            metrics = page.get_by_role("table").filter(
                has=page.get_by_role("columnheader", name=re.compile(r"^Metric\b")))
            row = metrics.get_by_role("row").filter(
                has=page.get_by_role("cell", name="learning_rate", exact=True))
            expect(row).to_have_count(1)
            shown = row.get_by_role("cell").nth(1).inner_text()
            assert float(shown) == pytest.approx(lr, rel=1e-9)
            row.scroll_into_view_if_needed()
            _close_assistant(page)
            page.screenshot(path=str(ARTIFACTS / "mlflow-run.png"))

            # a scenario run shows the verdict's aggregates over its seeds
            page.goto(f"{base}/#/experiments/{exp_id}/runs/{scenario_run.info.run_id}"
                      f"?{cli.TRAINING_VIEW}")
            expect(page.get_by_role("heading", name="warmup-cosine", exact=True)).to_be_visible()
            metrics = page.get_by_role("table").filter(
                has=page.get_by_role("columnheader", name=re.compile(r"^Metric\b")))
            for key in ("test_accuracy_mean", "test_accuracy_ci_low", "test_accuracy_ci_high",
                        "n_seeds", "p_best"):
                row = metrics.get_by_role("row").filter(
                    has=page.get_by_role("cell", name=key, exact=True))
                expect(row).to_have_count(1)
                shown = row.get_by_role("cell").nth(1).inner_text()
                assert float(shown) == pytest.approx(aggregates[key], rel=1e-6), key
            _close_assistant(page)
            page.screenshot(path=str(ARTIFACTS / "mlflow-scenario-aggregates.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "mlflow-experiment.png").stat().st_size > 10_000
    assert (ARTIFACTS / "mlflow-run.png").stat().st_size > 10_000


def _close_assistant(page) -> None:
    """Fold MLflow's assistant side panel away, so that screenshots show the runs."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() == 1:
        close.click()
