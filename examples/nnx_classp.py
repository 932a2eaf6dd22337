"""CLASSP as the optimizer of a Flax NNX training loop.

Trains an ``nnx.Module`` MLP on the embedded 8x8 digits (scikit-learn's, no
download) with ``nnx.Optimizer(model, classp_jax.classp(...), wrt=nnx.Param)``,
a plain NNX loop like any other. After each epoch it prints the test accuracy,
the fraction of weights the epoch's last step updated
(``classp_jax.update_fraction`` of the updates ``optimizer.update`` returns;
the threshold leaves small gradients unapplied) and the fraction CLASSP has
ever updated (``classp_jax.capacity_used`` of the optimizer state: the
capacity left for later tasks is the rest). It needs flax >= 0.12.7, whose
``nnx.Optimizer.update(model, grads)`` returns the updates.

Run from the project root (offline, under a minute on a 2-core CPU)::

    python examples/nnx_classp.py            # 10 epochs
    python examples/nnx_classp.py --quick    # 2 epochs (what the tests run)
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import classp_jax
from classp_jax.data import load_dataset


class MLP(nnx.Module):
  """A ReLU MLP on flattened images."""

  def __init__(self, num_inputs: int, hidden: int, num_classes: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(num_inputs, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.hidden(x)))


@nnx.jit
def train_step(model, optimizer, images, labels):
  """One CLASSP step; returns the loss and the fraction of weights it moved."""

  def loss_fn(model):
    logits = model(images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  updates = optimizer.update(model, grads)
  return loss, classp_jax.update_fraction(updates).overall


@nnx.jit
def accuracy(model, images, labels):
  return jnp.mean(jnp.argmax(model(images), -1) == labels)


def main(argv=None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="2 epochs instead of 10")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  epochs, batch_size = (2 if args.quick else 10), 32

  digits = load_dataset("digits")  # uint8 (N, 8, 8, 1), labels 0-9
  train_x = digits.train.inputs.astype(np.float32) / 255
  test_x = digits.test.inputs.astype(np.float32) / 255
  train_y, test_y = digits.train.labels, digits.test.labels

  model = MLP(8 * 8, 128, digits.num_classes, rngs=nnx.Rngs(args.seed))
  # Every hyperparameter explicit: the threshold is on g**2 of the mean-reduced loss.
  tx = classp_jax.classp(learning_rate=0.05, threshold=1e-6, power=1.0, eps=1e-5)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  rng = np.random.default_rng(args.seed)
  steps_per_epoch = len(train_y) // batch_size
  print(f"{'epoch':>5} {'loss':>7} {'test acc':>8} {'updated':>8} {'capacity':>8}")
  for epoch in range(1, epochs + 1):
    order = rng.permutation(len(train_y))[: steps_per_epoch * batch_size]
    for batch in order.reshape(steps_per_epoch, batch_size):
      loss, fraction = train_step(model, optimizer, train_x[batch], train_y[batch])
    test_accuracy = float(accuracy(model, test_x, test_y))
    capacity = float(classp_jax.capacity_used(optimizer.opt_state).overall)
    print(
      f"{epoch:5d} {float(loss):7.4f} {test_accuracy:8.3f} {float(fraction):8.3f} {capacity:8.3f}"
    )
  print(
    f"test accuracy {test_accuracy:.3f} (chance 0.1); the last step updated "
    f"{float(fraction):.1%} of the weights; CLASSP has updated {capacity:.1%} of them"
  )
  return {"accuracy": test_accuracy, "update_fraction": float(fraction), "capacity_used": capacity}


if __name__ == "__main__":
  main()
