"""What the field's image benchmarks share: split CIFAR-10, split CIFAR-100 and split
Tiny-ImageNet on a ResNet-18, at Mammoth's settings (`resnet_experiment`).

Every one of them trains the CIFAR ResNet-18 (`classp_jax.models.ResNet18`, width
64, BatchNorm) with batch 32, plain SGD (no momentum, no weight decay, no
learning-rate schedule), the same number of epochs on every task, and Mammoth's
augmentation (a random crop of the image padded by 4 pixels and a horizontal flip,
``LoopConfig.augment``; ``--set augment=false`` turns it off) with its per-channel
normalisation in the model. The replay methods come at the three buffer sizes of
the DER paper, as named variants: ``er_200``, ``er_500``, ``er_5120``, and the
same for ``derpp`` and ``agem``; ``classp_relative+er_500`` combines CLASSP with a
buffer. Their hyperparameters are Mammoth's ``best_args`` for the benchmark
(``utils/best_args.py`` of https://github.com/aimagelab/mammoth, the DER paper's
grid search), where it has them.

What differs from Mammoth, so that a reproduction knows what to expect:

* ER's loss is the mean of the batch's and the replay batch's cross-entropies, as
  Mammoth's; but the two batches are two forward passes, so BatchNorm normalises
  each by its own statistics, where Mammoth's concatenated batch shares them.
* DER++ draws one replay batch for its logit and label terms (Mammoth draws two).
* Online EWC's Fisher is the empirical one at the task's end
  (`classp_jax.methods.fisher_diagonal`, ``kind="empirical"``), where Mammoth's
  weights each example's squared gradient by its probability; its ``strength`` is
  twice Mammoth's ``e_lambda`` (our penalty has a 1/2).
* LwF's distillation is `classp_jax.methods.losses.lwf_distillation` (scaled by
  T**2); Mammoth's LwF also has weight decay 5e-4.
* 10% of each task is not held out for validation, as Mammoth trains on all of it
  (``--set validation_fraction=0.1`` holds it out, for ``classp-jax report --select``).

CLASSP's points on a ResNet are not tuned: ``--frontier`` sweeps their learning rate.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from classp_jax.data import standard_split_stream
from classp_jax.experiments.base import DataOptions, Experiment, Sweep
from classp_jax.experiments.datasets import load_datasets
from classp_jax.experiments.sizing import smoke_sized
from classp_jax.methods import MethodSpec
from classp_jax.models import ResNet18
from classp_jax.training import LoopConfig

BUFFER_SIZES = (200, 500, 5120)
"""The replay buffers of the DER paper's tables (Buzzega et al. 2020)."""

REPLAY_METHODS = ("er", "derpp", "agem")

# Steps per jitted call: divides the 312 steps of a 10,000-example task and the 156 of a
# 5,000-example one at batch 32, so each task compiles one chunk shape.
STEPS_PER_CALL = 26
# The --quick ResNet: a smoke test of the pipeline, not of the network.
QUICK_WIDTH = 4

# CLASSP's untuned starting point on a ResNet: the threshold-free learning rate of the
# MNIST studies, and a relative threshold (sparsity that does not depend on the loss scale).
CLASSP_LEARNING_RATE = 0.02


@dataclasses.dataclass(frozen=True)
class MammothArgs:
  """A benchmark's hyperparameters in Mammoth's ``best_args`` (or chosen where it has none).

  Attributes:
    sgd: SGD's learning rate (fine-tuning, the lower bound; also ``joint``'s).
    er: ER's learning rate per buffer size.
    derpp: DER++'s ``(learning_rate, alpha, beta)`` per buffer size.
    agem: A-GEM's learning rate per buffer size.
    lwf: LwF's ``(learning_rate, alpha)``; its temperature is 2.
    ewc_online: online EWC's ``(learning_rate, e_lambda)`` (gamma 1).
    si: SI's ``(learning_rate, c, xi)``.
  """

  sgd: float
  er: Mapping[int, float]
  derpp: Mapping[int, tuple[float, float, float]]
  agem: Mapping[int, float]
  lwf: tuple[float, float]
  ewc_online: tuple[float, float]
  si: tuple[float, float, float]


def _sgd(learning_rate: float) -> dict[str, float]:
  return {"learning_rate": learning_rate}


def benchmark_methods(args: MammothArgs) -> dict[str, MethodSpec]:
  """The named methods of a ResNet benchmark: the baselines at ``args``, the replay methods
  at every `BUFFER_SIZES`, and CLASSP's untuned points."""
  methods = {
    "sgd": MethodSpec("sgd", _sgd(args.sgd)),
    "joint": MethodSpec("sgd", _sgd(args.sgd), joint=True),
    "ewc_online": MethodSpec(
      "sgd",
      _sgd(args.ewc_online[0]),
      "ewc_online",
      {"strength": 2 * args.ewc_online[1], "gamma": 1.0, "kind": "empirical"},
    ),
    "si": MethodSpec(
      "sgd", _sgd(args.si[0]), "si", {"strength": args.si[1], "damping": args.si[2]}
    ),
    "lwf": MethodSpec(
      "sgd", _sgd(args.lwf[0]), memory="lwf", memory_hparams={"alpha": args.lwf[1]}
    ),
    "classp_no_threshold": MethodSpec(
      "classp", {"learning_rate": CLASSP_LEARNING_RATE, "threshold": 0.0, "power": 1.0}
    ),
    "classp_relative": MethodSpec(
      "classp",
      {
        "learning_rate": CLASSP_LEARNING_RATE,
        "threshold": 1.0,
        "relative_threshold": True,
        "power": 1.0,
      },
    ),
  }
  for size in BUFFER_SIZES:
    buffer = {"buffer_size": size}
    learning_rate, alpha, beta = args.derpp[size]
    methods[f"er_{size}"] = MethodSpec(
      "sgd", _sgd(args.er[size]), memory="er", memory_hparams=buffer
    )
    methods[f"derpp_{size}"] = MethodSpec(
      "sgd",
      _sgd(learning_rate),
      memory="derpp",
      memory_hparams={**buffer, "alpha": alpha, "beta": beta},
    )
    methods[f"agem_{size}"] = MethodSpec(
      "sgd", _sgd(args.agem[size]), memory="agem", memory_hparams=buffer
    )
  return methods


def _learning_rates(centre: float) -> Sweep:
  return Sweep({"learning_rate": tuple(float(f"{centre * f:.3g}") for f in (0.3, 1.0, 3.0))})


def _quick(experiment: Experiment) -> Experiment:
  """Smoke-sized (`smoke_sized`: 256 training and 128 test examples a task, one epoch) on a
  ResNet-18 of width `QUICK_WIDTH`, unrolled on the CPU."""
  experiment = smoke_sized(experiment)
  build = experiment.model
  return dataclasses.replace(
    experiment,
    model=lambda stream: build(stream).clone(width=QUICK_WIDTH),
    loop=dataclasses.replace(experiment.loop, unroll=True),
  )


def resnet_experiment(
  *,
  name: str,
  description: str,
  dataset: str,
  epochs: int,
  mean: Sequence[float],
  std: Sequence[float],
  args: MammothArgs,
) -> Experiment:
  """A split benchmark of ``dataset`` (`classp_jax.data.standard_split_stream`) on a
  ResNet-18 at Mammoth's settings (see the module docstring).

  Args:
    name: the experiment's name.
    description: its line for ``--help``.
    dataset: ``cifar10``, ``cifar100`` or ``tiny_imagenet``.
    epochs: epochs per task.
    mean: the dataset's per-channel means (Mammoth's ``Normalize``).
    std: its per-channel standard deviations.
    args: the methods' hyperparameters.
  """

  def stream(options: DataOptions):
    return standard_split_stream(load_datasets((dataset,), options)[0], options.scenario)

  methods = benchmark_methods(args)
  return Experiment(
    name=name,
    description=description,
    stream=stream,
    model=lambda stream: ResNet18(
      num_classes=stream.num_classes, width=64, mean=tuple(mean), std=tuple(std)
    ),
    loop=LoopConfig(
      batch_size=32,
      epochs=epochs,
      augment=True,
      evals_per_task=0,
      eval_batch_size=1000,
      steps_per_call=STEPS_PER_CALL,
      unroll=False,  # one rolled loop body: a ResNet step unrolled 26 times compiles slowly
      log_every=STEPS_PER_CALL,
    ),
    methods=methods,
    default_methods=("sgd", "er_500", "derpp_500", "classp_relative", "classp_relative+er_500"),
    quick=_quick,
    scenarios=("class", "task", "domain"),
    frontier={
      "sgd": _learning_rates(args.sgd),
      "er_500": _learning_rates(args.er[500]),
      "derpp_500": _learning_rates(args.derpp[500][0]),
      "classp_no_threshold": _learning_rates(CLASSP_LEARNING_RATE),
      "classp_relative": _learning_rates(CLASSP_LEARNING_RATE),
    },
  )
