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
`MethodSpec.loss_targets` replays fixed targets instead. ``fpb_imdb_cpu`` is the same study with a 5,000-token vocabulary and
a 32-wide Transformer (2 heads, feed-forward 64), sized for a CPU: a 64-wide
one took about 2 s per 750-example step on one shared core.
"""

import dataclasses

from classp_jax.data import text_stream
from classp_jax.experiments import VALIDATION_FRACTION, Experiment
from classp_jax.experiments.comparison import METHODS, comparison_frontier, comparison_methods
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.loop import LoopConfig
from classp_jax.models import TextTransformer

LEARNING_RATE = 0.025
FPB_LOSS_TARGET = 0.005
IMDB_ACCURACY_TARGET = 0.85


def _stream(vocabulary_size: int):
  return lambda options: text_stream(
      load_datasets(("financial_phrasebank", "imdb_reviews"), options), max_len=30,
      max_size=vocabulary_size, name="financial_phrasebank->imdb_reviews")


def _cpu_model(stream):
  return TextTransformer(vocab_size=len(stream.vocab), num_classes=stream.num_classes,
                         d_model=32, num_heads=2, mlp_dim=64)


EXPERIMENT = Experiment(
    name="fpb_imdb",
    description="the paper's sentiment study: Financial PhraseBank then IMDB (30 tokens) on its "
                "text Transformer, batch 750, stopped at training-loss targets",
    stream=_stream(25_000),
    model=lambda stream: TextTransformer(vocab_size=len(stream.vocab),
                                         num_classes=stream.num_classes),
    loop=LoopConfig(validation_fraction=VALIDATION_FRACTION, batch_size=750, loss_target=(FPB_LOSS_TARGET, None),
                    accuracy_target=(None, IMDB_ACCURACY_TARGET),
                    max_epochs=100, evals_per_task=0, eval_batch_size=2500, steps_per_call=1,
                    log_every=1, paper_eval=True),
    methods=comparison_methods(
        learning_rate=LEARNING_RATE, threshold=0.99, eps=1e-4,
        released={"threshold": 0.99, "apply_scaling": True},
        ewc_strength=5000.0, importance_examples=2000),
    default_methods=METHODS,
    # The full-width model on a handful of examples still compiles for minutes.
    quick=lambda e: smoke_sized(dataclasses.replace(e, stream=_stream(2_000), model=_cpu_model)),
    frontier=comparison_frontier(learning_rate=LEARNING_RATE, classp_learning_rate=LEARNING_RATE,
                                 thresholds=(0.0, 1e-8, 1e-6, 1e-4, 1e-2, 0.99),
                                 threshold=1e-6),
)

CPU_EXPERIMENT = dataclasses.replace(
    EXPERIMENT,
    name="fpb_imdb_cpu",
    description="fpb_imdb sized for a CPU: 5,000-token vocabulary, 32-wide Transformer",
    stream=_stream(5_000),
    model=_cpu_model,
    quick=smoke_sized,
)
