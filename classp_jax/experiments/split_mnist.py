"""``split_mnist``: the standard split-MNIST benchmark, beyond the paper.

MNIST's digits in 5 tasks of 2 (0-1, 2-3, ..., 8-9), in any of the three scenarios
(``--set scenario=domain|class|task``). The default is domain-incremental, a shared 2-way
head without task identity, as the first report ran it (where it was mislabelled
task-incremental); class-incremental has one 10-way head, task-incremental masks the
10-way head to each task's two digits. It runs on a 2x256 MLP, with the paper's methods at
the same points as its vision study.
"""

from classp_jax.data import split_stream
from classp_jax.experiments.base import VALIDATION_FRACTION, Experiment, Study
from classp_jax.experiments.common import METHODS, MLP_FRONTIER, VISION_METHODS
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.models import MLP
from classp_jax.training import LoopConfig

EXPERIMENT = Experiment(
  name="split_mnist",
  description="split MNIST (5 tasks x 2 digits; domain-, class- or task-incremental) on a 2x256 MLP",
  stream=lambda options: split_stream(
    load_datasets(("mnist",), options)[0], 5, scenario=options.scenario
  ),
  model=lambda stream: MLP(num_classes=stream.num_classes, hidden=(256, 256)),
  loop=LoopConfig(
    validation_fraction=VALIDATION_FRACTION,
    batch_size=32,
    epochs=1,
    evals_per_task=2,
    eval_batch_size=2000,
    steps_per_call=8,
  ),
  methods=VISION_METHODS,
  default_methods=METHODS,
  scenarios=("domain", "class", "task"),
  quick=smoke_sized,
  frontier=MLP_FRONTIER,
)

# Report version 2's studies: the frontier of every method in each scenario, 3 seeds.
STUDIES = tuple(
  Study(
    f"split_mnist_{scenario}",
    "split_mnist",
    f"split MNIST, {scenario}-incremental: every method tuned on its frontier",
    overrides=(f"scenario={scenario}",),
  )
  for scenario in ("task", "domain", "class")
)
