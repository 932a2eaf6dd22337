"""Continual Backprop (Dohare et al., Nature 2024) as an optax transformation given activations.

Backprop's initial randomness is used once; Continual Backprop keeps injecting it: every
step, a small fraction of the mature hidden units whose contribution to the next layer is
lowest are reinitialised. :func:`reinit_low_utility_units` does the generate-and-test part
after any optimizer's update; :func:`continual_backprop` is it after SGD, as the paper runs
it.

It needs the hidden units' activations on the step's batch, as an extra argument of
``update``: ``tx.update(grads, state, params, activations=acts)``, with ``acts`` a mapping
from each hidden layer's name in ``params`` to its post-ReLU activations ``(N, ..., H)``
(units on the last axis: a dense layer's outputs, a convolution's channels). The models of
`classp_jax.models` sow them (`classp_jax.models.ACTIVATIONS`, `classp_jax.models.
unit_activations`), and the training engine passes them to a method that asks for them.

References:
  Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood and Sutton, `Loss of plasticity in deep
  continual learning <https://www.nature.com/articles/s41586-024-07711-7>`_, Nature 632,
  2024; their code: https://github.com/shibhansh/loss-of-plasticity.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from classp_jax.optimizer import _check

_REFERENCE = (
  "Dohare et al., `Loss of plasticity in deep continual learning"
  " <https://www.nature.com/articles/s41586-024-07711-7>`_, Nature 632, 2024;"
  " their code: https://github.com/shibhansh/loss-of-plasticity (``lop/algos/gnt.py``)."
)


class ContinualBackpropState(NamedTuple):
  """State of :func:`reinit_low_utility_units`; every field is a dict by hidden layer name.

  Attributes:
    key: the PRNG key of the next reinitialisation, raw key data (uint32).
    utility: each unit's running contribution utility (float32, ``(H,)``), not
      bias-corrected.
    age: each unit's steps since its (re)initialisation (int32, ``(H,)``).
    owed: each layer's replacements owed, a float32 scalar: ``rate * mature units``
      accumulates every step and the whole part is replaced.
  """

  key: jax.Array
  utility: dict[str, jax.Array]
  age: dict[str, jax.Array]
  owed: dict[str, jax.Array]


def _natural(name: str) -> list:
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def hidden_layer_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
  """Each hidden layer with the layer it feeds: the top-level entries of ``params`` that
  hold a ``kernel``, in natural order (``Dense_2`` before ``Dense_10``), paired in turn.

  >>> hidden_layer_pairs({"Dense_1": {"kernel": 0}, "Dense_0": {"kernel": 0}, "Dense_2":
  ...   {"kernel": 0}})
  [('Dense_0', 'Dense_1'), ('Dense_1', 'Dense_2')]
  """
  names = sorted((k for k, v in params.items() if "kernel" in v), key=_natural)
  return list(zip(names[:-1], names[1:]))


def _units(params, layer: str) -> int:
  return params[layer]["kernel"].shape[-1]


def _outgoing(kernel: jax.Array, units: int) -> jax.Array:
  """The next layer's kernel as ``(P, H, out)``: unit h's outgoing weights at ``[:, h]``.

  A dense kernel ``(H, out)`` is ``(1, H, out)``; a convolution's ``(kh, kw, H, out)`` is
  ``(kh * kw, H, out)``; a dense kernel after a flattened ``(h, w, H)`` feature map,
  ``(h * w * H, out)``, is ``(h * w, H, out)``.
  """
  return kernel.reshape(-1, units, kernel.shape[-1])


def _max_per_step(units: int) -> int:
  """At most this many units of a layer are replaced in one step (1% of them, at least 1):
  a static bound, so the step's shapes do not depend on the replacement rate."""
  return 1 + units // 100


def _replace_layer(layer, following, p, u, acts, state, key, rate, maturity, decay, init):
  """One hidden layer's utility update and replacements; returns (u, layer's state)."""
  units = _units(p, layer)
  h = jnp.abs(jnp.asarray(acts, jnp.float32)).reshape(-1, units).mean(0)
  out_kernel = _outgoing(p[following]["kernel"] + u[following]["kernel"], units)
  contribution = h * jnp.sum(jnp.abs(out_kernel.astype(jnp.float32)), axis=(0, 2))
  decay = jnp.asarray(decay, jnp.float32)
  utility = decay * state.utility[layer] + (1 - decay) * contribution
  age = state.age[layer] + 1
  corrected = utility / (1 - decay ** age.astype(jnp.float32))
  mature = age > maturity
  owed = state.owed[layer] + jnp.asarray(rate, jnp.float32) * jnp.sum(mature, dtype=jnp.float32)
  k = _max_per_step(units)
  count = jnp.minimum(jnp.floor(owed), k)
  owed = owed - count
  parts = (u[layer], u[following]["kernel"], jnp.zeros(units, bool))

  def replace(parts):
    """The chosen units' new incoming weights, zero bias and zero outgoing weights."""
    u_layer, u_next, _ = parts
    _, index = jax.lax.top_k(-jnp.where(mature, corrected, jnp.inf), k)
    chosen = (jnp.arange(k) < count) & mature[index]
    incoming = p[layer]["kernel"]
    fresh = init(key, (*incoming.shape[:-1], k), incoming.dtype)
    column = u_layer["kernel"][..., index]
    u_layer = {
      **u_layer,
      "kernel": u_layer["kernel"]
      .at[..., index]
      .set(jnp.where(chosen, fresh - incoming[..., index], column)),
    }
    if "bias" in u_layer:
      bias = u_layer["bias"][index]
      u_layer["bias"] = (
        u_layer["bias"].at[index].set(jnp.where(chosen, -p[layer]["bias"][index], bias))
      )
    outgoing = _outgoing(p[following]["kernel"], units)
    u_out = _outgoing(u_next, units)
    u_out = u_out.at[:, index].set(
      jnp.where(chosen[None, :, None], -outgoing[:, index], u_out[:, index])
    )
    reset = jnp.zeros(units, bool).at[index].set(chosen)
    return u_layer, u_out.reshape(u_next.shape), reset

  # Most steps replace nothing (one unit every ~40 steps at the paper's rate): skip the work.
  u_layer, u_next, reset = jax.lax.cond(count > 0, replace, lambda parts: parts, parts)
  u = {**u, layer: u_layer, following: {**u[following], "kernel": u_next}}
  return u, (jnp.where(reset, 0.0, utility), jnp.where(reset, 0, age), owed)


def reinit_low_utility_units(
  replacement_rate: float | jax.Array = 1e-4,
  maturity_threshold: int | jax.Array = 100,
  utility_decay: float | jax.Array = 0.99,
  seed: int | jax.Array = 0,
  *,
  layers: Sequence[tuple[str, str]] | None = None,
  kernel_init: Callable | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Continual Backprop's generate-and-test: reinitialise mature units of low utility.

  After the incoming update :math:`u` (``params + u`` are the stepped params
  :math:`w'`), for each hidden layer with units :math:`h_i` and outgoing weights
  :math:`w'_{i,k}` to the next layer:

  .. math::

    U_i \leftarrow \eta U_i + (1 - \eta)\, \overline{|h_i|} \sum_k |w'_{i,k}|, \qquad
    \hat U_i = \frac{U_i}{1 - \eta^{a_i}}, \qquad a_i \leftarrow a_i + 1,

  :math:`\overline{|h_i|}` the mean over the batch (and a channel's positions). Units of
  age :math:`a_i` above the maturity threshold :math:`m` are mature; each step adds
  ``replacement_rate`` times their number to the layer's owed replacements, and the whole
  part of it is replaced now: the owed number of mature units of lowest :math:`\hat U_i`
  (at most 1% of the layer's units per step; the rest stays owed). A replaced unit gets
  new incoming weights drawn from ``kernel_init``, a zero bias, zero outgoing weights (so
  the network's function does not change), and utility and age 0.

  This is the paper's contribution utility with the reference code's deterministic
  accumulation of replacements (``accumulate=True``). The code's correction of the next
  layer's bias by the unit's mean activation reads that mean after zeroing it, so it adds
  nothing; it is left out here. The update of every weight not replaced is the incoming one,
  bit for bit. The inner optimizer's state (e.g. Adam's moments) is not reset for the
  replaced weights (the reference code resets Adam's); with SGD there is none.

  Args:
    replacement_rate: the fraction of mature units replaced per step, ``>= 0`` (the
      paper's :math:`\rho`, about 1e-4).
    maturity_threshold: :math:`m`, the steps a unit is protected after its
      (re)initialisation (the paper's permuted MNIST: 100).
    utility_decay: :math:`\eta \in [0, 1)`, the utility's running-average decay.
    seed: an integer seeding the new weights (read by ``init`` only).
    layers: ``(hidden layer, next layer)`` names of ``params``' top-level entries; None:
      `hidden_layer_pairs` (every layer holding a ``kernel`` feeds the next, as in
      `classp_jax.models.MLP` and `classp_jax.models.PaperCNN`).
    kernel_init: a ``jax.nn.initializers`` initializer of the new incoming weights
      (drawn as ``(..., fan_in, k)`` for ``k`` units); None: LeCun normal, Flax's
      default for ``Dense`` and ``Conv``.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ContinualBackpropState`. ``update`` needs ``params`` and the keyword
    ``activations``.

  Raises:
    ValueError: for concrete ``replacement_rate < 0``, ``maturity_threshold < 0`` or
      ``utility_decay`` outside ``[0, 1)``; at ``update``, no ``params`` or no
      activations of a hidden layer.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from classp_jax.continual_backprop import reinit_low_utility_units
    >>> params = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
    ...           "Dense_1": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(1)}}
    >>> tx = reinit_low_utility_units(replacement_rate=0.5, maturity_threshold=0)
    >>> zero = {k: {n: jnp.zeros_like(v) for n, v in d.items()} for k, d in params.items()}
    >>> h = jnp.array([[1.0, 0.0, 2.0]])  # unit 1 contributes nothing
    >>> u, state = tx.update(zero, tx.init(params), params, activations={"Dense_0": h})
    >>> print(np.asarray(u["Dense_1"]["kernel"] + 1).ravel())  # its outgoing weight is 0
    [1. 0. 1.]

  References:
    {reference}
  """
  _check("replacement_rate", replacement_rate, lambda v: v >= 0, ">= 0")
  _check("maturity_threshold", maturity_threshold, lambda v: v >= 0, ">= 0")
  _check("utility_decay", utility_decay, lambda v: (v >= 0) & (v < 1), "in [0, 1)")
  init = kernel_init or jax.nn.initializers.lecun_normal()

  def pairs(params):
    return list(layers) if layers is not None else hidden_layer_pairs(params)

  def init_fn(params):
    hidden = [layer for layer, _ in pairs(params)]
    return ContinualBackpropState(
      key=jax.random.key_data(jax.random.key(seed)),
      utility={n: jnp.zeros(_units(params, n), jnp.float32) for n in hidden},
      age={n: jnp.zeros(_units(params, n), jnp.int32) for n in hidden},
      owed={n: jnp.zeros([], jnp.float32) for n in hidden},
    )

  def update_fn(updates, state, params=None, *, activations=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("Continual Backprop needs the params: call update(updates, state, params).")
    found = pairs(params)
    missing = [layer for layer, _ in found if activations is None or layer not in activations]
    if missing:
      raise ValueError(
        f"Continual Backprop needs the activations of {', '.join(missing)}: call "
        "update(..., activations={layer: post-ReLU activations})"
      )
    key, *keys = jax.random.split(jax.random.wrap_key_data(state.key), len(found) + 1)
    utility, age, owed = dict(state.utility), dict(state.age), dict(state.owed)
    for (layer, following), layer_key in zip(found, keys):
      acts = activations[layer]
      acts = acts[0] if isinstance(acts, tuple) else acts
      updates, (utility[layer], age[layer], owed[layer]) = _replace_layer(
        layer,
        following,
        params,
        updates,
        acts,
        state,
        layer_key,
        replacement_rate,
        maturity_threshold,
        utility_decay,
        init,
      )
    return updates, ContinualBackpropState(jax.random.key_data(key), utility, age, owed)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def continual_backprop(
  learning_rate: optax.ScalarOrSchedule,
  replacement_rate: float | jax.Array = 1e-4,
  maturity_threshold: int | jax.Array = 100,
  utility_decay: float | jax.Array = 0.99,
  seed: int | jax.Array = 0,
  *,
  layers: Sequence[tuple[str, str]] | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Continual Backprop: SGD, then :func:`reinit_low_utility_units` every step.

  .. math::

    w \leftarrow w - \alpha g, \quad \text{then reinitialise} \lceil\rho \cdot
    \text{mature units}\rceil \text{ of lowest utility per layer (accumulated)}.

  All numeric knobs may be injected with ``optax.inject_hyperparams``; ``update`` needs
  ``params`` and ``activations`` (see the module docstring).

  Args:
    learning_rate: :math:`\alpha`, a scalar or a schedule.
    replacement_rate: :math:`\rho`, the fraction of mature units replaced per step.
    maturity_threshold: the steps a new unit is protected.
    utility_decay: the utility's running-average decay.
    seed: an integer seeding the new weights.
    layers: ``(hidden layer, next layer)`` pairs; None: every kernel layer feeds the next.

  Returns:
    ``optax.sgd(learning_rate) -> reinit_low_utility_units(...)`` as an
    :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from classp_jax.continual_backprop import continual_backprop
    >>> params = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
    ...           "Dense_1": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(1)}}
    >>> tx = continual_backprop(0.1)  # no unit is mature yet: plain SGD
    >>> grads = {k: {n: jnp.ones_like(v) for n, v in d.items()} for k, d in params.items()}
    >>> h = jnp.ones((4, 3))
    >>> u, _ = tx.update(grads, tx.init(params), params, activations={"Dense_0": h})
    >>> print(np.asarray(u["Dense_1"]["kernel"]).ravel())
    [-0.1 -0.1 -0.1]

  References:
    {reference}
  """
  _check("learning_rate", learning_rate, lambda v: True, "finite")
  return optax.chain(
    optax.sgd(learning_rate),
    reinit_low_utility_units(
      replacement_rate, maturity_threshold, utility_decay, seed, layers=layers
    ),
  )


for _f in (reinit_low_utility_units, continual_backprop):
  _f.__doc__ = _f.__doc__.replace("{reference}", _REFERENCE)
del _f
