"""``mnist_fashion``: the paper's vision study, MNIST then Fashion-MNIST on its CNN.

The paper's protocol: batch 32, 4 epochs of MNIST, then 1 epoch of
Fashion-MNIST, a shared 10-way head; CLASSP with lr 0.2, threshold 0.5,
eps 1e-5 and p 1. ``classp_as_released`` follows the authors' schedule: task 1
with scaling off and threshold 0.5, task 2 with scaling on and threshold 0.
The threshold is compared per weight with g**2 of a mean-reduced loss, so 0.5
may freeze nearly every weight (the released code gated per tensor and ignored
the threshold's value); ``--frontier`` sweeps it.

``classp_lr_tuned`` is CLASSP at the learning rate where threshold-free
CLASSP did best on its frontier (0.02; `TUNED_LEARNING_RATE`), so that the
threshold's frontier can also be traced at a tuned learning rate, not only at
the paper's 0.2. ``ewc_lr_tuned`` gives EWC the same learning rate, so that
its lambda frontier is not held back by SGD at 0.2, where large lambdas
diverge. ``classp_relative`` and ``classp_eq1`` (see
`classp_jax.experiments.comparison`) also run at that learning rate.

The paper scored training splits with dropout on; ``paper_eval`` reports that
beside the held-out test accuracy.
"""

from classp_jax.data import sequential_stream
from classp_jax.experiments import VALIDATION_FRACTION, Experiment
from classp_jax.experiments.comparison import METHODS, comparison_frontier, comparison_methods
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.loop import LoopConfig
from classp_jax.methods import with_hyperparameter
from classp_jax.models import PaperCNN

LEARNING_RATE = 0.2
TUNED_LEARNING_RATE = 0.02
THRESHOLDS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 0.5)

_METHODS = comparison_methods(
    learning_rate=LEARNING_RATE, threshold=0.5, eps=1e-5,
    released={"apply_scaling": (False, True), "threshold": (0.5, 0.0)},
    ewc_strength=5000.0, importance_examples=1000,
    threshold_free_learning_rate=TUNED_LEARNING_RATE)
_FRONTIER = comparison_frontier(learning_rate=LEARNING_RATE, thresholds=THRESHOLDS,
                                threshold_free_learning_rate=TUNED_LEARNING_RATE)
_TUNED = ("classp", "ewc")  # also run at TUNED_LEARNING_RATE, as METHOD_lr_tuned

EXPERIMENT = Experiment(
    name="mnist_fashion",
    description="the paper's vision study: MNIST (4 epochs) then Fashion-MNIST (1 epoch) "
                "on the paper CNN, batch 32",
    stream=lambda options: sequential_stream(
        load_datasets(("mnist", "fashion_mnist"), options), name="mnist->fashion_mnist"),
    model=lambda stream: PaperCNN(num_classes=stream.num_classes),
    loop=LoopConfig(validation_fraction=VALIDATION_FRACTION, batch_size=32, epochs=(4, 1), evals_per_task=4, eval_batch_size=1000,
                    steps_per_call=8, paper_eval=True),
    methods={**_METHODS, **{
        f"{m}_lr_tuned": with_hyperparameter(m, _METHODS[m], "learning_rate", TUNED_LEARNING_RATE)
        for m in _TUNED}},
    default_methods=METHODS,
    quick=smoke_sized,
    frontier={**_FRONTIER, **{f"{m}_lr_tuned": _FRONTIER[m] for m in _TUNED}},
)
