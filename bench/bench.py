"""`make bench`: performance ratios measured side by side in one run, written to JSON.

(a) training path: the tutorials' plain ``model.fit`` (MLP128, batch 32, all of
    Fashion-MNIST, Adam) against ours (``train.fit_scenario``: tf.data from the cached arrays,
    many steps per execution, XLA, our recording callbacks) on the same model, data, batch,
    epochs and seeds: ratio of the median epoch times, and the final validation accuracies.
(b) tracking overhead on the default study's budget: our callbacks logging every step into a
    real sqlite MLflow store, against the same fit without callbacks; and the same ratio for
    ``mlflow.keras.MlflowCallback(log_every_n_steps=1)``.
(c) orchestration overhead: wall time of ``lrstudy run`` (papermill, kernels, MLflow) on a
    slice of the default study, against the pure in-process time of the same fits (same data,
    model, epochs; no notebooks, no tracking).
(d) the summary's query time over a store of 500 synthetic trials.

Each pair runs alternately (A B A B ...) in this one process, so drift hits both sides alike.
Usage: python bench/bench.py [--quick] [--only a,b,c,d] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class EpochTimer:
    """Per-epoch wall times (a tiny Keras callback, same for both sides)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.t0)

        return _Timer()


def bench_training_path(epochs: int, seeds: int) -> dict:
    """(a) plain model.fit vs ours, per epoch, same model/data/batch/epochs/seeds."""
    import keras

    from lrstudy import models, scenarios, train
    from lrstudy.callbacks import MetricSink

    study = scenarios.load_study("seeds", {"epochs": epochs, "batch_size": 32})
    sc = study.scenarios["fixed-baseline"]  # Adam at Keras's default 0.001
    ds = train.load_data("fashion_mnist", 0, sc.budget["val_size"])
    plain_t, ours_t, plain_acc, ours_acc = [], [], [], []
    for seed in range(seeds):
        # the tutorials' way
        keras.utils.set_random_seed(seed)
        model, logits = models.build("mlp128", ds.input_shape, ds.num_classes)
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                      metrics=["accuracy"])
        timer = EpochTimer()
        hist = model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=epochs,
                         validation_data=(ds.x_val, ds.y_val), callbacks=[timer], verbose=0)
        plain_t += timer.times[1:]
        plain_acc.append(hist.history["val_accuracy"][-1])
        # ours, with every recording callback on (no MLflow: that is (b))
        sink = MetricSink()
        train.fit_scenario(sc, seed, sink)
        ours_t += [v for step, v in sink.points["epoch_time_s"]][1:]
        ours_acc.append(sink.last("val_accuracy"))
        log(f"  (a) seed {seed}: plain {statistics.median(timer.times[1:]):.2f} s/epoch "
            f"acc {plain_acc[-1]:.4f} | ours {statistics.median(ours_t[-(epochs - 1):]):.2f} "
            f"s/epoch acc {ours_acc[-1]:.4f}")
    plain, ours = statistics.median(plain_t), statistics.median(ours_t)
    return {
        "plain_epoch_s": plain, "ours_epoch_s": ours, "speedup": plain / ours,
        "plain_val_accuracy": statistics.mean(plain_acc),
        "ours_val_accuracy": statistics.mean(ours_acc),
        "accuracy_difference_points": 100 * (statistics.mean(ours_acc)
                                             - statistics.mean(plain_acc)),
        "epochs": epochs, "seeds": seeds, "batch_size": 32,
        "steps_per_execution": train.steps_per_execution(sc),
        "jit_compile": sc.budget["jit_compile"],
    }


def bench_tracking(epochs: int, repeats: int) -> dict:
    """(b) our callbacks into MLflow vs no callbacks; MLflow's own callback likewise."""
    import keras
    import mlflow

    from lrstudy import callbacks as cb
    from lrstudy import models, scenarios, tracking, train

    study = scenarios.load_study("seeds", {"epochs": epochs})
    sc = study.scenarios["warmup-cosine"]  # a per-step schedule: the LR curve matters
    budget = sc.budget
    ds = train.load_data(budget["dataset"], budget["train_size"], budget["val_size"])
    spe = train.steps_per_execution(sc)
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = tracking.experiment_id("bench-tracking", uri, client)

    def fit(mode: str) -> float:
        train.seed_everything(0, deterministic_ops=not budget["jit_compile"])
        schedule = scenarios.build_schedule(sc)
        model, logits = models.build(budget["model"], ds.input_shape, ds.num_classes)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        # MLflow's callback sees only the steps Keras returns to Python after: give it (and
        # its own untracked baseline) one step per execution so that it logs every step
        per_step = mode in ("mlflow", "none_spe1")
        model.compile(optimizer=train.build_optimizer(sc, schedule), loss=loss,
                      metrics=["accuracy"], steps_per_execution=1 if per_step else spe,
                      jit_compile=budget["jit_compile"])
        data = train.train_dataset(ds, budget["batch_size"], 0)
        callbacks, sink, run_id = [], None, None
        if mode == "ours":
            run_id = client.create_run(exp).info.run_id
            sink = cb.MetricSink(client, run_id, series_writer=tracking.series_writer(uri))
            logger = cb.EpochLogger(sink, target=sc.target, loss_fn=loss,
                                    probe=(ds.x_train[:256], ds.y_train[:256]))
            callbacks = [cb.StepRecorder(spe, on_steps=logger.on_steps), logger]
        elif mode == "mlflow":
            mlflow.set_tracking_uri(uri)
            mlflow.start_run(experiment_id=exp)
            callbacks = [mlflow.keras.MlflowCallback(log_every_epoch=True, log_every_n_steps=1)]
        t0 = time.perf_counter()
        model.fit(data, epochs=budget["epochs"], validation_data=(ds.x_val, ds.y_val),
                  callbacks=callbacks, verbose=0)
        if sink is not None:
            sink.flush()
        elapsed = time.perf_counter() - t0
        if mode == "ours":
            client.set_terminated(run_id)
        elif mode == "mlflow":
            mlflow.end_run()
        return elapsed

    times = {"none": [], "ours": [], "none_spe1": [], "mlflow": []}
    fit("none")  # warm-up: data pipeline, XLA caches
    for r in range(repeats):
        for mode in times:
            times[mode].append(fit(mode))
        log(f"  (b) repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    best = {k: min(v) for k, v in times.items()}
    return {
        "untracked_s": best["none"], "ours_s": best["ours"], "mlflow_callback_s": best["mlflow"],
        "overhead_ours": best["ours"] / best["none"],
        "untracked_one_step_per_execution_s": best["none_spe1"],
        "overhead_mlflow_callback_every_step": best["mlflow"] / best["none_spe1"],
        "epochs": epochs, "steps_per_epoch": sc.steps_per_epoch, "repeats": repeats,
        "scenario": sc.name, "note": "min over repeats; per-step logging on (every step)",
    }


def bench_orchestration(scenario_names: list[str], seeds: int, epochs: int | None) -> dict:
    """(c) `lrstudy run` wall time vs the same fits in-process, untracked."""
    from lrstudy import scenarios, train
    from lrstudy.callbacks import MetricSink

    overrides = {"epochs": epochs} if epochs else {}
    study = scenarios.load_study("seeds", overrides)
    tmp = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    args = [sys.executable, "-m", "lrstudy", "run", "--study", "seeds", "--scenarios",
            ",".join(scenario_names), "--seeds", str(seeds), "--tracking-uri", uri, "--quiet"]
    if epochs:
        args += ["--epochs", str(epochs)]
    env = {**os.environ, "LRSTUDY_RUNS_DIR": str(tmp / "runs")}
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    runner_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"lrstudy run failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    log(f"  (c) lrstudy run: {runner_s:.1f} s")
    t0 = time.perf_counter()
    for name in scenario_names:
        for seed in range(seeds):
            train.fit_scenario(study.scenarios[name], seed, MetricSink(keep=False))
    inprocess_s = time.perf_counter() - t0
    log(f"  (c) in-process fits: {inprocess_s:.1f} s")
    return {"runner_s": runner_s, "in_process_s": inprocess_s,
            "overhead": runner_s / inprocess_s, "scenarios": scenario_names, "seeds": seeds,
            "epochs": epochs or study.scenarios[scenario_names[0]].budget["epochs"]}


def bench_summary(n_trials: int) -> dict:
    """(d) the summary over n synthetic trials with full per-epoch histories."""
    from lrstudy import report

    with tempfile.TemporaryDirectory() as tmp:
        return report.bench_summary(n_trials=n_trials, tmpdir=tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs/seeds (a smoke run)")
    parser.add_argument("--only", default="a,b,c,d")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    if "a" in only:
        log("(a) training path: plain model.fit vs ours")
        results["a_training_path"] = bench_training_path(epochs=2 if quick else 4,
                                                         seeds=1 if quick else 3)
    if "b" in only:
        log("(b) tracking overhead")
        results["b_tracking"] = bench_tracking(epochs=2 if quick else 4, repeats=1 if quick else 3)
    if "c" in only:
        log("(c) orchestration overhead")
        names = ["fixed-baseline", "warmup-cosine", "decay-step", "adaptive-rmsprop"]
        results["c_orchestration"] = bench_orchestration(
            names[:2] if quick else names, seeds=1 if quick else 3, epochs=2 if quick else None)
    if "d" in only:
        log("(d) summary over 500 synthetic trials")
        results["d_summary"] = bench_summary(50 if quick else 500)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nlrstudy bench ({'quick' if quick else 'full'}), written to {args.out}")
    if "a_training_path" in results:
        a = results["a_training_path"]
        print(f"(a) training path speed-up   {a['speedup']:.2f}x  (plain {a['plain_epoch_s']:.2f} "
              f"s/epoch, ours {a['ours_epoch_s']:.2f} s/epoch; val accuracy "
              f"{a['plain_val_accuracy']:.4f} vs {a['ours_val_accuracy']:.4f}, "
              f"{a['accuracy_difference_points']:+.2f} points)   goal >= 3.5x, |diff| <= 0.5")
    if "b_tracking" in results:
        b = results["b_tracking"]
        print(f"(b) tracking overhead         {b['overhead_ours']:.3f}   (MlflowCallback every "
              f"step: {b['overhead_mlflow_callback_every_step']:.2f})   goal <= 1.05")
    if "c_orchestration" in results:
        c = results["c_orchestration"]
        print(f"(c) orchestration overhead    {c['overhead']:.3f}   ({c['runner_s']:.0f} s "
              f"lrstudy run vs {c['in_process_s']:.0f} s in-process)   goal <= 1.15")
    if "d_summary" in results:
        d = results["d_summary"]
        print(f"(d) summary over {d.get('n_trials', '?')} trials   {d['summary_s']:.1f} s   "
              f"goal <= 30 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
