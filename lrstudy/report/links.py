"""Links into the MLflow UI: a study's experiment, a run's page, a filtered and sorted list of
runs. The report cannot know where a reader's UI runs, so the address is a parameter
(:data:`DEFAULT_UI`, what ``lrstudy ui`` serves, unless told otherwise); an empty address
gives links relative to the UI itself (``#/experiments/...``), for Markdown shown inside it.

Every link asks for the UI's training view (:data:`~lrstudy.tracking.ui_links.TRAINING_VIEW`):
MLflow 3.17's UI takes its view from the URL's ``workflowType``, else from the browser's
remembered choice, which defaults to the GenAI pages (its run pages then sit in an
"Evaluations" sidebar); the experiment tag ``mlflow.experimentKind`` is not consulted.

>>> links = Links("http://127.0.0.1:5000", "1")
>>> links.run("abc")
'http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning'
>>> Links("", "1").experiment()
'#/experiments/1?workflowType=machine_learning'
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

from lrstudy.report.frames import experiment_id
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.ui_links import TRAINING_VIEW

DEFAULT_UI = "http://127.0.0.1:5000"  # lrstudy ui's (and mlflow ui's) default address


@dataclasses.dataclass(frozen=True)
class Links:
    """The links of one experiment: ``base`` the UI's address (``""``: relative links)."""

    base: str
    experiment_id: str

    def _url(self, path: str, query: dict | None = None) -> str:
        query = f"{TRAINING_VIEW}&{urlencode(query)}" if query else TRAINING_VIEW
        return f"{self.base.rstrip('/')}{'/' if self.base else ''}#/experiments/" \
               f"{self.experiment_id}{path}?{query}"

    def experiment(self) -> str:
        """The experiment's runs."""
        return self._url("")

    def run(self, run_id: str) -> str:
        """One run's page: its params, metrics, tags, description and artifacts."""
        return self._url(f"/runs/{run_id}")

    def runs(self, search_filter: str, order_by: str | None = None,
             ascending: bool = False) -> str:
        """The runs matching ``search_filter`` (MLflow's search syntax), sorted by
        ``order_by`` (``metrics.`test_accuracy```...), as the runs list keeps them in its
        URL."""
        query = {"searchFilter": search_filter}
        if order_by:
            query.update(orderByKey=order_by, orderByAsc=str(ascending).lower())
        return self._url("/runs", query)


def trials_filter(scenario: str, phase: str = "") -> str:
    """The search filter of a strategy's trials (of one phase, when given)."""
    found = f"tags.`{Tag.SCENARIO}` = '{scenario}' and tags.`{Tag.KIND}` = 'trial'"
    return found + (f" and tags.`{Tag.PHASE}` = '{phase}'" if phase else "")


def study_links(study: str, tracking_uri: str | None = None,
                base: str = DEFAULT_UI) -> Links | None:
    """The links of ``study``'s experiment at the UI ``base``; None without such a study."""
    found = experiment_id(study, tracking_uri)
    return None if found is None else Links(base, found)
