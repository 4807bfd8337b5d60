"""The batch-order digest (lrstudy.data.order.OrderDigest): taken from the orders the pipeline
really fed a trial, over all its epochs, in both engines (Keras's ``fit``, alone or as a
StackedModel, and the VectorStack), each copy of a stack its own; equal for the strategies
of one seed, different between seeds."""

from __future__ import annotations

import hashlib

import pytest

from lrstudy import tfquiet
from lrstudy.data import order as batches
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink
from lrstudy.training import fitting

tf = tfquiet.import_tensorflow()

EPOCHS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two strategies of the tiny synthetic budget (800 training examples, batch 32)."""
    from conftest import TINY

    path = tmp_path_factory.mktemp("batches") / "tiny.toml"
    path.write_text(TINY.format(scenarios='["fixed-baseline", "fixed-sgd"]', epochs=EPOCHS,
                                spe=4, extra=""))
    return scenarios.load_study(str(path)).scenarios


def expected(n: int, seed: int, epochs: int) -> str:
    """The digest of the orders Keras's ``fit`` reads from a seed's pipeline: it opens the
    pipeline once more than it reads it after each epoch (each opening draws new orders)."""
    pipeline = batches.batch_indices(n, n, [seed])
    sha = hashlib.sha256()
    for epoch in range(epochs):
        if epoch:
            iter(pipeline)
        ((order, _),) = next(iter(pipeline))
        sha.update(order.numpy().tobytes())
    return sha.hexdigest()[:16]


def digests(trials, vectorize: bool) -> list[str]:
    """``batch_order_sha`` of each of ``trials`` (``(scenario, seed)``) trained as one stack
    (one trial: alone), from the params a trial logs."""
    sinks = [metric_sink.MetricSink(None) for _ in trials]
    outcomes = fitting.fit_stack([(sc, seed, False) for sc, seed in trials], sinks,
                               vectorize=vectorize)
    return [out["params"]["batch_order_sha"] for out in outcomes]


def test_the_digest_is_of_the_orders_fed_in_both_engines(tiny):
    base, sgd = tiny["fixed-baseline"], tiny["fixed-sgd"]
    want = {seed: expected(base.train_size, seed, EPOCHS) for seed in (0, 1)}
    assert want[0] != want[1]
    vector = digests([(base, 0), (sgd, 0), (base, 1)], vectorize=True)  # VectorStack
    keras_stack = digests([(base, 0), (sgd, 0), (base, 1)], vectorize=False)  # StackedModel
    alone = digests([(sgd, 0)], vectorize=False)  # Keras's fit on the trial's own pipeline
    one = digests([(base, 1)], vectorize=True)  # a VectorStack of one
    assert vector == keras_stack == [want[0], want[0], want[1]]
    assert alone == [want[0]] and one == [want[1]]


def reversed_after_the_first(original):
    """An ``epoch_order`` that gives ``original``'s first order, then each reversed."""
    def order_of(n, key, seed):
        order = original(n, key, seed)
        seen = []

        def flip(o):  # the pipeline asks once per epoch it feeds
            seen.append(1)
            return o if len(seen) == 1 else o[::-1].copy()

        return tf.ensure_shape(tf.numpy_function(flip, [order], tf.int64), order.shape)

    return order_of


def read(epochs: int, seed: int = 0, n: int = 50) -> str:
    digest = batches.OrderDigest()
    pipeline = batches.batch_indices(n, 16, [seed], digests=[digest])
    for _ in range(epochs):
        for _ in pipeline:
            pass
    return digest.hexdigest()


def test_a_change_of_a_later_epochs_order_changes_the_digest(tiny, monkeypatch):
    """Epoch 2's order reversed, epoch 1's untouched: the digest of one epoch stays, the
    digest of both changes, in Keras's ``fit`` and in the VectorStack."""
    base = tiny["fixed-baseline"]
    plain = [read(1), read(2)]
    unpatched = expected(base.train_size, 0, EPOCHS)  # both engines' digest (test above)
    monkeypatch.setattr(batches, "epoch_order", reversed_after_the_first(batches.epoch_order))
    assert read(1) == plain[0] and read(2) != plain[1]
    for vec in (True, False):
        assert digests([(base, 0)], vec) == [expected(base.train_size, 0, EPOCHS)] != [
            unpatched], vec


def test_each_epoch_is_hashed_once_as_its_batches_are_cut():
    """One update per epoch read, per seed of a stack's pipeline; an opening that is never
    read adds nothing; the digests of the copies are those of their seeds alone."""
    own = [batches.OrderDigest(), batches.OrderDigest()]
    stacked = batches.batch_indices(50, 16, [3, 4], pad=True, digests=own)
    for _ in range(3):
        iter(stacked)  # opened, never read
        for _ in stacked:
            pass
    assert [d.epochs for d in own] == [3, 3]
    alone = batches.OrderDigest()
    for _ in range(3):
        for _ in batches.batch_indices(50, 50, [4], digests=[alone]).take(1):
            pass
    assert alone.epochs == 3 and own[0].hexdigest() != own[1].hexdigest()
    with pytest.raises(ValueError, match="1 order digests for 2 seeds"):
        batches.batch_indices(50, 16, [3, 4], digests=[alone])


def test_the_verdict_compares_orders_over_the_trials_that_trained_every_epoch():
    """A diverged trial stopped early: the digest of its orders is its own, and the pairing
    check leaves it out of the orders (not of the weights)."""
    import pandas as pd

    from lrstudy.report import verdict

    rows = [{"scenario": s, "seed": seed, "init_weights_sha": f"w{seed}",
             "batch_order_sha": f"b{seed}", "diverged": False}
            for s in ("a", "b") for seed in (0, 1)]
    rows.append({"scenario": "c", "seed": 0, "init_weights_sha": "w0",
                 "batch_order_sha": "prefix", "diverged": True})
    assert verdict.pairing(pd.DataFrame(rows)) == {"checked": True, "paired": True, "seeds": 2}
    rows[-1]["init_weights_sha"] = "other"
    assert verdict.pairing(pd.DataFrame(rows))["paired"] is False
    rows[-1].update(init_weights_sha="w0", diverged=False)
    assert verdict.pairing(pd.DataFrame(rows))["paired"] is False
