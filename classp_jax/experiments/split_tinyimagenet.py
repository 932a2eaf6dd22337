"""``split_tinyimagenet``: split Tiny-ImageNet on a ResNet-18, as Mammoth's ``seq-tinyimg``
runs it.

Tiny-ImageNet's 200 classes (64x64 images, 500 training and 50 validation images a class;
the validation set is the test set, as in the DER paper) in 10 tasks of 20, class-
incremental by default (``--set scenario=task`` or ``domain`` for the others). ResNet-18
(width 64; its global pool takes the last stage's 8x8), batch 32, 100 epochs per task
(the DER paper's; Mammoth's current default is 50), random crops and flips, SGD at
Mammoth's learning rates (see `classp_jax.experiments.resnet_benchmarks`). The replay
methods come with buffers of 200, 500 and 5120 examples.

Published numbers to check a reproduction against: the DER paper's Table 2 (Buzzega et
al., NeurIPS 2020, https://arxiv.org/abs/2004.07211), row "Seq-TinyImageNet", columns
Class-IL and Task-IL, for ER and DER++ at buffers 200, 500 and 5120 (Mammoth's
``--load_best_args``). They are not restated here: they could not be checked against the
paper offline.
"""

from classp_jax.experiments.resnet_benchmarks import MammothArgs, resnet_experiment

# Mammoth's seq-tinyimg best_args (utils/best_args.py).
MAMMOTH_ARGS = MammothArgs(
  sgd=0.03,
  er={200: 0.1, 500: 0.03, 5120: 0.1},
  derpp={200: (0.03, 0.1, 1.0), 500: (0.03, 0.2, 0.5), 5120: (0.03, 0.1, 0.5)},
  agem={200: 0.01, 500: 0.01, 5120: 0.01},
  lwf=(0.01, 1.0),
  ewc_online=(0.03, 25.0),
  si=(0.03, 0.5, 1.0),
)

EXPERIMENT = resnet_experiment(
  name="split_tinyimagenet",
  description="split Tiny-ImageNet (10 tasks x 20 classes) on a ResNet-18, Mammoth's seq-tinyimg",
  dataset="tiny_imagenet",
  epochs=100,
  mean=(0.4802, 0.4480, 0.3975),
  std=(0.2770, 0.2691, 0.2821),
  args=MAMMOTH_ARGS,
)
