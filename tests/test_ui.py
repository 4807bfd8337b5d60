"""``lrstudy ui``: loopback by default, remote only on request, and the runs seen in a browser.

Every server is started with the real command (``python -m lrstudy ui``) in its own process
group and killed with that group, whatever happens in the test. The browser test drives
Debian's Chromium through Playwright (never ``playwright install``) and saves screenshots to
``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
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
from lrstudy.tracking import ui_links

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


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 900):
    """A page of Debian's Chromium driven by Playwright (never ``playwright install``), with
    :data:`UI_TIMEOUT_MS` for its actions and assertions; the browser closed after."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(UI_TIMEOUT_MS)  # actions
            expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions (default 5 s)
            yield page
        finally:
            browser.close()


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
    from playwright.sync_api import expect

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

    with chromium_page() as page:
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
    assert (ARTIFACTS / "mlflow-experiment.png").stat().st_size > 10_000
    assert (ARTIFACTS / "mlflow-run.png").stat().st_size > 10_000


def _close_assistant(page) -> None:
    """Fold MLflow's assistant side panel away, so that screenshots show the runs."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() == 1:
        close.click()


# --- the leaderboard ------------------------------------------------------------------------

#: A study's scenario runs as the report leaves them, created in this order (the UI's default
#: order, newest first, is the reverse of the ranking): name, test_accuracy_mean, the
#: difference to the reference in points with its interval, the call. The reference has no
#: difference; a tuning phase's scenario run has no aggregate at all.
LEADERBOARD_RUNS = [
    ("warmup-cosine", 0.895, (1.5, 0.9, 2.1), "better"),
    ("one-cycle", 0.884, (0.4, -0.2, 1.0), "undecided"),
    ("fixed-baseline", 0.880, None, "reference"),
    ("decay-exponential", 0.868, (-1.2, -1.9, -0.6), "worse"),
    ("plateau", None, None, None),
]
RANKED = ["warmup-cosine", "one-cycle", "fixed-baseline", "decay-exponential", "plateau"]


def log_scenario_runs(client, exp_id: str, runs=LEADERBOARD_RUNS) -> dict[str, str]:
    """Scenario runs with the report's aggregates, each with a trial child; a summary run.
    Returns {run name: run id}, the trials' and the summary's included."""
    from mlflow.entities import Metric

    from lrstudy.tracking.schema import Tag

    start = int(time.time() * 1000) - 3_600_000
    ids = {}
    for i, (name, mean, diff, call) in enumerate(runs):
        tags = {Tag.KIND: "scenario", Tag.SCENARIO: name,
                Tag.PHASE: "tune" if mean is None else "final"}
        if call:
            tags[Tag.CALL] = call
        run = client.create_run(exp_id, start_time=start + 60_000 * i, tags=tags, run_name=name)
        metrics = {} if mean is None else {"test_accuracy_mean": mean, "n_seeds": 10}
        if diff is not None:
            metrics.update(zip(ui_links.DIFF_METRICS, diff))
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, start, 0)
                                                   for k, v in metrics.items()])
        child = client.create_run(exp_id, start_time=start + 60_000 * i + 1, run_name=f"{name}-s0",
                                  tags={Tag.KIND: "trial", "mlflow.parentRunId": run.info.run_id})
        for r in (run, child):
            client.set_terminated(r.info.run_id)
        ids.update({name: run.info.run_id, f"{name}-s0": child.info.run_id})
    summary = client.create_run(exp_id, run_name="summary", tags={Tag.KIND: "summary"})
    client.set_terminated(summary.info.run_id)
    return {**ids, "summary": summary.info.run_id}


def test_the_leaderboard_shows_the_metrics_the_report_writes():
    import pandas as pd

    from lrstudy import tasks
    from lrstudy.report import publish

    row = pd.Series({"diff": 0.01, "diff_low": 0.0, "diff_high": 0.02})
    for task in (tasks.CLASSIFICATION, tasks.REGRESSION):
        assert tuple(publish.shown_difference(row, task)) == ui_links.DIFF_METRICS
    assert ui_links.N_SEEDS in publish.SCENARIO_METRICS
    assert ui_links.ranking_metric(tasks.CLASSIFICATION) in publish.SCENARIO_METRICS
    assert ui_links.ranking_metric(tasks.REGRESSION) == "test_rmse_mean"  # publish's renaming


def test_save_leaderboard_writes_one_view_per_study_and_keeps_it(tmp_path):
    from lrstudy import tasks
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    key = ui_links.SAVED_VIEW_TAG + ui_links.LEADERBOARD

    study = tracking.experiment_id("study", uri, client)
    log_scenario_runs(client, study, LEADERBOARD_RUNS[:2])
    assert ui_links.save_leaderboard(client, study)
    view = json.loads(client.get_experiment(study).tags[key])
    assert view["name"] == ui_links.LEADERBOARD_NAME
    state = json.loads(view["state"])
    assert state == ui_links.leaderboard_state(tasks.CLASSIFICATION)
    assert state["orderByKey"] == "metrics.`test_accuracy_mean`" and not state["orderByAsc"]
    assert "metrics.`diff_vs_reference`" in state["selectedColumns"]
    assert ui_links.save_leaderboard(client, study)  # unchanged: left as it was
    assert json.loads(client.get_experiment(study).tags[key]) == view
    older = {**view, "updatedAt": 1, "state": json.dumps({**state, "orderByAsc": True})}
    client.set_experiment_tag(study, key, json.dumps(older))  # an older lrstudy's view
    assert ui_links.save_leaderboard(client, study)
    renewed = json.loads(client.get_experiment(study).tags[key])
    assert json.loads(renewed["state"]) == state and renewed["updatedAt"] > 1
    assert renewed["createdAt"] == view["createdAt"]

    regression = tracking.experiment_id("regression-study", uri, client)
    log_scenario_runs(client, regression, LEADERBOARD_RUNS[:1])
    trial = client.search_runs([regression], "tags.`lrstudy.kind` = 'trial'")[0]
    client.log_param(trial.info.run_id, ui_links.TASK_PARAM, "regression")
    assert ui_links.save_leaderboard(client, regression)
    state = json.loads(json.loads(client.get_experiment(regression).tags[key])["state"])
    assert state["orderByKey"] == "metrics.`test_rmse_mean`" and state["orderByAsc"]  # lower

    finder = tracking.experiment_id("lr-range-test", uri, client)  # no scenario runs
    client.set_terminated(client.create_run(finder, tags={"lrstudy.kind": "lr_range_test"})
                          .info.run_id)
    assert not ui_links.save_leaderboard(client, finder)
    assert key not in client.get_experiment(finder).tags


@pytest.mark.slow
def test_browser_leaderboard_link_ranks_the_scenario_runs_with_their_difference(tmp_path,
                                                                                start_ui):
    require_chromium()
    from playwright.sync_api import expect

    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id("ranked", uri, client)
    ids = log_scenario_runs(client, exp_id)
    port = free_port()
    ui = start_ui("--tracking-uri", uri, "--port", port)
    ui.wait_until_serving(port)
    base = f"http://127.0.0.1:{port}"
    link = re.search(r"^    leaderboard: (http://\S+)$", ui.output(), re.M).group(1)
    assert link == ui_links.leaderboard_url(base, exp_id)
    assert re.search(rf"^  ranked: {re.escape(ui_links.study_url(base, exp_id))}$",
                     ui.output(), re.M)
    diff_column = "metrics.`diff_vs_reference`"
    ARTIFACTS.mkdir(exist_ok=True)

    with chromium_page() as page:
        page.goto(link)
        # filtered to the scenario runs: no trial, no summary
        expect(page.get_by_text(f"{len(RANKED)} matching runs")).to_be_visible()
        for name in RANKED:
            expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute(
                "href", f"#/experiments/{exp_id}/runs/{ids[name]}")
        for name in ("summary", *(f"{n}-s0" for n in RANKED)):
            expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        _close_assistant(page)
        # the difference column is shown
        header = page.locator(f'[role="columnheader"][col-id="{diff_column}"]')
        expect(header).to_be_visible()
        expect(header).to_contain_text("diff_vs_reference")
        # best first by test_accuracy_mean; the run without it last
        rows = {name: int(page.get_by_role("row").filter(
                    has=page.get_by_role("link", name=name, exact=True))
                    .get_attribute("aria-rowindex")) for name in RANKED}
        assert sorted(rows, key=rows.get) == RANKED
        for name, mean, diff, call in LEADERBOARD_RUNS:
            cell = page.locator(f'[role="row"][aria-rowindex="{rows[name]}"] '
                                f'[role="gridcell"][col-id="{diff_column}"]')
            expect(cell).to_be_visible()
            shown = cell.inner_text().strip()
            if diff is None:
                assert shown == "-", (name, shown)
            else:
                assert float(shown) == pytest.approx(diff[0], abs=5e-4), (name, shown)
        page.screenshot(path=str(ARTIFACTS / "mlflow-leaderboard.png"))
    assert (ARTIFACTS / "mlflow-leaderboard.png").stat().st_size > 10_000


def test_a_store_that_refuses_the_view_is_browsed_without_a_leaderboard(tmp_path, monkeypatch,
                                                                         capsys):
    from mlflow.exceptions import MlflowException

    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = tracking.experiment_id("study", uri)
    capsys.readouterr()  # MLflow's notes on making the store

    def refuse(client, exp_id):
        raise MlflowException("attempt to write a readonly database")

    monkeypatch.setattr(ui_links, "save_leaderboard", refuse)
    assert cli._studies(uri) == [("study", exp_id, False)]
    assert capsys.readouterr().err == ("warning: no leaderboard for study: attempt to write a "
                                       "readonly database\n")
