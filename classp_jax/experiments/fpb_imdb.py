"""``fpb_imdb``: the paper's sentiment study, Financial PhraseBank then IMDB.

The paper's "controlled" protocol: its text Transformer on the first 30
tokens, batch 750, one vocabulary over both training sets and a shared
3-way sentiment head (IMDB uses negative and positive). Task 1 (FPB) trains
until its epoch's training loss is at most 0.005; task 2 (IMDB) stops at a
per-method loss target, chosen in the paper so that every method reaches
about the same IMDB accuracy (about 85%), so that what differs is what each
method forgot of FPB. CLASSP with lr 0.025, threshold 0.99, eps 1e-4, p 1.

Here that target is found by the run rather than by hand: each method trains
IMDB until an epoch's mean training accuracy (dropout on, like the loss)
reaches `IMDB_ACCURACY_TARGET`, and the epoch loss where it stopped is its
per-method loss target. Results record both per task (``epoch_loss``,
``epoch_accuracy``), and the report tabulates them; a method's
`MethodSpec.loss_targets` replays fixed targets instead.

``fpb_imdb_cpu`` is the study sized for a CPU, and accuracy-matched within
a budget:

* a 5,000-token vocabulary and a 32-wide Transformer (2 heads, feed-forward
  64): a 64-wide one took about 2 s per 750-example step on one shared core;
* batch 100, not 750: at batch 750 an epoch is a handful of steps, and plain
  SGD (and every method built on it) stayed near the majority class within
  the epochs a CPU affords;
* FPB trains a fixed `CPU_FPB_EPOCHS` epochs, the same for every method (no
  method reached the paper's loss of 0.005 in 30 epochs);
* IMDB trains until an epoch's training accuracy reaches
  `CPU_IMDB_ACCURACY_TARGET`, at most `CPU_MAX_EPOCHS` epochs. A run that
  stops at the cap has missed the target (``targets_met``), and the report
  selects no such point (`classp_jax.results.select_points`): a method that
  reaches it at no learning rate is listed with the accuracy it reached.
  The target is one that most methods reach at some learning rate: in a
  probe (seed 0), SGD reached 0.69 in 20 IMDB epochs at its best stable
  learning rate (0.3; 1.0 diverged), while Adam, AdaGrad and CLASSP reached
  0.80-0.97.
"""

import dataclasses

from classp_jax.data import text_stream
from classp_jax.experiments.base import VALIDATION_FRACTION, Experiment, Study
from classp_jax.experiments.common import (
  METHODS,
  NARROW_HALF_DECADES,
  comparison_frontier,
  comparison_methods,
)
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.models import TextTransformer
from classp_jax.training import LoopConfig

LEARNING_RATE = 0.025
FPB_LOSS_TARGET = 0.005
IMDB_ACCURACY_TARGET = 0.85
CPU_FPB_EPOCHS = 20
CPU_IMDB_ACCURACY_TARGET = 0.7
CPU_MAX_EPOCHS = 30
THRESHOLDS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 0.99)


def _stream(vocabulary_size: int):
  return lambda options: text_stream(
    load_datasets(("financial_phrasebank", "imdb_reviews"), options),
    max_len=30,
    max_size=vocabulary_size,
    name="financial_phrasebank->imdb_reviews",
  )


def _cpu_model(stream):
  return TextTransformer(
    vocab_size=len(stream.vocab),
    num_classes=stream.num_classes,
    d_model=32,
    num_heads=2,
    mlp_dim=64,
  )


EXPERIMENT = Experiment(
  name="fpb_imdb",
  description="the paper's sentiment study: Financial PhraseBank then IMDB (30 tokens) on its "
  "text Transformer, batch 750, stopped at training-loss targets",
  stream=_stream(25_000),
  model=lambda stream: TextTransformer(
    vocab_size=len(stream.vocab), num_classes=stream.num_classes
  ),
  loop=LoopConfig(
    validation_fraction=VALIDATION_FRACTION,
    batch_size=750,
    loss_target=(FPB_LOSS_TARGET, None),
    accuracy_target=(None, IMDB_ACCURACY_TARGET),
    max_epochs=100,
    evals_per_task=0,
    eval_batch_size=2500,
    steps_per_call=1,
    log_every=1,
    paper_eval=True,
  ),
  methods=comparison_methods(
    learning_rate=LEARNING_RATE,
    threshold=0.99,
    eps=1e-4,
    released={"threshold": 0.99, "apply_scaling": True},
    ewc_strength=5000.0,
    importance_examples=2000,
  ),
  default_methods=METHODS,
  # The full-width model on a handful of examples still compiles for minutes.
  quick=lambda e: smoke_sized(dataclasses.replace(e, stream=_stream(2_000), model=_cpu_model)),
  frontier=comparison_frontier(
    learning_rate=LEARNING_RATE,
    classp_learning_rate=LEARNING_RATE,
    thresholds=THRESHOLDS,
    threshold=1e-6,
  ),
)

CPU_EXPERIMENT = dataclasses.replace(
  EXPERIMENT,
  name="fpb_imdb_cpu",
  description=f"fpb_imdb sized for a CPU: 5,000-token vocabulary, 32-wide Transformer, batch "
  f"100; FPB {CPU_FPB_EPOCHS} epochs, then IMDB to {CPU_IMDB_ACCURACY_TARGET:.0%} "
  f"training accuracy (at most {CPU_MAX_EPOCHS} epochs)",
  stream=_stream(5_000),
  model=_cpu_model,
  loop=dataclasses.replace(
    EXPERIMENT.loop,
    batch_size=100,
    epochs=(CPU_FPB_EPOCHS, 1),
    loss_target=None,
    accuracy_target=(None, CPU_IMDB_ACCURACY_TARGET),
    max_epochs=CPU_MAX_EPOCHS,
  ),
  quick=smoke_sized,
  # Learning rates from a seed-0 probe: SGD trained at 0.3 and diverged at 1; threshold-
  # free CLASSP reached 80% IMDB training accuracy at 0.05 and stayed near chance at 0.01.
  frontier=comparison_frontier(
    learning_rate=0.3,
    classp_learning_rate=0.05,
    thresholds=THRESHOLDS,
    threshold=1e-6,
    learning_rate_factors=NARROW_HALF_DECADES,
  ),
)

STUDIES = (
  Study(
    "fpb_imdb_cpu",
    "fpb_imdb_cpu",
    "the paper's sentiment study sized for a CPU, on 5,000 IMDB training and 2,000 test examples",
    tuning_overrides=("evals_per_task=1", "paper_eval=false"),
    subsample="5000,2000",
    knobs=("learning_rate", "threshold", "strength"),
    cuts="5,000 IMDB training and 2,000 test examples; one mid-task evaluation while "
    "tuning; DER++'s and LwF's alpha are not swept",
  ),
)
