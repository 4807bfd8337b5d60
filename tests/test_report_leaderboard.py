"""The leaderboard (:mod:`lrstudy.report.leaderboard`) and its links into the MLflow UI
(:mod:`lrstudy.report.links`), on the synthetic store: one row per ranked strategy as the
benchmark table ranks them, each linked to its scenario run and to its trials, whose filter
MLflow itself is asked to run."""

from __future__ import annotations

import doctest
from urllib.parse import parse_qs, urlsplit

import pytest
from report_store import STUDY, store  # noqa: F401 (fixture)

from lrstudy import report
from lrstudy.report import links
from lrstudy.tracking import store as tracking

pytestmark = pytest.mark.xdist_group("report")
UI = "http://ui.example:5000"


def _query(url: str) -> dict:
    """The query of a link into the UI (after the ``#``, where the UI's router reads it)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(urlsplit(url).fragment).query).items()}


def test_the_links_open_the_training_view():
    assert doctest.testmod(links).failed == 0
    ui = links.Links(UI + "/", "7")
    assert ui.experiment() == f"{UI}/#/experiments/7?workflowType=machine_learning"
    url = ui.runs("tags.`a` = 'b'", "metrics.`test_accuracy`")
    assert url.startswith(f"{UI}/#/experiments/7/runs?")
    assert _query(url) == {"workflowType": "machine_learning", "searchFilter": "tags.`a` = 'b'",
                           "orderByKey": "metrics.`test_accuracy`", "orderByAsc": "false"}


def test_the_leaderboard_ranks_as_the_table_and_links_each_strategy_to_its_runs(store):
    table, trials = store["table"], store["trials"]
    ui = links.study_links(STUDY, store["uri"], UI)
    assert ui == links.Links(UI, store["exp_id"])
    board = report.leaderboard_table(table, trials, ui)
    assert board["strategy"].tolist() == table["scenario"].tolist()
    assert board["rank"].tolist() == [1, 2, 3, 4]
    assert board["seeds"].tolist() == table["seeds"].tolist()
    row = board.set_index("strategy").loc["fixed-large"]
    assert row["vs reference"].startswith("-10.00 [") and row["call"] == "worse"
    assert row["tuned LR"] == "0.01" and row["train time s"] == "31.0"
    assert row["test accuracy"] == report.format_table(table).set_index("scenario").loc[
        "fixed-large", "test accuracy"]
    client = store["client"]
    for name, parent in store["parents"].items():
        row = board.set_index("strategy").loc[name]
        assert row["run_url"] == ui.run(parent)  # its scenario run's page
        query = _query(row["trials_url"])
        assert (query["orderByKey"], query["orderByAsc"]) == ("metrics.`test_accuracy`", "false")
        found = {r.info.run_id for r in tracking.search(client, [store["exp_id"]],
                                                         query["searchFilter"])}
        # MLflow's own search finds every trial of the strategy (any status) and nothing else
        assert found == {run_id for key, run_id in store["ids"].items()
                         if isinstance(key, tuple) and key[0] == name}


def test_the_leaderboard_as_markdown_links_names_and_seeds(store):
    ui = links.Links(UI, store["exp_id"])
    board = report.leaderboard_table(store["table"], store["trials"], ui)
    text = report.leaderboard_markdown(board)
    lines = text.splitlines()
    assert lines[0] == ("| rank | strategy | seeds | test accuracy | vs reference | call | "
                        "tuned LR | train time s |")
    assert len(lines) == 2 + len(board)
    parent = store["parents"]["fixed-baseline"]
    row = next(line for line in lines if "[fixed-baseline]" in line)
    assert f"[fixed-baseline]({ui.run(parent)})" in row
    assert f"[3]({board.set_index('strategy').loc['fixed-baseline', 'trials_url']})" in row
    assert "| reference | reference |" in row
    # inside the MLflow UI: names as text, the links in a column of their own
    inside = report.leaderboard_markdown(board, link_names=False).splitlines()
    assert inside[0].startswith("| rank | strategy | runs | test accuracy |")
    trials_url = board.set_index("strategy").loc["fixed-baseline", "trials_url"]
    assert f"| fixed-baseline | [run]({ui.run(parent)}) · [3 seeds]({trials_url}) |" in \
        next(line for line in inside if "| fixed-baseline |" in line)
    # without links: plain names, no link columns
    plain = report.leaderboard_table(store["table"], store["trials"])
    assert not [c for c in plain if c.endswith("_url")]
    assert "](" not in report.leaderboard_markdown(plain)
