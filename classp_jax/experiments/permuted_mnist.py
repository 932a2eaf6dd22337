"""``permuted_mnist``: the standard permuted-MNIST benchmark, beyond the paper.

10 tasks, each MNIST with its own fixed shuffle of the pixels (task 1 the
original images), domain-incremental (a shared 10-way head; ``--set scenario=task`` gives
each task its own 10 outputs), on a 2x256 MLP, with the paper's
methods at the same points as its vision study.
"""

from classp_jax.data import permuted_stream
from classp_jax.experiments import VALIDATION_FRACTION, Experiment, mnist_fashion
from classp_jax.experiments.comparison import METHODS
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.loop import LoopConfig
from classp_jax.models import MLP

EXPERIMENT = Experiment(
    name="permuted_mnist",
    description="permuted MNIST (10 tasks, one pixel shuffle each) on a 2x256 MLP",
    stream=lambda options: permuted_stream(load_datasets(("mnist",), options)[0], 10,
                                           scenario=options.scenario),
    model=lambda stream: MLP(num_classes=stream.num_classes, hidden=(256, 256)),
    loop=LoopConfig(validation_fraction=VALIDATION_FRACTION, batch_size=32, epochs=1, evals_per_task=1, eval_batch_size=2000,
                    steps_per_call=8),
    methods=mnist_fashion.EXPERIMENT.methods,
    default_methods=METHODS,
    scenarios=("domain", "task"),
    quick=smoke_sized,
    frontier=mnist_fashion.MLP_FRONTIER,
)
