"""Per-task CLASSP hyperparameters, and CLASSP on some layers only.

Two optax patterns over two tasks (the embedded 8x8 digits 0-4, then 5-9, on a
shared 5-way head), with the library's Linen MLP:

1. ``optax.inject_hyperparams(classp_jax.classp)``: the learning rate and the
   threshold live in the optimizer state, so a task boundary sets new values
   (here a threshold for task 2, so that small gradients leave the weights
   alone) and the jitted step never recompiles; the accumulator carries over.
2. ``optax.multi_transform``: CLASSP on the hidden layer, plain SGD on the
   output layer. ``classp_jax.capacity_used`` finds CLASSP's accumulator
   inside it. (Here the SGD output layer forgets task 1 much more than part 1,
   CLASSP everywhere, does.)

For each it prints, per task, the hyperparameters, the fraction of weights
updated by the task's last step, the capacity used, and the test accuracy on
both tasks.

Run from the project root (offline, under a minute on a 2-core CPU)::

    python examples/per_task_schedule.py            # 10 epochs per task
    python examples/per_task_schedule.py --quick    # 3 epochs per task (what the tests run)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import classp_jax
from classp_jax.data import load_dataset, split_stream
from classp_jax.models import MLP


def train(tasks, model, tx, *, epochs, seed, schedule=None, batch_size=32):
  """Trains the tasks in order; ``schedule[t]`` sets injected hyperparameters for task t."""
  params = model.init(jax.random.key(seed), tasks[0].train.inputs[:1], train=False)["params"]
  opt_state = tx.init(params)

  def loss_fn(params, inputs, labels):
    logits = model.apply({"params": params}, inputs, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(params, opt_state, inputs, labels):
    grads = jax.grad(loss_fn)(params, inputs, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, classp_jax.update_fraction(updates)

  @jax.jit
  def accuracy(params, inputs, labels):
    return jnp.mean(jnp.argmax(model.apply({"params": params}, inputs, train=False), -1) == labels)

  rng = np.random.default_rng(seed)
  for t, task in enumerate(tasks):
    if schedule is not None:
      # Same dtype and shape as before: the compiled step is reused as it is.
      for name, value in schedule[t].items():
        opt_state.hyperparams[name] = jnp.asarray(value, opt_state.hyperparams[name].dtype)
    x, y = jnp.asarray(task.train.inputs), jnp.asarray(task.train.labels)
    steps = len(y) // batch_size
    for _ in range(epochs):
      for batch in rng.permutation(len(y))[: steps * batch_size].reshape(steps, batch_size):
        params, opt_state, fraction = step(params, opt_state, x[batch], y[batch])
    accuracies = [float(accuracy(params, u.test.inputs, u.test.labels)) for u in tasks]
    capacity = classp_jax.capacity_used(opt_state)
    settings = ", ".join(f"{k} {v:g}" for k, v in (schedule or [{}] * len(tasks))[t].items())
    print(
      f"  after task {t + 1}{' (' + settings + ')' if settings else ''}: "
      f"last step updated {float(fraction.overall):.1%}, capacity used "
      f"{float(capacity.overall):.1%}, test accuracy task 1 {accuracies[0]:.3f}, "
      f"task 2 {accuracies[1]:.3f}"
    )
  return accuracies, step._cache_size(), capacity


def main(argv=None) -> dict[str, object]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="3 epochs per task instead of 10")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  epochs = 3 if args.quick else 10
  tasks = split_stream(load_dataset("digits"), 2).tasks
  model = MLP(num_classes=5, hidden=(128,))

  print("1. inject_hyperparams: a per-task threshold (any injected hyperparameter works alike)")
  tx = optax.inject_hyperparams(classp_jax.classp)(
    learning_rate=0.05, threshold=0.0, power=1.0, eps=1e-5
  )
  schedule = [{"threshold": 0.0}, {"threshold": 1e-5}]
  scheduled, compilations, _ = train(
    tasks, model, tx, epochs=epochs, seed=args.seed, schedule=schedule
  )
  print(f"  the step compiled {compilations} time(s) for both tasks")

  print("2. multi_transform: CLASSP on the hidden layer, SGD on the output layer")
  tx = optax.multi_transform(
    {
      "classp": classp_jax.classp(learning_rate=0.05, threshold=0.0, power=1.0, eps=1e-5),
      "sgd": optax.sgd(learning_rate=0.05),
    },
    param_labels={"Dense_0": "classp", "Dense_1": "sgd"},
  )
  mixed, _, capacity = train(tasks, model, tx, epochs=epochs, seed=args.seed)
  hidden = float(capacity.per_leaf["Dense_0"]["kernel"])
  print(f"  capacity used by CLASSP in the hidden layer's kernel: {hidden:.1%}")
  return {
    "scheduled": scheduled,
    "compilations": compilations,
    "mixed": mixed,
    "hidden_capacity": hidden,
  }


if __name__ == "__main__":
  main()
