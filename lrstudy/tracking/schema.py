"""Every name lrstudy writes to MLflow that another part reads: tags, metrics, params.

Spelled here once (as MLflow's own ``mlflow/utils/mlflow_tags.py`` does for its system tags);
every other module uses these names. What each one means: ``docs/tracking.md``.
"""

from __future__ import annotations

TAG = "lrstudy."  # the prefix of every lrstudy tag


class Tag:
    """Tags of runs (and, where said, of a study's experiment)."""

    STUDY = TAG + "study"
    SCENARIO = TAG + "scenario"
    FAMILY = TAG + "family"
    BASELINE = TAG + "baseline"
    KIND = TAG + "kind"  # scenario, trial, lr_range_test, summary
    PHASE = TAG + "phase"  # demo, tune, final
    SEED = TAG + "seed"
    RUN_KEY = TAG + "run_key"
    DIVERGED = TAG + "diverged"
    DIVERGED_REASON = TAG + "diverged_reason"
    STACK_SIZE = TAG + "stack_size"
    FINDER_KEY = TAG + "finder_key"
    DATASET_SUBSTITUTED = TAG + "dataset_substituted"
    ERROR = TAG + "error"
    # liveness: who owns a RUNNING run, and when it last said so
    HOST = TAG + "host"
    PID = TAG + "pid"
    HEARTBEAT = TAG + "heartbeat"
    # the verdict, on a compared strategy's scenario run
    CALL = TAG + "call"
    BEST_GROUP = TAG + "best_group"
    REFERENCE = TAG + "reference"  # on the reference's run; on the experiment: its name
    # the experiment's: what the study file says, for the report
    MARGIN = TAG + "margin"
    CLAIMS = TAG + "claims"
    DIFFERS = TAG + "differs"
    DESIGN = TAG + "design"
    LOOKS = TAG + "looks"
    # MLflow's own tags that lrstudy writes: a run's or an experiment's description (Markdown,
    # shown by the MLflow UI), and a trial's scenario run
    NOTE = "mlflow.note.content"
    PARENT_RUN = "mlflow.parentRunId"


class Metric:
    """Metric names of lrstudy's own (Keras's per-epoch names, ``loss``, ``val_accuracy`` ...,
    are Keras's)."""

    STEP_LEARNING_RATE = "step_learning_rate"  # step = optimizer iteration
    STEP_LOSS = "step_loss"
    LEARNING_RATE = "learning_rate"  # step = epoch
    EPOCH_TIME = "epoch_time_s"
    # the verdict on a compared strategy's scenario run, written by the report: the difference
    # to the reference with its simultaneous interval (points, or the RMSE's own change)
    DIFF_VS_REFERENCE = "diff_vs_reference"
    DIFF_CI_LOW = "diff_ci_low"
    DIFF_CI_HIGH = "diff_ci_high"
    # across workloads, on a strategy's scenario run on one workload: its mean test error
    # over the workload's best strategy's (the performance profile's ratio), its mean
    # normalized score (0 the reference, 1 the workload's best), and the other strategies
    # it beats, ties and loses to there (the win / tie / loss calls)
    PERFORMANCE_RATIO = "performance_ratio"
    NORMALIZED_SCORE = "normalized_score"
    PAIRWISE_WINS = "pairwise_wins"
    PAIRWISE_TIES = "pairwise_ties"
    PAIRWISE_LOSSES = "pairwise_losses"


class Param:
    """Params that the runner, the competition or the report read back."""

    PEAK_LR = "peak_lr"
    OPTIMIZER = "optimizer"
    SCHEDULE = "schedule"
    LEARNING_RATE = "learning_rate"
    TUNE_SEEDS = "tune.seeds"  # on finals: the seeds each grid point was tuned on
    SPLIT = "split"
    INIT_WEIGHTS_SHA = "init_weights_sha"
    BATCH_ORDER_SHA = "batch_order_sha"
