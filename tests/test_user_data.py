"""A user's own data and task, end to end: one study, one scenario per kind of source.

The test writes its data (a CSV of 300 rows with three classes, a regression CSV, an npz
with its own validation and test sets, a directory of 60 tiny PNGs in two classes, a module
whose function returns what ``keras.datasets.*.load_data()`` returns, with a user model),
runs the study once through ``lrstudy run`` (real papermill kernels, a real MLflow sqlite
store) and asserts on each trial: its task's metrics, the logged input dataset with the
data's SHA-256, the run key as :mod:`lrstudy.spec.study` computes it from the study file.
The run key follows the data's content, not its path (in-process, no training), and the
verdict's better/worse follows the primary metric's direction (on frames, no training).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import finished_trials, run_cli

pytestmark = pytest.mark.xdist_group("user_data")

SCENARIOS = ("csv", "regression", "npz", "images", "function")

STUDY = """
description = "a user's own data, one scenario per kind of source"
seeds = 1
scenarios = {scenarios}

[budget]
model = "mlp128"
batch_size = 32
epochs = 2
steps_per_execution = 4
jit_compile = false

[scenario.csv]
family = "fixed"
learning_rate = 0.01
budget = {{ dataset = {{ csv = "data/flowers.csv", label = "species" }} }}

[scenario.regression]
family = "fixed"
learning_rate = 0.01
budget = {{ dataset = {{ csv = "data/houses.csv", label = "price" }}, task = "regression", target = 1000.0 }}

[scenario.npz]
family = "fixed"
learning_rate = 0.01
budget = {{ dataset = {{ npz = "data/arrays.npz" }} }}

[scenario.images]
family = "fixed"
learning_rate = 0.01
budget = {{ dataset = {{ images = "data/shapes", image_size = [8, 8], color_mode = "grayscale" }} }}

[scenario.function]
family = "fixed"
learning_rate = 0.01
budget = {{ dataset = "userdata_mod:load_data", model = "userdata_mod:tiny_model" }}
"""

MODULE = '''
"""A user's data function and model, as a user would write them."""
import numpy as np


def load_data():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (150, 5, 5), dtype=np.uint8)
    y = (x.reshape(150, -1).mean(axis=1) > 127).astype(np.uint8)
    return (x[:120], y[:120]), (x[120:], y[120:])


def tiny_model(input_shape, num_classes):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes)])
'''


def write_data(root):
    """The data files of :data:`STUDY` under ``root / "data"``, and the user module."""
    from PIL import Image

    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir(parents=True)
    x = rng.normal(size=(300, 4))
    flowers = pd.DataFrame(x, columns=["sepal", "petal", "stem", "leaf"])
    flowers["species"] = np.argmax(x[:, :3], axis=1)  # three classes
    flowers.to_csv(data / "flowers.csv", index=False)
    houses = pd.DataFrame(x, columns=["rooms", "area", "age", "floor"])
    houses["price"] = 100 + x @ [10.0, 20.0, -5.0, 2.0] + rng.normal(size=300)
    houses.to_csv(data / "houses.csv", index=False)
    xs = rng.normal(size=(300, 6)).astype(np.float32)
    ys = (xs[:, 0] > 0).astype(np.int64)
    np.savez(data / "arrays.npz", x_train=xs[:200], y_train=ys[:200], x_val=xs[200:240],
             y_val=ys[200:240], x_test=xs[240:], y_test=ys[240:])
    for label, level in (("dark", 40), ("light", 210)):
        (data / "shapes" / label).mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(data / "shapes" / label / f"{i}.png")
    (root / "pkg").mkdir()
    (root / "pkg" / "userdata_mod.py").write_text(MODULE)


@pytest.fixture(scope="module")
def user_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_data")
    write_data(root)
    study = root / "mine.toml"
    study.write_text(STUDY.format(scenarios=json.dumps(list(SCENARIOS))))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    proc = run_cli("run", "--study", study, "--tracking-uri", uri, "--quiet",
                   env={"PYTHONPATH": str(root / "pkg"), "LRSTUDY_RUNS_DIR": str(root / "runs")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {r.data.tags["lrstudy.scenario"]: r for r in finished_trials(uri, "mine")}
    return {"root": root, "study": study, "uri": uri, "runs": runs}


def _study(path):
    from lrstudy.spec import study as scenarios

    return scenarios.load_study(str(path))


def test_every_kind_of_source_trains_into_mlflow(user_study):
    runs = user_study["runs"]
    assert sorted(runs) == sorted(SCENARIOS)
    expected = {"csv": ("flowers.csv", 3), "npz": ("arrays.npz", 2),
                "images": ("shapes", 2), "function": ("userdata_mod:load_data", 2)}
    for name, (dataset, classes) in expected.items():
        run = runs[name]
        assert run.data.params["dataset"] == dataset
        assert int(run.data.params["num_classes"]) == classes
        for key in ("val_accuracy", "test_accuracy", "test_loss"):
            assert 0 <= run.data.metrics[key] <= (1 if "accuracy" in key else 1e3), (name, key)
    assert int(runs["npz"].data.params["val_size"]) == 40  # the npz's own validation set
    assert int(runs["npz"].data.params["train_size"]) == 200
    # 300 rows: 60 carved off for the test, a sixth of the remaining 240 for validation
    assert int(runs["csv"].data.params["train_size"]) == 200
    assert int(runs["csv"].data.params["val_size"]) == 40
    assert runs["function"].data.params["model"] == "userdata_mod:tiny_model"


def test_a_regression_logs_mse_mae_and_rmse_not_accuracy(user_study):
    from lrstudy.tracking import store as tracking

    run = user_study["runs"]["regression"]
    metrics = run.data.metrics
    assert run.data.params["task"] == "regression"
    assert int(run.data.params["num_classes"]) == 1
    for key in ("val_rmse", "val_mae", "test_rmse", "test_mae", "rmse", "mae"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0, key
    assert metrics["val_rmse"] == pytest.approx(np.sqrt(metrics["val_loss"]), rel=1e-3)
    assert "test_accuracy" not in metrics and "val_accuracy" not in metrics
    # the target is an RMSE to reach from above: prices near 100 start far below 1,000
    assert metrics["val_rmse"] < 1000.0
    assert metrics["epochs_to_target"] == 1 and metrics["time_to_target_s"] > 0
    assert float(run.data.params["target"]) == 1000.0
    # the executed notebook's results table shows the regression's metric
    notebook = (user_study["root"] / "runs" / tracking.store_label(user_study["uri"]) / "mine"
                / "regression.ipynb").read_text()
    assert "val_rmse" in notebook and "test_rmse" in notebook


def test_the_logged_input_dataset_carries_the_data_fingerprint(user_study):
    for name, run in user_study["runs"].items():
        (inp,) = run.inputs.dataset_inputs
        sha = run.data.params["dataset.sha256"]
        assert len(sha) == 64
        assert inp.dataset.name == run.data.params["dataset"]
        assert inp.dataset.digest == sha[:32], name
        assert any(t.key == "mlflow.data.context" and t.value == "train" for t in inp.tags)


def test_the_run_key_is_the_studys_and_follows_the_content_not_the_path(user_study, tmp_path):
    from lrstudy.spec import competition

    root = user_study["root"]
    # the CSV scenarios alone (the image directory would have this process import Keras);
    # the study's name is not in the key
    csv_only = STUDY.format(scenarios='["csv", "regression"]')
    csv_only = csv_only[:csv_only.index("[scenario.npz]")]
    (root / "csv_only.toml").write_text(csv_only)
    spec = _study(root / "csv_only.toml")
    for name in ("csv", "regression"):
        run = user_study["runs"][name]
        assert run.data.tags["lrstudy.run_key"] == competition.key_of(spec.scenarios[name], 0)
    key = competition.key_of(spec.scenarios["csv"], 0)
    # the same study and data elsewhere: the same key
    shutil.copytree(root / "data", tmp_path / "data")
    moved = tmp_path / "mine.toml"
    shutil.copy(root / "csv_only.toml", moved)
    assert competition.key_of(_study(moved).scenarios["csv"], 0) == key
    # one value changed in the CSV at the same path: another trial
    frame = pd.read_csv(tmp_path / "data" / "flowers.csv")
    frame.loc[0, "sepal"] += 1.0
    frame.to_csv(tmp_path / "data" / "flowers.csv", index=False)
    changed = _study(moved).scenarios["csv"]
    assert competition.key_of(changed, 0) != key
    assert changed.budget_label.startswith("mlp128 on flowers.csv (200 train / 40 val)")


def _trials(task: str, metric: str, values: dict) -> pd.DataFrame:
    rows = [{"scenario": name, "seed": seed, "diverged": False, metric: v, "task": task,
             "num_classes": 1 if task == "regression" else 10, "model": "m", "dataset": "d",
             "train_size": 100, "batch_size": 32, "epochs": 2, "family": "fixed",
             "baseline": "ref"}
            for name, seeds in values.items() for seed, v in enumerate(seeds)]
    return pd.DataFrame(rows)


def test_the_verdict_ranks_a_regression_on_rmse_lower_is_better():
    from lrstudy.report import format_table, verdict
    from lrstudy.report.tables import benchmark_table

    lower = [2.00, 2.10, 1.95, 2.05, 2.02]
    higher = [3.00, 3.20, 2.90, 3.10, 3.05]
    # as a regression, the lower RMSE is better ...
    (found,) = verdict.verdicts(_trials("regression", "test_rmse",
                                        {"ref": higher, "low": lower}), "ref", margin=0.1)
    table = found["table"].set_index("scenario")
    assert table.loc["low", "call"] == "better" and table.index[0] == "low"
    assert found["text"].startswith("Best: low, -1.026 RMSE against the reference ref")
    # ... whereas the same numbers as accuracies make it worse
    (acc,) = verdict.verdicts(_trials("classification", "test_accuracy",
                                      {"ref": [v / 4 for v in higher],
                                       "low": [v / 4 for v in lower]}), "ref", margin=0.003)
    assert acc["table"].set_index("scenario").loc["low", "call"] == "worse"
    assert acc["text"].startswith("Best: ref (the reference), test accuracy")
    # the benchmark table and its readable form show the RMSE itself
    trials = _trials("regression", "test_rmse", {"ref": higher, "low": lower})
    for column in ("final_val_rmse", "final_val_loss", "test_loss", "best_val_loss",
                   "best_val_loss_epoch", "epochs_to_target", "time_to_target_s",
                   "train_time_s", "learning_rate", "peak_lr", "optimizer", "schedule"):
        trials[column] = np.nan
    bench = benchmark_table(trials, "ref", margin=0.1)
    assert bench["scenario"].tolist() == ["low", "ref"]
    assert bench.loc[0, "test_rmse_mean"] == pytest.approx(np.mean(lower))
    shown = format_table(bench)
    assert "test RMSE" in shown and "test accuracy" not in shown
    assert shown.loc[1, "vs reference, RMSE [simultaneous 95% CI]"].startswith("-1.026")


def test_a_user_model_gets_one_linear_output_for_a_regression():
    from lrstudy import models

    model, from_logits = models.build("mlp512_200", (4,), 1, task="regression")
    assert model.outputs[0].shape[-1] == 1 and from_logits
    assert model.layers[-1].activation.__name__ == "linear"
    with pytest.raises(ValueError, match="one"):
        models.build("mlp128", (4,), 3, task="regression")



def test_a_user_module_that_raises_at_import_is_reported_with_its_exception(tmp_path,
                                                                            monkeypatch):
    """Its own exception (type and message) is the cause named, whether the module is located
    before training (models.check), imported in a kernel (models.resolve) or is a dataset
    function's (sources)."""
    from lrstudy import models
    from lrstudy.spec import study as scenarios

    (tmp_path / "raising_models.py").write_text(
        'raise RuntimeError("boom")\n\n\ndef build(input_shape, num_classes):\n    pass\n')
    (tmp_path / "raising_data.py").write_text(
        'raise RuntimeError("no data today")\n\n\ndef load_data():\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    for call in (models.check, models.resolve):
        with pytest.raises(ValueError) as err:
            call("raising_models:build")
        assert "'raising_models:build'" in str(err.value), call
        assert "RuntimeError: boom" in str(err.value) and "\n" not in str(err.value), call
    study = tmp_path / "s.toml"
    study.write_text('scenarios = ["fixed-baseline"]\n[budget]\n'
                     'dataset = "raising_data:load_data"\n')
    with pytest.raises(scenarios.SpecError, match="RuntimeError: no data today"):
        scenarios.load_study(str(study))


def test_a_csv_with_a_header_and_no_rows_says_so(tmp_path):
    from lrstudy.spec import study as scenarios

    (tmp_path / "empty.csv").write_text("a,b,y\n")
    study = tmp_path / "s.toml"
    study.write_text('scenarios = ["fixed-baseline"]\n[budget]\n'
                     'dataset = { csv = "empty.csv", label = "y" }\n')
    with pytest.raises(scenarios.SpecError) as err:
        scenarios.load_study(str(study))
    message = str(err.value)
    assert "empty.csv" in message and "no rows" in message and "not numeric" not in message
    assert "scenario 'fixed-baseline'" in message  # the study's own scenario, not the first


@pytest.mark.parametrize("text", ["", "\n", "# to be written\n\n"], ids=["0 bytes", "blank",
                                                                      "comments"])
def test_an_empty_study_file_is_refused_not_taken_as_every_scenario(tmp_path, text):
    from lrstudy.spec import study as scenarios

    study = tmp_path / "mine.toml"
    study.write_text(text)
    with pytest.raises(scenarios.SpecError, match=r"mine\.toml names no scenarios: add "
                                                  r"scenarios = \["):
        scenarios.load_study(str(study))
    # a file with keys but no `scenarios` still means every scenario of the catalogue
    study.write_text(text + "seeds = 1\n")
    assert len(scenarios.load_study(str(study)).scenarios) == len(scenarios.catalogue())
