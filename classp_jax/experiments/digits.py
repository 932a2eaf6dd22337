"""``digits``: the offline default, split digits on an MLP.

scikit-learn's bundled 8x8 handwritten digits, cut into 5 tasks of 2 digits
by default domain-incremental (a shared 2-way head, no task identity; ``--set
scenario=class`` or ``task`` for the other two scenarios). It needs no download
and compares methods in seconds on a CPU, while plain SGD visibly forgets the
early tasks. It is a smoke-sized study, not a benchmark: see the paper's
experiments for those.
"""

import dataclasses

from classp_jax.data import digits_stream
from classp_jax.experiments.base import VALIDATION_FRACTION, Experiment
from classp_jax.methods import MethodSpec
from classp_jax.models import MLP
from classp_jax.training import LoopConfig

EXPERIMENT = Experiment(
  name="digits",
  description="split digits (5 tasks x 2 classes, scikit-learn's 8x8 digits) on an MLP; offline",
  stream=lambda options: digits_stream(options.scenario),
  model=lambda stream: MLP(num_classes=stream.num_classes, hidden=(128, 128)),
  # One step per call: as fast as unrolled chunks here, and it compiles once.
  loop=LoopConfig(
    validation_fraction=VALIDATION_FRACTION,
    batch_size=32,
    epochs=5,
    evals_per_task=2,
    eval_batch_size=512,
  ),
  methods={
    "classp": MethodSpec("classp", {"learning_rate": 0.05, "threshold": 1e-4}),
    "sgd": MethodSpec("sgd", {"learning_rate": 0.05}),
    "adam": MethodSpec("adam", {"learning_rate": 1e-3}),
    "adagrad": MethodSpec("adagrad", {"learning_rate": 0.05}),
    # Strengths from a small sweep on this stream (2 seeds): EWC 1 beat 10 and 100,
    # SI and MAS 0.1 beat 0.01 and 1; the larger ones destabilised SGD here.
    "ewc": MethodSpec("sgd", {"learning_rate": 0.05}, "ewc", {"strength": 1.0}),
    "ewc_online": MethodSpec("sgd", {"learning_rate": 0.05}, "ewc_online", {"strength": 1.0}),
    "si": MethodSpec("sgd", {"learning_rate": 0.05}, "si", {"strength": 0.1}),
    "mas": MethodSpec("sgd", {"learning_rate": 0.05}, "mas", {"strength": 0.1}),
    "l2": MethodSpec("sgd", {"learning_rate": 0.05}, "l2", {"strength": 0.1}),
  },
  default_methods=("classp", "sgd", "adam"),
  scenarios=("domain", "class", "task"),
  quick=lambda e: dataclasses.replace(e, loop=dataclasses.replace(e.loop, epochs=1)),
)
