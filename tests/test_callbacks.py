"""The divergence rule and the first epoch's compile time, on synthetic per-epoch logs,
per-step losses and call times; and EpochLogger fed by hand (no fit)."""

from __future__ import annotations

import math
import threading
import time

import keras
import numpy as np
import pytest

from lrstudy.tracking import metric_sink
from lrstudy.training import divergence, epoch_logger


def epochs(acc, val):
    return [{"loss": 1.0, "accuracy": a, "val_loss": 1.0, "val_accuracy": v}
            for a, v in zip(acc, val)]


def falling(n=400, start=2.3, end=0.4):
    rng = np.random.default_rng(0)
    return np.linspace(start, end, n) * rng.uniform(0.9, 1.1, n)


def test_stuck_at_chance_is_diverged():
    # Adam at 0.5 on Fashion-MNIST: a first epoch above chance, then 10% with a finite loss
    logs = epochs([0.16, 0.10, 0.101, 0.099], [0.098, 0.103, 0.098, 0.097])
    losses = np.full(400, 2.33)
    losses[0] = 2.39
    assert divergence.divergence_reason(logs, losses, 10) == "chance"
    # binary data: chance is 50%
    assert divergence.divergence_reason(epochs([0.6, 0.51], [0.49, 0.5]), losses, 2) == "chance"


def test_a_learning_run_has_not_diverged():
    logs = epochs([0.80, 0.85, 0.87, 0.88], [0.84, 0.86, 0.87, 0.875])
    assert divergence.divergence_reason(logs, falling(), 10) == ""
    # a slow start near chance that gets away from it in the last half is learning too
    slow = epochs([0.10, 0.11, 0.13, 0.16], [0.10, 0.11, 0.13, 0.17])
    assert divergence.divergence_reason(slow, falling(start=2.4, end=2.28), 10) == ""


@pytest.mark.parametrize("acc, val", [
    ([0.1, 0.1, 0.5, 0.1], [0.1, 0.1, 0.1, 0.1]),  # one epoch of the last half away from it
    ([0.3, 0.3, 0.1, 0.1], [0.3, 0.3, 0.1, 0.13]),  # validation 3 points off
    ([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, float("nan")]),  # NaN is not "at chance"
])
def test_chance_needs_train_and_validation_over_the_last_half(acc, val):
    assert not divergence.at_chance(epochs(acc, val), 10)


def test_chance_takes_the_last_half_at_least_the_last_epoch():
    assert divergence.at_chance(epochs([0.1], [0.1]), 10)
    assert divergence.at_chance(epochs([0.5, 0.12], [0.5, 0.08]), 10)  # 2 points: still chance
    assert divergence.at_chance(epochs([0.5, 0.1, 0.1], [0.5, 0.1, 0.1]), 10)  # ceil(3/2) = 2
    assert not divergence.at_chance(epochs([0.1, 0.5, 0.1], [0.1, 0.5, 0.1]), 10)
    assert divergence.at_chance(epochs([0.5, 0.5, 0.1, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1, 0.1]), 10)
    assert divergence.at_chance([{"accuracy": 0.1}], 10)  # without validation: training alone
    assert not divergence.at_chance(epochs([0.1], [0.1]), None)  # no class count: no rule


def test_a_loss_that_stays_high_is_diverged():
    # above chance (so not "chance"), but the loss sits at 5x its start for the second half
    logs = epochs([0.3, 0.25, 0.2, 0.2], [0.3, 0.25, 0.2, 0.2])
    losses = np.concatenate([falling(200, 2.3, 2.0), np.full(200, 11.5)])
    losses[0] = 2.3
    assert divergence.divergence_reason(logs, losses, 10) == "loss_above_initial"
    assert divergence.loss_stays_above_initial(losses)
    assert not divergence.loss_stays_above_initial(losses, factor=6.0)


def test_an_early_spike_the_run_recovers_from_does_not_count():
    # 1000x the first loss at the start, back to normal at once: the EMA restarted at the
    # last half does not carry the spike (over the whole run, it would for ~50 steps)
    losses = np.concatenate([[0.7], np.full(10, 700.0), np.full(29, 0.69)])
    assert not divergence.loss_stays_above_initial(losses)
    assert divergence.divergence_reason(epochs([0.6, 0.7], [0.6, 0.7]), losses, 2) == ""


def test_nonfinite_and_blow_up():
    logs = epochs([0.5, 0.6], [0.5, 0.6])
    losses = falling()
    losses[100] = np.nan
    assert divergence.divergence_reason(logs, losses, 10) == "nonfinite"
    losses[100] = np.inf
    assert divergence.divergence_reason(logs, losses, 10) == "nonfinite"
    losses[100] = 2e4 * losses[0]
    losses[150] = np.nan  # the first bad step names the reason
    assert divergence.divergence_reason(logs, losses, 10) == "blow_up"
    nan_epoch = [logs[0], {**logs[1], "val_loss": math.nan}]
    assert divergence.divergence_reason(nan_epoch, falling(), 10) == "nonfinite"
    assert divergence.stopping_reason(falling(), 2.3) is None
    assert divergence.stopping_reason([1.0, 2.0, np.nan], 1.0) == (2, "nonfinite")


def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def feed(logger, per_epoch_losses, per_epoch_logs, calls=2):
    """Drive ``logger`` as ``fit`` would: epochs of ``calls`` calls each, then train end."""
    step = 0
    logger.on_train_begin()
    for epoch, (losses, logs) in enumerate(zip(per_epoch_losses, per_epoch_logs)):
        logger.on_epoch_begin(epoch)
        for chunk in np.array_split(np.asarray(losses, np.float32), calls):
            logger.on_train_batch_begin(step)
            its = np.arange(step, step + len(chunk), dtype=np.int64)
            logger.on_steps(its, np.full(len(chunk), 0.1, np.float32), chunk)
            step += len(chunk)
            logger.on_train_batch_end(step)
            if logger.model.stop_training:
                break
        logger.on_test_begin()
        logger.on_test_end()
        logger.on_epoch_end(epoch, logs)
        if logger.model.stop_training:
            break
    logger.on_train_end()


def test_epoch_logger_judges_chance_at_the_end_without_stopping():
    sink = metric_sink.MetricSink()
    logger = epoch_logger.EpochLogger(sink, num_classes=10)
    logger.set_model(small_model())
    logs = epochs([0.2, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.1])
    feed(logger, [np.full(8, 2.3)] * 4, logs)
    assert logger.epochs_done == 4 and not logger.model.stop_training
    assert logger.diverged is True and logger.diverged_reason == "chance"
    assert logger.stop_reason == "" and logger.diverged_step is None
    assert [s for s, _ in sink.points["step_loss"]] == list(range(32))


def test_epoch_logger_stops_at_a_nonfinite_loss():
    sink = metric_sink.MetricSink()
    logger = epoch_logger.EpochLogger(sink, num_classes=10)
    logger.set_model(small_model())
    bad = np.full(8, 2.3)
    bad[5] = np.nan
    feed(logger, [np.full(8, 2.3), bad, np.full(8, 2.3)], epochs([0.5] * 3, [0.5] * 3))
    assert logger.diverged_reason == "nonfinite" and logger.diverged_step == 13
    assert logger.epochs_done == 2  # stopped in its second epoch


def test_epoch_logger_learning_run_and_classes_from_the_model():
    sink = metric_sink.MetricSink()
    logger = epoch_logger.EpochLogger(sink)  # 4 outputs: chance is 25%
    logger.set_model(small_model())
    feed(logger, [np.full(8, 1.0)] * 2, epochs([0.26, 0.25], [0.25, 0.24]))
    assert logger.diverged_reason == "chance"
    logger = epoch_logger.EpochLogger(metric_sink.MetricSink())
    logger.set_model(small_model())
    feed(logger, [np.linspace(1.0, 0.5, 8)] * 2, epochs([0.5, 0.7], [0.5, 0.7]))
    assert logger.diverged is False and logger.diverged_reason == ""



def test_epoch_logger_learning_rate_is_the_epochs_first_recorded_step():
    """Once a StepRecorder feeds the logger, an epoch's ``learning_rate`` is its first step's
    LR as recorded, not the optimizer's (read eagerly) at the epoch's start; before that, the
    optimizer's."""
    sink = metric_sink.MetricSink()
    logger = epoch_logger.EpochLogger(sink)
    logger.set_model(small_model())  # SGD at 0.1
    logger.on_train_begin()
    for epoch, lrs in enumerate(([0.1, 0.09], [0.05, 0.04], [0.02, 0.01])):
        logger.on_epoch_begin(epoch)
        logger.model.optimizer.learning_rate.assign(0.7)  # what reading it would give
        its = np.arange(2 * epoch, 2 * epoch + 2, dtype=np.int64)
        logger.on_steps(its, np.asarray(lrs, np.float32), np.ones(2, np.float32))
        logger.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    got = [v for _, v in sink.points["learning_rate"]]
    assert got == pytest.approx([0.1, 0.05, 0.02])


# -- the first epoch's tracing and compiling -------------------------------------------------

def test_first_epoch_extra_sets_each_call_against_the_same_call_later():
    calls = [[1.9, 0.85], [0.40, 0.20], [0.35, 0.14], [0.37, 0.21]]  # 256 + 135 steps each
    validations = [0.76, 0.063, 0.059, 0.067]
    extra = epoch_logger.first_epoch_extra(calls, validations)
    assert extra == pytest.approx((1.9 - 0.37) + (0.85 - 0.20) + (0.76 - 0.063))
    # one first call: its epoch is a single call, set against the later epochs' first calls
    assert epoch_logger.first_epoch_extra([[2.0], [0.5], [0.4]]) == pytest.approx(1.55)
    # a later epoch cut short (divergence) gives no reference for the calls it lacks
    assert epoch_logger.first_epoch_extra([[2.0, 1.0], [0.5]]) == pytest.approx(1.5)
    # noise never makes it negative
    assert epoch_logger.first_epoch_extra([[0.4, 0.2], [0.5, 0.3]], [0.05, 0.06]) == 0.0


def test_first_epoch_extra_of_a_one_epoch_trial():
    # against the median of the middle calls; the last (maybe smaller, compiled anew) is not
    # a reference, and the validation cannot be told apart
    assert epoch_logger.first_epoch_extra([[1.3, 0.01, 0.012, 0.011, 0.5]], [0.4]) == pytest.approx(
        1.3 - 0.011)
    assert epoch_logger.first_epoch_extra([[1.3, 0.5]], [0.4]) is None
    assert epoch_logger.first_epoch_extra([[1.3]]) is None


def test_epoch_logger_leaves_compile_out_of_the_times(monkeypatch):
    clock = iter(np.cumsum(np.full(1000, 0.01)))
    # every perf_counter reading advances 10 ms; the first call of the first epoch (from
    # the 1st reading, the epoch's start, to the 2nd, the call's end) takes 2 s more
    readings = {"n": 0}

    def perf_counter():
        readings["n"] += 1
        return float(next(clock)) + (2.0 if readings["n"] >= 2 else 0.0)

    monkeypatch.setattr(time, "perf_counter", perf_counter)
    sink = metric_sink.MetricSink()
    logger = epoch_logger.EpochLogger(sink, num_classes=10, target=0.5)
    logger.set_model(small_model())
    feed(logger, [falling(8)] * 3, epochs([0.6, 0.7, 0.8], [0.6, 0.7, 0.8]))
    assert logger.compile_time == pytest.approx(2.0)
    times = dict(sink.points["epoch_time_s"])
    assert sorted(times) == [0, 1, 2]
    assert logger.train_time == pytest.approx(sum(times.values()))
    assert times[0] == pytest.approx(times[1], abs=1e-6)
    assert logger.epochs_to_target == 1 and logger.time_to_target == pytest.approx(times[0])


def test_metric_sink_writes_in_its_own_thread_and_leaves_no_mlflow_queue_to_wait_for(store):
    """Sent points reach the store by flush (in order, all of them, more than one batch), and
    MLflow's own asynchronous queue stays idle: ending the run does not wait for its thread
    (which polls once a second)."""
    from lrstudy.tracking import store as tracking

    client = tracking.client(store)
    run_id = client.create_run(tracking.experiment_id("sink", store, client)).info.run_id
    sink = metric_sink.MetricSink(client, run_id)
    for epoch in range(3):
        sink.add("val_loss", 1.0 / (epoch + 1), epoch)
        sink.send()
    steps = metric_sink.MLFLOW_BATCH + 5
    sink.add_series("step_loss", range(steps), np.linspace(2, 1, steps))
    sink.flush()
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert len(client.get_metric_history(run_id, "step_loss")) == steps
    assert client._tracking_client.store._async_logging_queue.is_idle()
    assert not any(t.name.startswith("MetricSink") for t in threading.enumerate())


def test_metric_sink_stores_each_sent_series_before_the_flush(store):
    """The per-step series an epoch's end sends reach the store while training goes on (the
    MLflow UI shows them), through the bulk sqlite writer, in its thread; the flush adds the
    rest."""
    import time

    from lrstudy.tracking import sqlstore
    from lrstudy.tracking import store as tracking

    client = tracking.client(store)
    run_id = client.create_run(tracking.experiment_id("sink", store, client)).info.run_id
    sink = metric_sink.MetricSink(client, run_id, series_writer=sqlstore.series_writer(store))
    sink.add_series("step_loss", range(100), np.linspace(2, 1, 100))
    sink.send()
    deadline = time.monotonic() + 30
    while len(client.get_metric_history(run_id, "step_loss")) < 100:
        assert time.monotonic() < deadline, "the sent series never reached the store"
        time.sleep(0.05)
    sink.add_series("step_loss", range(100, 150), np.linspace(1, 0.5, 50))
    sink.flush()
    history = client.get_metric_history(run_id, "step_loss")
    assert sorted(m.step for m in history) == list(range(150))
    assert client.get_run(run_id).data.metrics["step_loss"] == pytest.approx(0.5)
    assert not any(t.name.startswith("MetricSink") for t in threading.enumerate())
