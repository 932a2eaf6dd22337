"""``split_cifar10``: split CIFAR-10 on a ResNet-18, as Mammoth's ``seq-cifar10`` runs it.

CIFAR-10's classes in 5 tasks of 2 (airplane-automobile, bird-cat, ...), class-
incremental by default (one 10-way head; ``--set scenario=task`` masks it to each task's
two classes, ``scenario=domain`` shares a 2-way head). ResNet-18 (width 64), batch 32,
50 epochs per task, random crops and flips, SGD at Mammoth's learning rates
(`classp_jax.experiments.resnet_benchmarks` says what is shared and what differs from
Mammoth). The replay methods come with buffers of 200, 500 and 5120 examples.

Published numbers to check a reproduction against: the DER paper's Table 2 (Buzzega et
al., "Dark Experience for General Continual Learning: a Strong, Simple Baseline", NeurIPS
2020, https://arxiv.org/abs/2004.07211), row "Seq-CIFAR-10", columns Class-IL and Task-IL,
for ER and DER++ at buffers 200, 500 and 5120 (mean and standard deviation over 10 runs);
the same runs are Mammoth's ``--load_best_args`` settings. They are not restated here:
they could not be checked against the paper offline.

A run of every default method is 5 x 50 epochs of 10,000 images: on one modern GPU, tens
of minutes per method; on a CPU, days (``--quick`` is the CPU smoke test).
"""

from classp_jax.experiments.resnet_benchmarks import MammothArgs, resnet_experiment

# Mammoth's seq-cifar10 best_args (utils/best_args.py).
MAMMOTH_ARGS = MammothArgs(
  sgd=0.1,
  er={200: 0.1, 500: 0.1, 5120: 0.1},
  derpp={200: (0.03, 0.1, 0.5), 500: (0.03, 0.2, 0.5), 5120: (0.03, 0.1, 1.0)},
  agem={200: 0.03, 500: 0.03, 5120: 0.03},
  lwf=(0.01, 3.0),
  ewc_online=(0.03, 10.0),
  si=(0.03, 0.5, 1.0),
)

EXPERIMENT = resnet_experiment(
  name="split_cifar10",
  description="split CIFAR-10 (5 tasks x 2 classes) on a ResNet-18, Mammoth's seq-cifar10",
  dataset="cifar10",
  epochs=50,
  mean=(0.4914, 0.4822, 0.4465),
  std=(0.2470, 0.2435, 0.2615),
  args=MAMMOTH_ARGS,
)
