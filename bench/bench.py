"""`make bench`: performance ratios measured side by side in one run, written to JSON.

(a) training path: the tutorials' plain ``model.fit`` (MLP128, batch 32, all of
    Fashion-MNIST, Adam) against ours (``fitting.fit_scenario``: a stack of one,
    ``lrstudy.training.vector_stack``: batches gathered from the cached arrays in an XLA-compiled loop of
    many steps, our recording callbacks) on the same model, data, batch, epochs and seeds:
    ratio of the median epoch times, and the final validation accuracies.
(b) tracking overhead on the default study's budget: our callbacks logging every step into a
    real sqlite MLflow store, against the same fit without callbacks, epoch by epoch in turns
    (steady-state epochs, plus the final flush; see WARMUP_EPOCHS), with an A/A control
    that says whether this run resolves it (else the line says the machine was too noisy,
    with no figure: :func:`tracking_resolution`); and the same ratio for
    ``mlflow.keras.MlflowCallback(log_every_n_steps=1)``.
(c) orchestration overhead: wall time of ``lrstudy run`` (papermill, kernels, MLflow) on a
    slice of the default study, against the pure in-process time of the same fits (same data,
    model, epochs; no notebooks, no tracking), in turns (in-process, run, run, in-process).
(d) the summary's query time over a store of 500 synthetic trials.
(e) stacking (lrstudy.stack): the default study's trials trained as one program against one
    by one, in turns: trial-epochs per second each way (and one by one with Keras's ``fit``,
    as trials trained before lrstudy.training.vector_stack), the peak memory of the stack; and the wall
    time of ``lrstudy run`` on a small slice with ``--stack auto`` and ``off``.
(f) against the tools a user would pick: the default study's tuning of one strategy
    (fixed-baseline: 5 LRs x 3 seeds on the default budget) by ``lrstudy run``, by Keras
    Tuner's GridSearch and by Optuna's GridSampler (``bench/peers.py``, the same data split,
    model, batch, epochs and threads, each as its documentation shows it): whole commands'
    wall times in turns, the speed-ups, and whether each picks the same LR.
(g) the stack's efficiency: the FLOP rate of a steady epoch (training and validation) of the
    tuning's 15 trials as one VectorStack over the best rate of XLA batched matmuls of the
    step's own shapes measured in the same process; the parts of the epoch (the compiled
    loop, its per-step records, validation, the rest), each timed alone; and what limits it:
    the epoch cut into its products, the batches' gathers, the optimizer's updates and
    validation, each timed alone, and the efficiency they would leave with nothing else.
(r) the wall time of refusing a bad study file (one line, exit 2, no TensorFlow import).
(s) a study's wall time over the sum of its stacks' steady training time (epochs without
    the first one's compile; ``study_time.py``): the default study on a few strategies run
    by ``lrstudy run``, or a finished study read from ``--study-store``.

Each pair runs alternately (A B A B ...) in this one process, so drift hits both sides alike:
epoch by epoch for (a) and (b) (Keras's fits through ``initial_epoch``, ours through
:func:`trial_epochs`).
Usage: python bench/bench.py [--quick] [--only a,b,c,d,e,f,g,r,s] [--out bench/results.json]
       [--study-store URI [--study-name NAME]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lrstudy.tracking.schema import Tag

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
#: The epochs of each fit left out of the steady state of (a) and (b): the first traces and
#: compiles; the second pays, once, TensorFlow's setting up again of the functions a fit
#: traced in its first epoch after the other fits taking turns traced theirs (measured in
#: (b): the probe's first call after the other trials' first epochs took 72 ms, its next
#: 5 ms, against 4 ms in every epoch of a trial alone, which shows no such second epoch).
WARMUP_EPOCHS = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class EpochTimer:
    """Per-epoch wall times: ``first`` goes first in the callback list and ``last`` last, so
    the time covers every callback of the epoch (our probe and drains included)."""

    def __init__(self):
        import keras

        self.times = []
        timer = self

        class First(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.t0 = time.perf_counter()

        class Last(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                timer.times.append(time.perf_counter() - timer.t0)

        self.first, self.last = First(), Last()

    def around(self, callbacks):
        return [self.first, *callbacks, self.last]


def fit_one_epoch(model, data, epoch: int, **kwargs):
    """Continue a fit by one epoch (``initial_epoch``): lets two fits take turns."""
    return model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=0, **kwargs)


def trial_epochs(prepared):
    """One prepared trial (``prepare_fit(..., pipeline=False)``) trained as
    :func:`lrstudy.training.fitting.fit_scenario` trains it (a stack of one, :mod:`lrstudy.training.vector_stack`),
    epoch by epoch: a generator that yields after each epoch's end (for taking turns)."""
    from lrstudy.training import fitting, stacking
    from lrstudy.training import vector_stack as vstack

    stacked = stacking.stack_of([prepared], fitting.steps_per_execution(prepared.scenario))
    assert isinstance(stacked, vstack.VectorStack), "the bench's model must vectorize"
    return stacking.train(stacked, [prepared])


def bench_training_path(epochs: int, seeds: int) -> dict:
    """(a) plain model.fit vs ours, epoch by epoch in turns, same model/data/batch/seeds.

    The two fits take turns one epoch at a time (plain: ``initial_epoch``; ours:
    :func:`trial_epochs`), so that the drift of a
    shared machine hits both sides alike; the first :data:`WARMUP_EPOCHS` of each are left
    out of the times.
    """
    import keras

    from lrstudy import models
    from lrstudy.data import datasets as data
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking.metric_sink import MetricSink
    from lrstudy.training import fitting

    study = scenarios.load_study("seeds", {"epochs": epochs, "batch_size": 32})
    sc = study.scenarios["fixed-baseline"]  # Adam at Keras's default 0.001
    ds = data.load_cached("fashion_mnist", 0, sc.budget["val_size"])
    plain_t, ours_t, plain_acc, ours_acc, per_seed = [], [], [], [], []
    for seed in range(seeds):
        sink = MetricSink()
        # every recording callback on (MLflow: (b)); trained as fit_scenario trains it
        ours = fitting.prepare_fit(sc, seed, sink, pipeline=False)
        keras.utils.set_random_seed(seed)  # the tutorials' way
        plain, logits = models.build("mlp128", ds.input_shape, ds.num_classes)
        plain.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                      metrics=["accuracy"])
        pt, ot = EpochTimer(), EpochTimer()
        ours.callbacks = ot.around(ours.callbacks)
        ours_epochs = trial_epochs(ours)
        for epoch in range(epochs):
            hist = fit_one_epoch(plain, ds.x_train, epoch, y=ds.y_train, batch_size=32,
                                 validation_data=(ds.x_val, ds.y_val),
                                 callbacks=pt.around([]))
            next(ours_epochs)
        for _ in ours_epochs:  # its end of training
            pass
        plain_t += pt.times[WARMUP_EPOCHS:]
        ours_t += ot.times[WARMUP_EPOCHS:]
        plain_acc.append(hist.history["val_accuracy"][-1])
        ours_acc.append(sink.last("val_accuracy"))
        plain_s = statistics.median(pt.times[WARMUP_EPOCHS:])
        ours_s = statistics.median(ot.times[WARMUP_EPOCHS:])
        per_seed.append(plain_s / ours_s)
        log(f"  (a) seed {seed}: plain {plain_s:.2f} s/epoch "
            f"acc {plain_acc[-1]:.4f} | ours {ours_s:.2f} "
            f"s/epoch acc {ours_acc[-1]:.4f} | {per_seed[-1]:.2f}x")
    plain, ours = statistics.median(plain_t), statistics.median(ours_t)
    return {
        "plain_epoch_s": plain, "ours_epoch_s": ours, "speedup": plain / ours,
        "speedup_per_seed": per_seed,
        "plain_epoch_times_s": plain_t, "ours_epoch_times_s": ours_t,
        "plain_val_accuracy": statistics.mean(plain_acc),
        "ours_val_accuracy": statistics.mean(ours_acc),
        "accuracy_difference_points": 100 * (statistics.mean(ours_acc)
                                             - statistics.mean(plain_acc)),
        # the two sides' seeds draw different initial weights and orders: Welch's interval
        "accuracy_difference_ci95_points": accuracy_interval(ours_acc, plain_acc),
        "epochs": epochs, "seeds": seeds, "batch_size": 32,
        "steps_per_execution": fitting.steps_per_execution(sc),
        "jit_compile": sc.budget["jit_compile"],
    }


def accuracy_interval(ours: list[float], plain: list[float]) -> list[float] | None:
    """The 95% interval of the difference of mean accuracies, in points (Welch's t; None
    with fewer than two seeds a side)."""
    if min(len(ours), len(plain)) < 2:
        return None
    from scipy import stats

    ci = stats.ttest_ind(ours, plain, equal_var=False).confidence_interval(0.95)
    return [100 * ci.low, 100 * ci.high]


def bench_tracking(epochs: int, repeats: int, mlflow_repeats: int) -> dict:
    """(b) our callbacks into MLflow vs no callbacks (``repeats`` times); MLflow's own
    callback likewise (in the first ``mlflow_repeats``: its fits at one step per execution
    take most of the part's time).

    Ours: each repeat trains three identical trials (same seed) on the default study's
    budget, one with every recording callback logging every step into a real sqlite store,
    two with none, taking turns epoch by epoch in each of the six orders of the three in
    turn, so that within an epoch each side runs right after each other side as often (a
    mere rotation ran the first untracked trial after ours twice as often as the second).
    Each side trains as :func:`lrstudy.training.fitting.fit_scenario` trains a trial (see
    :func:`trial_epochs`); epochs are timed as in (a), from the first callback to the last.
    The second untracked trial is
    an A/A control: its true ratio to the first is 1, so each estimator's error on it (the
    ratio of the sides' median epochs, the median of the paired epoch ratios) shows which
    estimates the overhead better on this machine, and the spread of the headline
    estimator's A/A value over the repeats whether this run can resolve the overhead at all
    (:func:`tracking_resolution`). MLflow's callback only sees
    the steps Keras returns to Python after, so it and its own untracked baseline run at one
    step per execution, as whole fits in turns.
    """
    import keras
    import mlflow

    from lrstudy import determinism, models
    from lrstudy.data import datasets as data
    from lrstudy.data import order as batches
    from lrstudy.spec import resolve
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import metric_sink, sqlstore
    from lrstudy.tracking import store as tracking
    from lrstudy.training import fitting

    study = scenarios.load_study("seeds", {"epochs": epochs} if epochs else {})
    sc = study.scenarios["warmup-cosine"]  # a per-step schedule: the LR curve matters
    budget = sc.budget
    ds = data.load_cached(budget["dataset"], budget["train_size"], budget["val_size"])
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = tracking.experiment_id("bench-tracking", uri, client)

    orders = list(itertools.permutations(("ours", "none", "again")))

    def ours_vs_none(repeat: int) -> tuple[list, list, float]:
        run_id = client.create_run(exp).info.run_id
        sink = metric_sink.MetricSink(client, run_id, series_writer=sqlstore.series_writer(uri))
        sides = {"ours": fitting.prepare_fit(sc, 0, sink, pipeline=False),
                 "none": fitting.prepare_fit(sc, 0, None, pipeline=False),
                 "again": fitting.prepare_fit(sc, 0, None, pipeline=False)}  # the A/A control
        timers = {side: EpochTimer() for side in sides}
        for side, prepared in sides.items():
            prepared.callbacks = timers[side].around(prepared.callbacks)
        runs = {side: trial_epochs(prepared) for side, prepared in sides.items()}
        for epoch in range(budget["epochs"]):  # the orders go on from repeat to repeat
            for side in orders[(repeat * budget["epochs"] + epoch) % len(orders)]:
                next(runs[side])
        for run in runs.values():  # their ends of training (ours: the last drain)
            for _ in run:
                pass
        t0 = time.perf_counter()
        sink.flush()
        flush = time.perf_counter() - t0
        client.set_terminated(run_id)
        steps = len(client.get_metric_history(run_id, "step_learning_rate"))
        assert steps == sc.steps_per_epoch * budget["epochs"], steps  # every step is there
        return timers["ours"].times, timers["none"].times, timers["again"].times, flush

    def mlflow_or_none(mode: str) -> float:
        determinism.seed_everything(0)
        model, logits = models.build(budget["model"], ds.input_shape, ds.num_classes)
        model.compile(optimizer=fitting.build_optimizer(sc, resolve.build_schedule(sc)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                      metrics=["accuracy"], steps_per_execution=1,
                      jit_compile=budget["jit_compile"])
        callbacks = []
        if mode == "mlflow":
            mlflow.set_tracking_uri(uri)
            mlflow.start_run(experiment_id=exp)
            callbacks = [mlflow.keras.MlflowCallback(log_every_epoch=False,
                                                     log_every_n_steps=1)]
        t0 = time.perf_counter()
        model.fit(batches.train_dataset(ds, budget["batch_size"], 0), epochs=budget["epochs"],
                  validation_data=(ds.x_val, ds.y_val), callbacks=callbacks, verbose=0,
                  shuffle=False)  # in order already
        elapsed = time.perf_counter() - t0
        if mode == "mlflow":
            mlflow.end_run()
        return elapsed

    ours_s, none_s, again_s, flushes, mlflow_s, none1_s = [], [], [], [], [], []
    for r in range(repeats):
        ours, none, again, flush = ours_vs_none(r)
        ours_s.append(ours)
        none_s.append(none)
        again_s.append(again)
        flushes.append(flush)
        line = (f"  (b) repeat {r}: epochs untracked " + " ".join(f"{t:.2f}" for t in none)
                + " | ours " + " ".join(f"{t:.2f}" for t in ours) + f" + flush {flush:.3f} s"
                + " | untracked again " + " ".join(f"{t:.2f}" for t in again))
        if r < mlflow_repeats:  # a side result (2-3x, no goal): fewer repeats tell it
            none1_s.append(mlflow_or_none("none"))
            mlflow_s.append(mlflow_or_none("mlflow"))
            line += (f" | one step per execution: untracked {none1_s[-1]:.2f} s, "
                     f"MlflowCallback {mlflow_s[-1]:.2f} s")
        log(line)
    # Steady state: the first WARMUP_EPOCHS of each fit are left out of every side; medians
    # over the repeats' epochs resist the shared machine's spikes; the flush of the per-step
    # series is added to ours in full.
    steady = budget["epochs"] - WARMUP_EPOCHS
    none_epoch = statistics.median(t for ts in none_s for t in ts[WARMUP_EPOCHS:])
    flush_share = statistics.median(flushes) / (none_epoch * steady)  # added to either estimate
    mlflow_ratios = [m / n for m, n in zip(mlflow_s, none1_s)]
    ours_est, aa_est = _ratio_estimates(ours_s, none_s), _ratio_estimates(again_s, none_s)
    # The headline is the estimator whose A/A error (|estimate - 1|, the worse over the pooled
    # estimate and each repeat's) is the smaller in this run; both are reported.
    errors = {how: max(abs(v - 1) for v in [aa_est[how], *aa_est[how + "_per_repeat"]])
              for how in ("ratio_of_medians", "paired_median")}
    headline = min(errors, key=errors.get)
    noise = tracking_resolution(aa_est[headline + "_per_repeat"],
                                ours_est[headline + "_per_repeat"], flush_share)
    return {
        "overhead_ours": ours_est[headline] + flush_share, "headline_estimator": headline,
        **noise,
        "overhead_ours_ratio_of_medians": ours_est["ratio_of_medians"] + flush_share,
        "overhead_ours_paired_median": ours_est["paired_median"] + flush_share,
        "overhead_ours_per_repeat": ours_est["ratio_of_medians_per_repeat"],
        "overhead_ours_paired_median_per_repeat": ours_est["paired_median_per_repeat"],
        "aa_control": aa_est, "aa_worst_error": errors, "flush_share": flush_share,
        "ours_epoch_s": statistics.median(t for ts in ours_s for t in ts[WARMUP_EPOCHS:]),
        "untracked_epoch_s": none_epoch, "untracked_again_epoch_times_s": again_s,
        "flush_s": flushes, "ours_epoch_times_s": ours_s, "untracked_epoch_times_s": none_s,
        "overhead_ours_total_time": sum(map(sum, ours_s)) / sum(map(sum, none_s)),
        "untracked_one_step_per_execution_s": none1_s, "mlflow_callback_s": mlflow_s,
        "overhead_mlflow_callback_every_step": statistics.median(mlflow_ratios),
        "epochs": budget["epochs"], "steps_per_epoch": sc.steps_per_epoch,
        "repeats": repeats, "mlflow_repeats": mlflow_repeats, "scenario": sc.name,
        "note": "steady-state epochs in turns, medians; per-step logging on (every step)",
    }


#: (b)'s goal (the tracked epoch at most this many times the untracked one), and the margin
#: of that goal over no overhead at all: what the bench must be able to resolve.
TRACKING_GOAL = 1.05
TRACKING_MARGIN = TRACKING_GOAL - 1


def ratio_interval(per_repeat: list[float], shift: float = 0.0) -> list[float] | None:
    """The 95% interval of a ratio from its per-repeat estimates: Student's t over their
    logarithms (a ratio's errors are multiplicative; the repeats are the independent units,
    the epochs of one repeat share its drift), back on the ratio's scale, plus ``shift``.
    None with fewer than two repeats."""
    if len(per_repeat) < 2:
        return None
    import numpy as np
    from scipy import stats

    ci = stats.ttest_1samp(np.log(per_repeat), 0.0).confidence_interval(0.95)
    return [float(np.exp(ci.low)) + shift, float(np.exp(ci.high)) + shift]


def tracking_resolution(aa_per_repeat: list[float], ours_per_repeat: list[float],
                        flush_share: float) -> dict:
    """Whether this run of (b) can resolve the overhead it reports, judged from its own A/A
    control.

    The A/A control (a second untracked trial in the same turns) has a true ratio of 1, so
    the 95% interval of its estimate over the repeats (:func:`ratio_interval`, the headline
    estimator's per-repeat values) shows how far from the truth this run's design lands by
    the machine's noise and any order effect. ``noise`` is that interval's furthest edge
    from 1. (b) is ``resolvable`` when the noise is below :data:`TRACKING_MARGIN`, the
    distance between no overhead and the goal: then the bench tells an overhead that
    misses the goal from none, and the reported ratio is a figure; otherwise the machine
    was too noisy, and the ratio is no figure (it is still in the JSON). ``goal_met`` reads
    our own interval (plus the flush's share) against the goal: True when all of it is
    within, False when all of it is beyond, None when it straddles the goal or (b) is not
    resolvable."""
    aa = ratio_interval(aa_per_repeat)
    ours = ratio_interval(ours_per_repeat, flush_share)
    noise = None if aa is None else max(aa[1] - 1, 1 - aa[0])
    resolvable = noise is not None and noise < TRACKING_MARGIN
    goal_met = None
    if resolvable and ours[1] <= TRACKING_GOAL:
        goal_met = True
    elif resolvable and ours[0] > TRACKING_GOAL:
        goal_met = False
    return {"resolvable": resolvable, "noise": noise, "aa_ci95": aa,
            "overhead_ours_ci95": ours, "goal_met": goal_met,
            "resolution_rule": f"the A/A control's 95% t-interval over the repeats (log "
                               f"ratios) lies within 1 +- {TRACKING_MARGIN:.2f}, the goal's "
                               f"margin over no overhead"}


def _ratio_estimates(num_s: list, den_s: list) -> dict:
    """Two estimates of the ratio of steady-state epoch times (each repeat's first
    :data:`WARMUP_EPOCHS` left out), pooled over the repeats and per repeat: the ratio of the
    two sides' median epochs, and the median of the paired ratios (each epoch of one side
    over the same epoch of the other, run back to back: it cancels what drifts over minutes,
    both sides alike, which pooling each side's epochs does not)."""
    w = WARMUP_EPOCHS
    paired = [[a / b for a, b in zip(num[w:], den[w:])] for num, den in zip(num_s, den_s)]
    med = statistics.median
    return {
        "ratio_of_medians": (med(t for ts in num_s for t in ts[w:])
                             / med(t for ts in den_s for t in ts[w:])),
        "paired_median": med(r for rs in paired for r in rs),
        "ratio_of_medians_per_repeat": [med(a[w:]) / med(b[w:]) for a, b in zip(num_s, den_s)],
        "paired_median_per_repeat": [med(rs) for rs in paired],
    }


def plain_study(tmp: Path, scenario_names: list[str], seeds: int) -> Path:
    """The default study's budget without its competition (tuning grids and finals would run
    other trials than the in-process fits), on ``scenario_names``: a study file in ``tmp``."""
    from lrstudy.spec import study as scenarios

    budget = scenarios.STUDIES_DIR.joinpath("seeds.toml").read_text().split("[budget]", 1)[1]
    plain = tmp / "plain.toml"
    plain.write_text(f'description = "bench"\nseeds = {seeds}\nscenarios = '
                     f'{json.dumps(list(scenario_names))}\n\n[budget]{budget}')
    return plain


def timed_run(tmp: Path, study: Path, seeds: int, epochs: int | None, *extra,
              store: Path | None = None) -> float:
    """The wall time of ``lrstudy run`` on ``study`` into a fresh store under ``tmp`` (or in
    ``store``, a fresh directory the caller reads afterwards)."""
    store = store or Path(tempfile.mkdtemp(dir=tmp))
    args = [sys.executable, "-m", "lrstudy", "run", "--study", str(study), "--seeds",
            str(seeds), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", "--quiet", *extra]
    if epochs:
        args += ["--epochs", str(epochs)]
    env = {**os.environ, "LRSTUDY_RUNS_DIR": str(store / "runs")}
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lrstudy run failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


class PeakRSS:
    """The peak resident memory of this process while the block runs (sampled every 20 ms),
    and its rise over the memory at the start."""

    def __enter__(self):
        import threading

        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.rise = self.peak - self.start


def bench_stacking(copies: int, epochs: int, repeats: int, scenario_names: list[str],
                   seeds: int, run_epochs: int | None) -> dict:
    """(e) the default study's trials stacked against one by one: ``copies`` seeds of its
    fixed-baseline on its budget, in turns (one by one, then one stack; ``repeats`` times),
    trial-epochs per second each way; the peak memory of the stack; and the wall time of
    ``lrstudy run`` on a small slice of the study with ``--stack auto`` and ``--stack off``."""
    import tensorflow as tf

    from lrstudy.data import datasets as data
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking.metric_sink import MetricSink
    from lrstudy.training import fitting, stacking

    sc = scenarios.load_study("seeds", {"epochs": epochs}).available["fixed-baseline"]
    trials = [(sc, seed, False) for seed in range(copies)]
    ds = data.load_cached(sc.budget["dataset"], sc.budget["train_size"],  # loaded once,
                                sc.budget["val_size"], split=sc.budget["split"])  # first
    alone_s, stacked_s, keras_s, peaks = [], [], [], []
    for r in range(repeats):
        for vectorize, times in ((False, keras_s), (True, alone_s)):
            t0 = time.perf_counter()
            for sc_, seed, test in trials:
                fitting.fit_scenario(sc_, seed, MetricSink(keep=False), evaluate_test=test,
                                   vectorize=vectorize)
            times.append(time.perf_counter() - t0)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            fitting.fit_stack(trials, [MetricSink(keep=False) for _ in trials])
            stacked_s.append(time.perf_counter() - t0)
        peaks.append(mem)
        log(f"  (e) {copies} trials x {epochs} epochs: one by one {alone_s[-1]:.1f} s "
            f"(with Keras's fit {keras_s[-1]:.1f} s), stacked {stacked_s[-1]:.1f} s")
    work = copies * epochs
    alone, stacked = statistics.median(alone_s), statistics.median(stacked_s)
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    plain = plain_study(tmp, scenario_names, seeds)
    walls = {}
    for mode in ("off", "auto"):
        walls[mode] = timed_run(tmp, plain, seeds, run_epochs, "--stack", mode)
        log(f"  (e) lrstudy run --stack {mode}: {walls[mode]:.1f} s")
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "copies": copies, "epochs": epochs, "repeats": repeats,
        "one_by_one_s": alone_s, "stacked_s": stacked_s, "one_by_one_keras_fit_s": keras_s,
        "one_by_one_trial_epochs_per_s": work / alone,
        "stacked_trial_epochs_per_s": work / stacked,
        "stack_speedup": alone / stacked,
        # against the trials one by one as Keras's fit trains them (as before lrstudy.training.vector_stack)
        "stack_speedup_vs_keras_one_by_one": statistics.median(keras_s) / stacked,
        "one_by_one_speedup_vs_keras": statistics.median(keras_s) / alone,
        "stack_peak_rss_mb": max(p.peak for p in peaks) / 2**20,
        "stack_peak_rss_rise_mb": max(p.rise for p in peaks) / 2**20,
        "stack_estimated_mb": (stacking.shared_bytes(ds.input_shape, len(ds.x_train))
                               + copies * stacking.copy_bytes(sc, ds.input_shape, ds.num_classes,
                                                           len(ds.x_train))) / 2**20,
        "run_scenarios": scenario_names, "run_seeds": seeds, "run_epochs": run_epochs,
        "run_stack_off_s": walls["off"], "run_stack_auto_s": walls["auto"],
        "run_stack_speedup": walls["off"] / walls["auto"],
        "device": f"GPU ({gpus[0].name})" if gpus else "CPU",
        "note": "in-process fits untracked (sinks keep nothing), both sides with the trials' "
                "own semantics (XLA, steps per execution, recording callbacks); the lrstudy "
                "run walls are the whole command (kernels, MLflow); a loaded machine makes "
                "every figure noisy",
    }


def bench_orchestration(scenario_names: list[str], seeds: int, epochs: int | None,
                        repeats: int) -> dict:
    """(c) `lrstudy run` wall time vs the same fits in-process, untracked: ``repeats`` of
    each, in the order ABBA... (in-process, run, run, in-process, ...), so that a drift of the
    machine's speed over the minutes they take hits both sides alike; the ratio of the sums."""
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking.metric_sink import MetricSink
    from lrstudy.training import fitting

    overrides = {"epochs": epochs} if epochs else {}
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    plain = plain_study(tmp, scenario_names, seeds)
    study = scenarios.load_study(str(plain), overrides)

    def in_process() -> float:
        t0 = time.perf_counter()
        for name in scenario_names:
            for seed in range(seeds):
                fitting.fit_scenario(study.scenarios[name], seed, MetricSink(keep=False))
        return time.perf_counter() - t0

    runner_s, inprocess_s = [], []
    for turn in range(2 * repeats):
        if turn % 4 in (0, 3):
            inprocess_s.append(in_process())
            log(f"  (c) in-process fits: {inprocess_s[-1]:.1f} s")
        else:
            runner_s.append(timed_run(tmp, plain, seeds, epochs, "--stack", "off"))
            log(f"  (c) lrstudy run: {runner_s[-1]:.1f} s")
    return {"runner_s": runner_s, "in_process_s": inprocess_s,
            "overhead": sum(runner_s) / sum(inprocess_s), "scenarios": scenario_names,
            "seeds": seeds, "repeats": repeats,
            "epochs": epochs or study.scenarios[scenario_names[0]].budget["epochs"],
            "note": "lrstudy run --stack off (the fits below go one by one) with its defaults "
                    "(2 kernels at once, 1 TF thread each) "
                    "against the fits one after another in this process (TF's own threads), "
                    "in turns ABBA"}


#: (s): the default study shrunk to run inside the bench: two of its tuned strategies (the
#: reference, and a per-step schedule) and one demonstration, on its budget and competition
#: (the tuning grid, 3 tuning seeds; finals on fewer seeds), with ``lrstudy run``'s defaults.
STUDY_SLICE = ["fixed-baseline", "warmup-cosine", "fixed-too-large"]


def bench_study_time(store_uri: str | None, study_name: str, scenario_names: list[str],
                     seeds: int, epochs: int | None, grid_points: int | None) -> dict:
    """(s) a study's wall time over the steady training time of its stacks
    (:mod:`study_time`, beside this file, defines both and what is comparable).

    With ``store_uri``: the study ``study_name`` as a finished run left it in that store
    (``make study`` fills one), its wall time the span of its runs. Without: the default
    study on ``scenario_names`` with ``seeds`` final seeds (``epochs``, ``grid_points``:
    None keeps the study's) run now by ``lrstudy run`` into a fresh store, its wall time the
    whole command's."""
    import study_time  # beside this file

    if store_uri:
        out = study_time.study_time(store_uri, study_name)
        return {**out, "store": store_uri, "study": study_name}
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    store = Path(tempfile.mkdtemp(dir=tmp))
    extra = ["--scenarios", ",".join(scenario_names)]
    extra += ["--grid-points", str(grid_points)] if grid_points else []
    wall = timed_run(tmp, "seeds", seeds, epochs, *extra, store=store)
    out = study_time.study_time(f"sqlite:///{store / 'mlflow.db'}", "seeds", wall_s=wall)
    return {**out, "study": "seeds", "scenarios": scenario_names, "seeds": seeds,
            "epochs": epochs, "grid_points": grid_points,
            "note": "lrstudy run of the default study on these scenarios into a fresh sqlite "
                    "store, with its defaults (2 workers, --stack auto); the wall is the "
                    "whole command"}


#: (f): the default study's tuning of one strategy (its grid: 5 points over 2 decades around
#: the strategy's usual peak, 3 seeds each, no extension of the grid), done three ways.
PEER_SCENARIO = "fixed-baseline"
PEER_COMPETITION = {"grid_points": 5, "grid_decades": 2, "tune_seeds": 3, "extend_decades": 0}


def tune_study(tmp: Path, tune_seeds: int) -> Path:
    """A study file in ``tmp``: the default study's budget and its competition's tuning of
    :data:`PEER_SCENARIO` alone. Its finals cannot be switched off (``seeds`` >= 1): one final
    seed, whose scenario run (:func:`_scenario_runs`) is taken out of the wall time."""
    budget = plain_study(tmp, [PEER_SCENARIO], 1).read_text().split("[budget]", 1)[1]
    comp = {**PEER_COMPETITION, "tune_seeds": tune_seeds}
    path = tmp / "tune.toml"
    path.write_text(f'description = "bench: the tuning of {PEER_SCENARIO}"\nseeds = 1\n'
                    f'scenarios = ["{PEER_SCENARIO}"]\n\n[competition]\n'
                    + "".join(f"{k} = {v}\n" for k, v in comp.items())
                    + f"\n[budget]{budget}")
    return path


def _scenario_runs(uri: str, study: str) -> dict:
    """The store's scenario runs of ``study`` by phase: their wall seconds (a kernel's start
    to its end, MLflow's run times) and status."""
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp_id = tracking.experiment_id(study, uri, client)
    runs = client.search_runs([exp_id], f"tags.`{tracking.TAG}kind` = 'scenario'")
    return {r.data.tags.get(Tag.PHASE, ""): {
        "s": (r.info.end_time - r.info.start_time) / 1000, "status": r.info.status}
        for r in runs}


def _lrstudy_tuning(tmp: Path, epochs: int | None, tune_seeds: int) -> dict:
    """``lrstudy run`` of :func:`tune_study` into a fresh sqlite store, timed whole; its
    tuning's scores and winner read back from the store as the finals read them."""
    from lrstudy.spec import competition
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    study = tune_study(tmp, tune_seeds)
    store = Path(tempfile.mkdtemp(dir=tmp))
    uri = f"sqlite:///{store / 'mlflow.db'}"
    wall = timed_run(tmp, study, 1, epochs, store=store)
    spec = scenarios.load_study(str(study), {"epochs": epochs} if epochs else {})
    client = tracking.client(uri)
    tuned = competition.tuning(spec.competition, spec.scenarios[PEER_SCENARIO], client,
                               tracking.experiment_id(spec.name, uri, client))
    phases = _scenario_runs(uri, spec.name)
    final_s = phases.get("final", {}).get("s", 0.0)
    means = [sum(tuned.scores[p]) / len(tuned.scores[p]) for p in tuned.points]
    return {"command_s": wall, "final_phase_s": final_s, "wall_s": wall - final_s,
            "tune_phase_s": phases.get("tune", {}).get("s"), "best_lr": tuned.winner,
            "grid": list(tuned.points), "scores_last_epoch": means,
            "own_score": "mean over the tuning seeds of the last epoch's val_accuracy"}


def _peer(tool: str, tmp: Path, epochs: int | None, seeds: int) -> dict:
    """``bench/peers.py`` for ``tool`` in a child process, timed whole (as ``lrstudy run``)."""
    out = tmp / f"{tool}.json"
    args = [sys.executable, str(ROOT / "bench" / "peers.py"), tool, "--out", str(out),
            "--seeds", str(seeds)] + (["--epochs", str(epochs)] if epochs else [])
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(out.read_text())}


def bench_peers(epochs: int | None, tune_seeds: int, repeats: int) -> dict:
    """(f) the default study's tuning of :data:`PEER_SCENARIO` (15 trials: 5 LRs x 3 seeds on
    the default budget) by ``lrstudy run``, by Keras Tuner's GridSearch and by Optuna's
    GridSampler (:mod:`peers`, beside this file), each a whole command, in turns (the order
    reversed from one repeat to the next); the speed-ups are ratios of the summed walls.

    lrstudy's wall is the command's minus its one final seed's scenario run (a competition
    always runs finals; the peers' work is the tuning alone); the whole command is reported
    too. The peers get the threads lrstudy's kernels get, plain ``model.fit`` and validation
    every epoch; each picks its best LR by its own score, and every point's scores by each
    rule are kept, so a disagreement can be told from a difference of rules."""
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    tools = {"lrstudy": lambda: _lrstudy_tuning(tmp, epochs, tune_seeds),
             "keras-tuner": lambda: _peer("keras-tuner", tmp, epochs, tune_seeds),
             "optuna": lambda: _peer("optuna", tmp, epochs, tune_seeds)}
    runs: dict[str, list] = {name: [] for name in tools}
    for r in range(repeats):
        for name in (list(tools) if r % 2 == 0 else list(tools)[::-1]):
            runs[name].append(tools[name]())
            extra = (f" (the command {runs[name][-1]['command_s']:.1f} s, its final seed's "
                     f"kernel {runs[name][-1]['final_phase_s']:.1f} s)"
                     if name == "lrstudy" else "")
            log(f"  (f) {name}: {runs[name][-1]['wall_s']:.1f} s{extra}, best LR "
                f"{runs[name][-1]['best_lr']:g}")
    wall = {name: sum(x["wall_s"] for x in rs) for name, rs in runs.items()}
    last = {name: rs[-1] for name, rs in runs.items()}
    ours = last["lrstudy"]
    agree = {name: {"best_lr": last[name]["best_lr"],
                    "same_as_lrstudy": last[name]["best_lr"] == ours["best_lr"],
                    "by_last_epoch": last[name]["best_lr_by_last_epoch"],
                    "same_as_lrstudy_by_last_epoch":
                        last[name]["best_lr_by_last_epoch"] == ours["best_lr"]}
             for name in ("keras-tuner", "optuna")}
    command = sum(x["command_s"] for x in runs["lrstudy"])
    return {
        "lrstudy_s": [x["wall_s"] for x in runs["lrstudy"]],
        "lrstudy_command_s": [x["command_s"] for x in runs["lrstudy"]],
        "keras_tuner_s": [x["wall_s"] for x in runs["keras-tuner"]],
        "optuna_s": [x["wall_s"] for x in runs["optuna"]],
        "keras_tuner_speedup": wall["keras-tuner"] / wall["lrstudy"],
        "optuna_speedup": wall["optuna"] / wall["lrstudy"],
        "keras_tuner_speedup_whole_command": wall["keras-tuner"] / command,
        "optuna_speedup_whole_command": wall["optuna"] / command,
        "best_lr": {"lrstudy": ours["best_lr"], **{k: v["best_lr"] for k, v in agree.items()}},
        "agreement": agree, "runs": runs, "repeats": repeats,
        "scenario": PEER_SCENARIO, "competition": {**PEER_COMPETITION, "tune_seeds": tune_seeds},
        "epochs": epochs or 8, "threads": last["keras-tuner"]["threads"],
        "note": "whole commands (imports, data, TensorFlow start) in turns; lrstudy's wall is "
                "lrstudy run's minus its one final seed's scenario run (its tuning phase "
                "alone), with its defaults (2 workers, but one scenario runs one execution "
                "at a time, so its kernel has every core's thread; --stack auto, every step "
                "recorded into sqlite); the peers with those threads, "
                "Keras's fit as documented (no XLA on CPU, one step per execution) and "
                "validation each epoch",
    }


#: (g): mlp128's Dense layers (inputs, outputs), and the batch the default budget trains at.
MLP128 = ((784, 128), (128, 10))


def step_flops(copies: int, batch: int, layers=MLP128) -> int:
    """FLOPs of one training step of ``copies`` stacked copies: per Dense layer the forward
    product 2*B*in*out and the weights' gradient 2*B*in*out, and the inputs' gradient
    2*B*in*out for every layer but the first (nothing needs the gradient of the images).
    Bias adds, activations, the loss and the optimizer update are left out (O(B*out) and
    O(weights): under 1% here)."""
    total = 0
    for i, (n_in, n_out) in enumerate(layers):
        total += (4 if i == 0 else 6) * batch * n_in * n_out
    return copies * total


def matmul_shapes(copies: int, batch: int, layers=MLP128) -> dict:
    """The batched products of one stacked training step, ``name: ([n, m, k], [n, k, p])``:
    each layer's forward, its weights' gradient (inputs transposed times the output's
    gradient) and, but for the first, its inputs' gradient."""
    shapes = {}
    for i, (n_in, n_out) in enumerate(layers):
        shapes[f"forward{i + 1}"] = ((copies, batch, n_in), (copies, n_in, n_out))
        shapes[f"weight_grad{i + 1}"] = ((copies, n_in, batch), (copies, batch, n_out))
        if i:
            shapes[f"input_grad{i + 1}"] = ((copies, batch, n_out), (copies, n_out, n_in))
    return shapes


def best_matmul_times(shapes: dict, calls: int, repeats: int) -> dict:
    """Each shape's best seconds per product: ``tf.function(jit_compile=True)`` of one
    ``tf.matmul``, ``calls`` calls in a Python loop per timing, the best of ``repeats``
    timings (the call's dispatch, a few microseconds, is counted in)."""
    import tensorflow as tf

    best = {}
    for name, (sa, sb) in shapes.items():
        a = tf.random.normal(sa, seed=1)
        b = tf.random.normal(sb, seed=2)
        f = tf.function(tf.matmul, jit_compile=True)
        f(a, b).numpy()  # compiles
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                out = f(a, b)
            out.numpy()
            times.append((time.perf_counter() - t0) / calls)
        best[name] = min(times)
    return best


def bench_stack_efficiency(epochs: int, matmul_repeats: int) -> dict:
    """(g) the FLOP rate of a stack's steady epochs over the best batched-matmul rate of the
    same shapes in this process (XLA, the same threads).

    The stack is the default study's tuning of :data:`PEER_SCENARIO` (its 15 trials: 5 LRs x 3
    seeds) trained as a :class:`lrstudy.training.vector_stack.VectorStack` as ``lrstudy run`` trains it
    (:func:`lrstudy.training.fitting.fit_stack`'s steps, each trial's recording callbacks on, sinks that
    keep nothing), timed epoch by epoch; epochs 3+ are steady (the first compiles, the
    second settles). The matmuls are timed before and after it, the best kept. The parts of
    a steady epoch are then timed alone on the trained stack: the compiled training loop
    over one epoch (with and without its per-step records), and the validation; and an
    epoch's gathers of the batches and updates of the optimizer, each in a loop of its own
    (:func:`epoch_of_gathers`, :func:`epoch_of_updates`)."""
    import tensorflow as tf

    from lrstudy import determinism
    from lrstudy.data import order as batches
    from lrstudy.spec import competition
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking.metric_sink import MetricSink
    from lrstudy.training import fitting, keras_stack, stacking

    study = scenarios.load_study("seeds", {"epochs": epochs})
    sc = study.available[PEER_SCENARIO]
    comp = competition.Competition(**{k: v for k, v in PEER_COMPETITION.items()})
    trials = competition.trials(comp, sc, "tune", 0)
    n, budget = len(trials), sc.budget
    batch, steps = budget["batch_size"], sc.steps_per_epoch
    shapes = matmul_shapes(n, batch)
    flops = {name: 2 * a[0] * a[1] * a[2] * b[2] for name, (a, b) in shapes.items()}
    assert sum(flops.values()) == step_flops(n, batch)
    before = best_matmul_times(shapes, calls=20, repeats=matmul_repeats)

    spe = fitting.steps_per_execution(sc)
    with determinism.op_determinism(enabled=not budget["jit_compile"]):
        prepared = [fitting.prepare_fit(t.scenario, t.seed, MetricSink(keep=False),
                                      pipeline=False) for t in trials]
        stacked = stacking.stack_of(prepared, spe)
        assert type(stacked).__name__ == "VectorStack", "the bench's model must vectorize"
        epoch_s, t0 = [], time.perf_counter()
        for _ in stacking.train(stacked, prepared):
            epoch_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
    after = best_matmul_times(shapes, calls=20, repeats=matmul_repeats)
    best_s = {k: min(before[k], after[k]) for k in shapes}
    rates = {k: flops[k] / best_s[k] for k in shapes}
    best_rate = max(rates.values())

    # the parts of an epoch, alone: the loop as the epoch calls it, with and without records
    ds = prepared[0].dataset
    indices = batches.batch_indices(len(ds.x_train), batch, [p.seed for p in prepared],
                                    pad=keras_stack.row_wise(prepared[0].model))
    (parts,) = indices.batch(steps).take(1)
    idx = tf.stack([p[0] for p in parts], axis=1)
    counts = tf.stack([p[1] for p in parts], axis=1)
    live = tf.ones([n])

    def loop_epoch(record: bool) -> float:
        t0 = time.perf_counter()
        for start in range(0, steps, spe):  # each call with its LR tables set first
            out = stacked.run_steps(record, idx, counts, tf.constant(start),
                                    tf.constant(min(spe, steps - start)), live)
            for o in out:
                o.numpy()
        return time.perf_counter() - t0

    loop_epoch(False)  # compiles
    loop_s = {rec: min(loop_epoch(rec) for _ in range(3)) for rec in (True, False)}
    val = stacked._batches(ds.x_val, ds.y_val, fitting.VALIDATION_BATCH)
    weights = stacked._validated_weights()[""]

    def validation() -> float:
        t0 = time.perf_counter()
        stacked._evaluate_all(val, weights)
        return time.perf_counter() - t0

    val_s = min(validation() for _ in range(3))
    gather_s = epoch_of_gathers(stacked.x_train, idx)
    optimizer_s = epoch_of_updates(stacked.engine.optimizer, stacked.engine.weights, steps)

    steady = statistics.median(epoch_s[WARMUP_EPOCHS:])
    train_flops = step_flops(n, batch) * steps
    val_flops = n * len(ds.x_val) * sum(2 * i * o for i, o in MLP128)
    epoch_flops = train_flops + val_flops
    stack_rate = epoch_flops / steady
    # what the step's products cost at the rates measured alone: the large ones at their own
    # best time; the second layer's (a few microseconds of arithmetic, whose calls alone
    # time the call's dispatch) at the best rate
    products_s = steps * sum(min(best_s[k], flops[k] / best_rate) for k in shapes)
    limits = {"products": products_s, "batch_gather": gather_s,
              "optimizer_update": optimizer_s, "validation": val_s}
    limits["rest"] = steady - sum(limits.values())
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return {
        "efficiency": stack_rate / best_rate,
        "efficiency_training_flops_only": train_flops / steady / best_rate,
        # with nothing but the products, the batches' gathers, the optimizer's updates and
        # validation (each timed alone): what the stack's design allows on this machine
        "efficiency_ceiling": epoch_flops / (steady - limits["rest"]) / best_rate,
        "stack_flop_rate": stack_rate, "best_matmul_flop_rate": best_rate,
        "best_matmul_shape": max(rates, key=rates.get),
        "matmul_flop_rates": rates, "matmul_best_s": best_s, "matmul_flops": flops,
        # the step's products each at its best rate: what the step's matmuls alone cost
        "matmul_step_s": sum(best_s.values()),
        "efficiency_vs_same_shapes": sum(best_s.values()) * steps / steady,
        "epoch_limits_s": limits,
        "step_flops": step_flops(n, batch), "training_flops": train_flops,
        "validation_flops": val_flops, "epoch_flops": epoch_flops,
        "steady_epoch_s": steady, "epoch_s": epoch_s,
        "parts_s": {"training_loop": loop_s[True], "training_loop_without_records":
                    loop_s[False], "validation": val_s,
                    "rest": steady - loop_s[True] - val_s},
        "copies": n, "batch_size": batch, "steps_per_epoch": steps,
        "steps_per_execution": spe, "epochs": epochs, "jit_compile": budget["jit_compile"],
        "intra_op_threads": threads or os.cpu_count(),
        "flop_count": "per Dense layer 2*B*in*out forward + 2*B*in*out weight gradient, "
                      "+ 2*B*in*out input gradient for the second layer only; times copies; "
                      "plus validation's forward products (2*in*out per example per layer)",
    }


def _compiled_loop_s(body, steps: int, repeats: int = 3) -> float:
    """The best of ``repeats`` timings of one XLA-compiled loop of ``steps`` calls of
    ``body(t)`` (after a call that compiles it)."""
    import tensorflow as tf

    def step(t):
        done = [o for o in tf.nest.flatten(body(t)) if o is not None]
        with tf.control_dependencies(done):  # the next call after this one's update
            return t + 1

    @tf.function(jit_compile=True, autograph=False)
    def loop():
        return tf.while_loop(lambda t: t < steps, step, (tf.constant(0),))

    loop()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), loop())
        best = min(best, time.perf_counter() - t0)
    return best


def epoch_of_gathers(x_train, idx) -> float:
    """An epoch's gathers of the copies' batches alone, as the step makes them: each step's
    rows ``idx[t]`` (``[copies, batch]``) of the training set into a ``[copies, batch, ...]``
    buffer (the products' operand)."""
    import tensorflow as tf

    buffer = tf.Variable(tf.zeros([*idx.shape[1:], *x_train.shape[1:]], x_train.dtype))
    return _compiled_loop_s(lambda t: buffer.assign(tf.gather(x_train, tf.gather(idx, t))),
                            int(idx.shape[0]))


def epoch_of_updates(optimizer, weights, steps: int) -> float:
    """An epoch's updates of the stacked optimizer alone: a new optimizer of its class and
    configuration on new variables of the stacked weights' shapes, per-copy LRs, constant
    gradients."""
    import keras
    import tensorflow as tf

    from lrstudy.training import traces

    variables = [keras.Variable(tf.zeros(w.shape)) for w in weights]
    lrs = tf.fill([int(weights[0].shape[0]), 1], 1e-3)
    opt = type(optimizer)(learning_rate=lambda: lrs, **traces.optimizer_config(optimizer))
    opt.build(variables)
    grads = [tf.fill(w.shape, 1e-3) for w in weights]
    return _compiled_loop_s(lambda t: opt.apply(grads, variables), steps)


def bench_summary(n_trials: int) -> dict:
    """(d) the summary over n synthetic trials with full per-epoch histories."""
    import synthetic_store  # beside this file

    with tempfile.TemporaryDirectory() as tmp:
        return synthetic_store.bench_summary(n_trials=n_trials, tmpdir=tmp)


REFUSALS = {  # a study file each, every one refused with one line and exit status 2
    "unknown-optimizer": '[scenario.x]\nfamily = "fixed"\noptimizer = "adamm"\nlearning_rate = 0.001\n',
    "nan-learning-rate": '[scenario.x]\nfamily = "fixed"\nlearning_rate = nan\n',
    "step-size-zero": '[scenario.x]\nfamily = "cyclical"\noptimizer = "sgd"\n'
                      'schedule = { name = "triangular", base = 0.001, max_lr = 0.01, '
                      'step_size = 0 }\n',
    "array-of-tables": '[[budget]]\nepochs = 2\n',
}


def bench_refusals(repeats: int) -> dict:
    """(r) the wall time of refusing bad input: one line, exit 2, before any TensorFlow."""
    head = ('scenarios = ["x"]\n[budget]\nmodel = "mlp128"\ndataset = "synthetic"\n'
            'val_size = 200\nbatch_size = 32\nepochs = 1\n')
    times, lines = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in REFUSALS.items():
            path = Path(tmp) / f"{name}.toml"
            path.write_text(body if body.startswith("[[") else head + body)
            args = [sys.executable, "-m", "lrstudy", "run", "--study", str(path),
                    "--tracking-uri", f"sqlite:///{tmp}/s/mlflow.db", "--quiet"]
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
                runs.append(time.perf_counter() - t0)
                if proc.returncode != 2 or len(proc.stderr.splitlines()) != 1:
                    raise RuntimeError(f"{name}: exit {proc.returncode}, stderr:\n{proc.stderr}")
            times[name] = statistics.median(runs)
            lines[name] = proc.stderr.strip()
            log(f"  (r) {name}: {times[name]:.2f} s  {lines[name][:90]}")
    return {"median_s": statistics.median(times.values()), "per_case_s": times,
            "messages": lines, "repeats": repeats,
            "note": "python -m lrstudy run on a bad study file, median wall time"}


def tracking_line(b: dict) -> str:
    """(b)'s line: the overhead with its interval when this run resolves it, else that the
    machine was too noisy (and why), with no figure."""
    aa = b["aa_ci95"]
    if not b["resolvable"]:
        why = ("one repeat gives the A/A control no interval" if aa is None else
               f"the A/A control, true ratio 1, reads [{aa[0]:.3f}, {aa[1]:.3f}] at 95% over "
               f"{b['repeats']} repeats: {b['noise']:.3f} from 1, not below the goal's "
               f"margin {TRACKING_MARGIN:.2f}")
        return (f"(b) tracking overhead         not resolved: the machine was too noisy to "
                f"resolve (b) ({why})   goal <= {TRACKING_GOAL}")
    ours = b["overhead_ours_ci95"]
    return (f"(b) tracking overhead         {b['overhead_ours']:.3f}   "
            f"[{ours[0]:.3f}, {ours[1]:.3f}] ({b['headline_estimator']}; A/A control "
            f"[{aa[0]:.3f}, {aa[1]:.3f}], noise {b['noise']:.3f}; ratio of medians "
            f"{b['overhead_ours_ratio_of_medians']:.3f}, paired median "
            f"{b['overhead_ours_paired_median']:.3f}; MlflowCallback every step: "
            f"{b['overhead_mlflow_callback_every_step']:.2f})   goal <= {TRACKING_GOAL}")


SUMMARY_LINES = {  # one line per part: the measured ratio and its goal
    "a_training_path": lambda a: (
        f"(a) training path speed-up   {a['speedup']:.2f}x  (plain {a['plain_epoch_s']:.2f} "
        f"s/epoch, ours {a['ours_epoch_s']:.2f} s/epoch; val accuracy "
        f"{a['plain_val_accuracy']:.4f} vs {a['ours_val_accuracy']:.4f}, "
        f"{a['accuracy_difference_points']:+.2f} points"
        + (" [{:+.2f}, {:+.2f}]".format(*a["accuracy_difference_ci95_points"])
           if a["accuracy_difference_ci95_points"] else "")
        + ")   goal >= 3.5x, |diff| <= 0.5"),
    "b_tracking": tracking_line,
    "c_orchestration": lambda c: (
        f"(c) orchestration overhead    {c['overhead']:.3f}   (lrstudy run "
        f"{' '.join(f'{t:.0f}' for t in c['runner_s'])} s vs in-process "
        f"{' '.join(f'{t:.0f}' for t in c['in_process_s'])} s, in turns)   goal <= 1.10"),
    "e_stack": lambda e: (
        f"(e) stacking speed-up         {e['stack_speedup']:.2f}x  ({e['copies']} trials: "
        f"{e['stacked_trial_epochs_per_s']:.2f} vs {e['one_by_one_trial_epochs_per_s']:.2f} "
        f"trial-epochs/s on {e['device']}; lrstudy run --stack auto {e['run_stack_auto_s']:.0f}"
        f" s vs off {e['run_stack_off_s']:.0f} s; stack peak {e['stack_peak_rss_mb']:.0f} MB;"
        f" {e['stack_speedup_vs_keras_one_by_one']:.2f}x against one by one with Keras's fit)"
        "   goal >= 3x"),
    "f_peers": lambda f: (
        f"(f) tuning vs peers           Keras Tuner {f['keras_tuner_speedup']:.2f}x, Optuna "
        f"{f['optuna_speedup']:.2f}x  (lrstudy {sum(f['lrstudy_s']):.0f} s [whole command "
        f"{sum(f['lrstudy_command_s']):.0f} s], Keras Tuner {sum(f['keras_tuner_s']):.0f} s, "
        f"Optuna {sum(f['optuna_s']):.0f} s; best LR "
        + ", ".join(f"{k} {v:g}" for k, v in f["best_lr"].items()) + ")   goal >= 5x"),
    "g_stack": lambda g: (
        f"(g) stack efficiency          {g['efficiency']:.3f}  ({g['copies']} copies: "
        f"{g['stack_flop_rate'] / 1e9:.1f} GFLOP/s in a steady epoch of "
        f"{g['steady_epoch_s']:.2f} s, best matmul {g['best_matmul_flop_rate'] / 1e9:.1f} "
        f"GFLOP/s ({g['best_matmul_shape']}); the epoch: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in g["epoch_limits_s"].items())
        + f"; ceiling {g['efficiency_ceiling']:.3f})   goal >= 0.8"),
    "s_study": lambda s: (
        f"(s) study wall over steady    {s['wall_over_steady']:.2f}  (wall {s['wall_s']:.0f} s "
        f"[{s['wall_source']}] over {s['steady_s']:.0f} s of steady training in "
        f"{s['stacks']} stacks of {s['trials']} trials; {s['executions_at_once']} executions "
        f"at once: {s['wall_over_steady_per_worker']:.2f} per worker, 1 = the workers only "
        f"trained; compiles {s['compile_s']:.0f} s"
        + (f"; idle {s['idle_s']:.0f} s of the span" if s["idle_s"] >= 1 else "") + ")"),
    "d_summary": lambda d: (
        f"(d) summary over {d.get('n_trials', '?')} trials   {d['summary_s']:.1f} s   "
        "goal <= 30 s"),
    "r_refusal": lambda r: (
        f"(r) refusing bad input        {r['median_s']:.2f} s median over "
        f"{len(r['per_case_s'])} cases   goal < 1 s"),
}


def cpu_model() -> str:
    """The CPU's model name (Linux), for the figures' context."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs/seeds (a smoke run)")
    parser.add_argument("--only", default="a,b,c,d,e,f,g,r,s")
    parser.add_argument("--study-store", metavar="URI",
                        help="(s): read a finished study from this store instead of running one")
    parser.add_argument("--study-name", default="seeds", help="(s): the study in --study-store")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    results = {"machine": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                           "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d")}}
    if "a" in only:
        log("(a) training path: plain model.fit vs ours")
        results["a_training_path"] = bench_training_path(epochs=3 if quick else 4,
                                                         seeds=1 if quick else 3)
    if "b" in only:
        log("(b) tracking overhead")
        results["b_tracking"] = bench_tracking(epochs=3 if quick else 0,
                                               repeats=1 if quick else 6,
                                               mlflow_repeats=1 if quick else 2)
    if "c" in only:
        log("(c) orchestration overhead")
        names = ["fixed-baseline", "warmup-cosine", "decay-step", "adaptive-rmsprop"]
        results["c_orchestration"] = bench_orchestration(
            names[:2] if quick else names, seeds=1 if quick else 3, epochs=2 if quick else None,
            repeats=1 if quick else 2)
    if "e" in only:
        log("(e) stacking: trials as one program vs one by one")
        results["e_stack"] = bench_stacking(
            copies=3 if quick else 6, epochs=1 if quick else 3, repeats=1 if quick else 3,
            scenario_names=["fixed-baseline"] if quick else ["fixed-baseline", "warmup-cosine"],
            seeds=3, run_epochs=1 if quick else None)
    if "f" in only:
        log("(f) the default study's tuning of one strategy: lrstudy, Keras Tuner, Optuna")
        results["f_peers"] = bench_peers(epochs=1 if quick else None,
                                         tune_seeds=1 if quick else 3, repeats=1 if quick else 2)
    if "g" in only:
        log("(g) stack efficiency: a stack's FLOP rate over the best matmul rate")
        results["g_stack"] = bench_stack_efficiency(epochs=4 if quick else 8,
                                                    matmul_repeats=3 if quick else 10)
    if "d" in only:
        log("(d) summary over 500 synthetic trials")
        results["d_summary"] = bench_summary(50 if quick else 500)
    if "s" in only:
        log("(s) a study's wall time over its stacks' steady training time")
        results["s_study"] = bench_study_time(
            args.study_store, args.study_name,
            STUDY_SLICE[::2] if quick else STUDY_SLICE, seeds=1 if quick else 3,
            epochs=1 if quick else None, grid_points=3 if quick else None)
    if "r" in only:
        log("(r) refusing bad input")
        results["r_refusal"] = bench_refusals(repeats=1 if quick else 3)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nlrstudy bench ({'quick' if quick else 'full'}), written to {args.out}")
    for key, line in SUMMARY_LINES.items():
        if key in results:
            print(line(results[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
