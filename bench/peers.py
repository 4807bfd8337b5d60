"""`make bench` (f): the default study's tuning of one strategy done with Keras Tuner or Optuna.

Run by ``bench/bench.py`` as a child process, one per tool, so that each starts TensorFlow
fresh with the threads ``lrstudy run``'s kernel gets for this one-scenario study
(:func:`lrstudy.execution.runner.kernel_environment` at
:func:`lrstudy.execution.runner.concurrent_workers`: one execution at a time, so every core,
then :func:`lrstudy.training.fitting.configure_threads`, as the scenario notebook does) and its
wall time is a whole command's, as lrstudy's is:

    python bench/peers.py keras-tuner|optuna --out result.json [--epochs 8] [--seeds 3]

The work: fixed-baseline (Adam at a constant LR) on the default study's budget (mlp128,
Fashion-MNIST 50,000 / 10,000 split by lrstudy's loader, batch 128, 8 epochs) at each LR of
the study's 5-point grid, 3 seeds each, the way each tool's documentation shows it: a plain
``model.fit`` with validation every epoch (Keras's own defaults: no XLA on a CPU-only
machine, one step per execution), no stacking. Each tool picks its best LR by its own score
(Keras Tuner: the mean over executions of each execution's best epoch's val_accuracy;
Optuna: what the objective returns, here the mean of the last epoch's val_accuracy, which is
lrstudy's score); both scores of every point are written so the picks can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()  # the command's own start (imports included), for its setup time
ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
#: ``lrstudy run``'s default ``--workers``: its kernels' threads follow from it.
RUN_WORKERS = 2
#: The default study's tuning of one strategy: the scenario and its grid's settings.
SCENARIO = "fixed-baseline"


def setup(epochs: int | None):
    """Threads as lrstudy's kernels have them (before TensorFlow starts), then the budget and
    the data as lrstudy loads them (the same split, the same float32 arrays)."""
    from lrstudy.execution import runner

    # the study's one scenario runs one execution at a time, its kernel on every core
    workers = runner.concurrent_workers(RUN_WORKERS, [SCENARIO])
    threads = runner.kernel_environment([], workers, 0)  # sets TF_NUM_*_THREADS
    from lrstudy.data import datasets as data
    from lrstudy.spec import competition
    from lrstudy.spec import study as scenarios
    from lrstudy.training import fitting

    fitting.configure_threads(threads)
    study = scenarios.load_study("seeds", {"epochs": epochs} if epochs else {})
    sc = study.available[SCENARIO]
    budget = sc.budget
    ds = data.load_cached(budget["dataset"], budget["train_size"], budget["val_size"],
                          split=budget["split"])
    grid = competition.Competition(grid_points=5, grid_decades=2.0).grid(sc)
    return threads, budget, ds, grid


def build_model(ds, budget, lr: float):
    """The budget's model through lrstudy's builder, compiled as the tools' examples do."""
    import keras

    from lrstudy import models

    model, logits = models.build(budget["model"], ds.input_shape, ds.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                  metrics=["accuracy"])
    return model


def _tensorboard_stub() -> None:
    """Keras Tuner on TensorFlow imports ``tensorboard.plugins.hparams.api`` at every
    execution, to patch TensorBoard callbacks, even when there is none; the lock's bench extra
    has no tensorboard. An empty module stands in when it is missing: nothing here uses it
    (no TensorBoard callback is passed)."""
    import importlib.util
    import types

    if importlib.util.find_spec("tensorboard") is not None:
        return
    for name in ("tensorboard", "tensorboard.plugins", "tensorboard.plugins.hparams",
                 "tensorboard.plugins.hparams.api"):
        sys.modules.setdefault(name, types.ModuleType(name))


def keras_tuner_search(ds, budget, grid, seeds: int, workdir: str) -> dict:
    """``keras_tuner.GridSearch`` over the grid, ``executions_per_trial=seeds``."""
    import keras

    _tensorboard_stub()
    import keras_tuner

    histories: dict[float, list] = {}  # outside the callback: KT deep-copies callbacks

    class Record(keras.callbacks.Callback):
        """Keeps each execution's val_accuracy per epoch (for the last-epoch score)."""

        def on_train_begin(self, logs=None):
            self._lr = float(self.model.optimizer.learning_rate.numpy())
            self._accs = []

        def on_epoch_end(self, epoch, logs=None):
            self._accs.append(float(logs["val_accuracy"]))

        def on_train_end(self, logs=None):
            histories.setdefault(self._lr, []).append(self._accs)

    def build(hp):
        return build_model(ds, budget, hp.Choice("learning_rate", values=grid))

    keras.utils.set_random_seed(0)
    tuner = keras_tuner.GridSearch(build, objective=keras_tuner.Objective("val_accuracy", "max"),
                                   executions_per_trial=seeds, directory=workdir,
                                   project_name="bench", overwrite=True, seed=0)
    t0 = time.perf_counter()
    tuner.search(ds.x_train, ds.y_train, epochs=budget["epochs"],
                 batch_size=budget["batch_size"], validation_data=(ds.x_val, ds.y_val),
                 callbacks=[Record()], verbose=0)
    search_s = time.perf_counter() - t0
    trials = tuner.oracle.get_best_trials(len(grid))
    own = {t.hyperparameters.get("learning_rate"): t.score for t in trials}
    best = tuner.get_best_hyperparameters(1)[0].get("learning_rate")
    return {"search_s": search_s, "best_lr": best, "own_score": "mean over executions of each "
            "execution's best-epoch val_accuracy (Keras Tuner's default)",
            "scores_own": _by_point(own, grid), **_scores(histories, grid)}


def optuna_search(ds, budget, grid, seeds: int) -> dict:
    """``optuna.samplers.GridSampler`` over the grid, one trial per point, each the mean of the
    last epoch's val_accuracy over ``seeds`` seeds."""
    import keras
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    histories: dict[float, list] = {}

    def objective(trial):
        lr = trial.suggest_categorical("learning_rate", grid)
        finals = []
        for seed in range(seeds):
            keras.utils.set_random_seed(seed)
            model = build_model(ds, budget, lr)
            hist = model.fit(ds.x_train, ds.y_train, epochs=budget["epochs"],
                             batch_size=budget["batch_size"],
                             validation_data=(ds.x_val, ds.y_val), verbose=0)
            histories.setdefault(lr, []).append(hist.history["val_accuracy"])
            finals.append(hist.history["val_accuracy"][-1])
        return sum(finals) / len(finals)

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.GridSampler({"learning_rate": grid},
                                                                    seed=0))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=len(grid))
    search_s = time.perf_counter() - t0
    own = {t.params["learning_rate"]: t.value for t in study.trials}
    return {"search_s": search_s, "best_lr": study.best_params["learning_rate"],
            "own_score": "the objective: mean over seeds of the last epoch's val_accuracy",
            "scores_own": _by_point(own, grid), **_scores(histories, grid)}


def _by_point(scores: dict, grid) -> list:
    """Scores keyed by LR as a list in the grid's order (JSON keys would be strings)."""
    return [scores.get(lr) for lr in grid]


def _scores(histories: dict, grid) -> dict:
    """Each point's mean over seeds of the last epoch's and of the best epoch's
    val_accuracy, and the LR each score picks (ties: the smaller LR, as lrstudy)."""
    def pick(key):
        means = {lr: sum(key(h) for h in hs) / len(hs) for lr, hs in histories.items()}
        return means, min(means, key=lambda lr: (-means[lr], lr))

    last, best_last = pick(lambda h: h[-1])
    top, best_top = pick(max)
    # matching by value: the recorded LR went through float32 (KT's optimizer variable)
    def near(d):
        return [next((v for k, v in d.items() if abs(k - lr) <= 1e-6 * lr), None)
                for lr in grid]
    return {"scores_last_epoch": near(last), "scores_best_epoch": near(top),
            "best_lr_by_last_epoch": min(grid, key=lambda lr: abs(lr - best_last)),
            "best_lr_by_best_epoch": min(grid, key=lambda lr: abs(lr - best_top)),
            "executions": sum(len(hs) for hs in histories.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=("keras-tuner", "optuna"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=0, help="0: the budget's")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    threads, budget, ds, grid = setup(args.epochs)
    setup_s = time.perf_counter() - T0
    with tempfile.TemporaryDirectory(prefix="lrstudy-bench-kt-") as workdir:
        if args.tool == "keras-tuner":
            result = keras_tuner_search(ds, budget, grid, args.seeds, workdir)
        else:
            result = optuna_search(ds, budget, grid, args.seeds)
    result.update(tool=args.tool, threads=threads, setup_s=setup_s, grid=grid,
                  seeds=args.seeds, epochs=budget["epochs"], batch_size=budget["batch_size"],
                  train_size=len(ds.x_train), val_size=len(ds.x_val))
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
