"""EWC and SI in your own training loop: the library's regularizers as plain functions.

A regularizer is four functions over a pytree state (``classp_jax.Regularizer``):

* ``reg.init(params)``: the state, whose penalty is 0 before the first task;
* ``reg.penalty(state, params)``: a scalar to add to the loss (jittable);
* ``reg.accumulate(state, old_params, new_params, task_grads)``: after each
  step, with the gradients of the task loss alone (SI's path integral; EWC
  leaves the state as it is);
* ``reg.consolidate(state, params, classp_jax.ConsolidationContext(...))``:
  at the end of a task, on the host (EWC computes the Fisher here).

This script trains a hand-written JAX MLP (a dict of arrays) with a jitted
optax step over two tasks, the embedded 8x8 digits 0-4 and then 5-9 (each
task's digits labelled 0-4 on one shared 5-way head), three times: with no
penalty (EWC at strength 0: plain SGD), with EWC and with SI. It prints the
accuracy on task 1 after task 2 for each. It also calls
``classp_jax.fisher_diagonal`` directly and checks that EWC's importance after
task 1 is exactly that Fisher.

Any optax optimizer works in place of ``optax.sgd`` (``classp_jax.classp``
too: ``classp+ewc``).

Run from the project root (offline, under a minute on a 2-core CPU)::

    python examples/own_loop_ewc.py            # 10 epochs per task
    python examples/own_loop_ewc.py --quick    # 3 epochs per task (what the tests run)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import classp_jax
from classp_jax.data import load_dataset, split_stream


def init_mlp(key, sizes):
  keys = jax.random.split(key, len(sizes) - 1)
  return [
    {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
    for k, m, n in zip(keys, sizes[:-1], sizes[1:])
  ]


def apply_mlp(params, inputs):
  """Logits; the ``apply_fn(params, inputs)`` that consolidation needs."""
  x = inputs.reshape(inputs.shape[0], -1)
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def task_loss(params, inputs, labels):
  logits = apply_mlp(params, inputs)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_step(tx: optax.GradientTransformation, reg: classp_jax.Regularizer):
  """A jitted training step of any optax optimizer with any regularizer."""

  @jax.jit
  def step(params, opt_state, reg_state, inputs, labels):
    grads = jax.grad(task_loss)(params, inputs, labels)
    penalty_grads = jax.grad(reg.penalty, argnums=1)(reg_state, params)
    updates, opt_state = tx.update(jax.tree.map(jnp.add, grads, penalty_grads), opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # The task-loss gradients alone, as SI's path integral is defined.
    reg_state = reg.accumulate(reg_state, params, new_params, grads)
    return new_params, opt_state, reg_state

  return step


@jax.jit
def accuracy(params, inputs, labels):
  return jnp.mean(jnp.argmax(apply_mlp(params, inputs), -1) == labels)


def train_two_tasks(tasks, reg, *, epochs, seed, batch_size=32):
  """Trains the tasks in order; returns the params after each task and the regularizer state."""
  tx = optax.sgd(learning_rate=0.1)
  params = init_mlp(jax.random.key(seed), [8 * 8, 128, 5])
  opt_state, reg_state = tx.init(params), reg.init(params)
  step = make_step(tx, reg)
  rng = np.random.default_rng(seed)
  after_task = []
  for t, task in enumerate(tasks):
    x, y = jnp.asarray(task.train.inputs), jnp.asarray(task.train.labels)
    steps = len(y) // batch_size
    for _ in range(epochs):
      for batch in rng.permutation(len(y))[: steps * batch_size].reshape(steps, batch_size):
        params, opt_state, reg_state = step(params, opt_state, reg_state, x[batch], y[batch])
    after_task.append(params)
    if t + 1 == len(tasks):
      break  # no task follows that a consolidation would serve
    # The task is over: EWC computes its Fisher here, SI turns its path integral
    # into importances. Both anchor the next task's penalty at these params.
    reg_state = reg.consolidate(
      reg_state,
      params,
      classp_jax.ConsolidationContext(
        apply_fn=apply_mlp, inputs=x, labels=y, rng=jax.random.key(seed + t), task_index=t
      ),
    )
  return after_task, reg_state


def main(argv=None) -> dict[str, object]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="3 epochs per task instead of 10")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  epochs = 3 if args.quick else 10

  # Digits 0-4, then 5-9: each task's labels are 0-4 on a shared head.
  tasks = split_stream(load_dataset("digits"), 2).tasks
  test1 = (jnp.asarray(tasks[0].test.inputs), jnp.asarray(tasks[0].test.labels))
  test2 = (jnp.asarray(tasks[1].test.inputs), jnp.asarray(tasks[1].test.labels))

  regularizers = {
    "sgd (no penalty)": classp_jax.ewc(0.0),  # strength 0: the same loop, plain SGD
    "sgd+ewc": classp_jax.ewc(strength=100.0),
    "sgd+si": classp_jax.si(strength=0.3),
  }
  results = {}
  print(f"{'method':<17} {'task 1 after task 1':>19} {'task 1 after task 2':>19} {'task 2':>6}")
  for name, reg in regularizers.items():
    (params1, params2), reg_state = train_two_tasks(tasks, reg, epochs=epochs, seed=args.seed)
    before, after = float(accuracy(params1, *test1)), float(accuracy(params2, *test1))
    results[name] = after
    print(f"{name:<17} {before:19.3f} {after:19.3f} {float(accuracy(params2, *test2)):6.3f}")
    if name == "sgd+ewc":
      ewc_params1, ewc_state = params1, reg_state

  # The Fisher directly: the same numbers EWC consolidated after task 1.
  fisher = classp_jax.fisher_diagonal(
    apply_mlp, ewc_params1, jnp.asarray(tasks[0].train.inputs), kind="exact"
  )
  gap = max(
    float(jnp.max(jnp.abs(f - i)))
    for f, i in zip(jax.tree.leaves(fisher), jax.tree.leaves(ewc_state.importance))
  )
  print(
    "diagonal Fisher after task 1, mean per layer:",
    ", ".join(
      f"{layer} {float(v.mean()):.2e}"
      for layer, v in [
        ("w1", fisher[0]["w"]),
        ("b1", fisher[0]["b"]),
        ("w2", fisher[1]["w"]),
        ("b2", fisher[1]["b"]),
      ]
    ),
  )
  print(f"EWC's importance after task 1 equals it: max |difference| = {gap:.1e}")
  return {"task1_after_task2": results, "fisher_vs_ewc_importance": gap}


if __name__ == "__main__":
  main()
