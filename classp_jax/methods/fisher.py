"""Diagonal Fisher information from per-example gradients.

Everything here is one pattern: per example, a few vector-Jacobian products
of the logits with chosen cotangents (the "rows"), and a float32 mean over
examples of an elementwise function (square, or absolute value) of the
resulting per-example gradients. Two engines compute it, picked automatically:

* The **layer path** covers Flax models whose parameters all belong to
  ``flax.linen.Dense`` layers with 2-D inputs (batch, features) and
  ``flax.linen.Conv`` layers (any strides, kernel dilation and zero padding;
  no feature groups, input dilation or mask), joined by parameter-free
  operations (activations, pooling, reshapes, dropout in eval mode): the
  paper's CNN and the MLP. Per chunk it runs one forward pass, shared by all
  rows, and one backward pass per row down to each layer's output only (its
  cotangent ``delta``), never to the weights. A dense layer's per-example
  weight gradient is ``outer(a_n, delta_n)`` for its input ``a_n``, so the
  sum over examples of its squares is ``(a**2).T @ (delta**2)`` and of its
  absolute values ``|a|.T @ |delta|``: one matmul. A convolution's is
  ``patches_n.T @ delta_n`` over the example's im2col patches, one batched
  matmul, squared or made absolute per example.
* The **general path** covers any ``apply_fn``: ``jax.vmap`` over examples
  of the VJP of the whole model, one call per row.

Both assume what the per-example gradients mean: an example's logits depend
on that example alone (no batch statistics: a BatchNorm model in eval mode, on
its running statistics, qualifies; `classp_jax.models.ResNet18` takes the
general path). Examples are processed in chunks
of ``batch_size``, so memory grows with the chunk, not with the data set. The
last chunk is padded and its padding gets zero cotangents, so it contributes
exactly nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from classp_jax.mesh import compiler_options, data_mesh

Params = Any

FISHER_KINDS = ("exact", "empirical", "sampled")
PATHS = ("auto", "fast", "general")


def _exact_cotangents(logits, label, key):
  """Rows ``sqrt(p_c) (e_c - p)`` for every class c.

  ``e_c - p`` is the gradient of ``log p_c`` with respect to the logits, so the
  squared VJPs summed over the rows are ``sum_c p_c (grad log p_c)^2``, with p
  held constant (the stop-gradient on the weights).
  """
  del label, key
  probs = jax.nn.softmax(logits)
  return jnp.sqrt(probs)[:, None] * (jnp.eye(probs.shape[0]) - probs)


def _label_cotangent(logits, label):
  return (jax.nn.one_hot(label, logits.shape[0]) - jax.nn.softmax(logits))[None]


def _empirical_cotangents(logits, label, key):
  del key
  return _label_cotangent(logits, label)


def _sampled_cotangents(logits, label, key):
  del label
  return _label_cotangent(logits, jax.random.categorical(key, logits))


def _output_norm_cotangents(logits, label, key):
  """Gradient of ``||logits||_2^2`` with respect to the logits (for MAS)."""
  del label, key
  return (2.0 * logits)[None]


_COTANGENTS = {
  "exact": _exact_cotangents,
  "empirical": _empirical_cotangents,
  "sampled": _sampled_cotangents,
  "output_norm": _output_norm_cotangents,
}
_ELEMENTWISE = {"square": jnp.square, "abs": jnp.abs}


def _chunk_cotangents(apply_fn, params, inputs, labels, keys, valid, *, cotangents):
  """Logit cotangents (batch, rows, C) of a chunk; zero for padding."""
  logits = apply_fn(params, inputs)
  return _masked_cotangents(logits, labels, keys, valid, cotangents)


def _masked_cotangents(logits, labels, keys, valid, cotangents):
  u = jax.vmap(_COTANGENTS[cotangents])(logits.astype(jnp.float32), labels, keys)
  return jnp.where(valid[:, None, None], u, 0.0).astype(logits.dtype)


def _accumulate_row(apply_fn, params, total, inputs, u_row, *, elementwise):
  """General path: adds ``sum_n elementwise(VJP_n(u_row[n]))`` to total."""
  elementwise_fn = _ELEMENTWISE[elementwise]

  def example_grads(x, u):
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x[None])[0], params)
    return vjp_fn(u)[0]

  grads = jax.vmap(example_grads)(inputs, u_row)
  return jax.tree.map(
    lambda t, g: t + jnp.sum(elementwise_fn(g.astype(jnp.float32)), 0),
    total,
    grads,
  )


class _Layer(NamedTuple):
  """A layer the fast path covers, as static (hashable) facts.

  ``kernel`` and ``bias`` index the flattened params (``bias`` is None
  without one); ``conv`` is None for a dense layer, else ``(kernel_size,
  strides, kernel_dilation, pads)`` with explicit ``(low, high)`` pads.
  """

  kernel: int
  bias: int | None
  conv: tuple | None
  out_shape: tuple[int, ...]
  out_dtype: Any


def _has_defaults(module, names):
  defaults = {f.name: f.default for f in dataclasses.fields(module)}
  return all(getattr(module, name) is defaults[name] for name in names)


def _tuple(value, rank):
  value = 1 if value is None else value
  return (value,) * rank if isinstance(value, int) else tuple(value)


def _conv_config(module, inputs):
  """``_Layer.conv`` of a covered ``nn.Conv`` call, or None."""
  kernel_size = _tuple(module.kernel_size, 1)
  rank = len(kernel_size)
  strides = _tuple(module.strides, rank)
  dilation = _tuple(module.kernel_dilation, rank)
  if (
    inputs.ndim != rank + 2
    or module.feature_group_count != 1
    or _tuple(module.input_dilation, rank) != (1,) * rank
    or not _has_defaults(
      module, ("mask", "conv_general_dilated", "conv_general_dilated_cls", "promote_dtype")
    )
  ):
    return None
  pads = nn.linear.canonicalize_padding(module.padding, rank)
  if isinstance(pads, str):
    if pads not in ("SAME", "SAME_LOWER", "VALID"):
      return None  # CIRCULAR, REFLECT, CAUSAL pad by copying inputs
    pads = lax.padtype_to_pads(
      inputs.shape[1:-1],
      [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)],
      strides,
      pads,
    )
  return kernel_size, strides, dilation, tuple(map(tuple, pads))


def _match(context, args, kwargs, out, leaf_ids, batch):
  """The `_Layer` of an intercepted module call, or None if not covered."""
  module = context.module
  inputs = args[0] if args else kwargs.get("inputs")
  if (
    context.method_name != "__call__"
    or type(module) not in (nn.Dense, nn.Conv)
    or not hasattr(inputs, "ndim")
    or inputs.shape[:1] != (batch,)
    or out.shape[:1] != (batch,)
  ):
    return None
  if type(module) is nn.Dense:
    conv = None
    if inputs.ndim != 2 or not _has_defaults(
      module, ("dot_general", "dot_general_cls", "promote_dtype")
    ):
      return None
  else:
    conv = _conv_config(module, inputs)
    if conv is None:
      return None
  variables = module.variables.get("params", {})
  names = ("kernel", "bias") if module.use_bias else ("kernel",)
  if set(variables) != set(names):
    return None
  index = [leaf_ids.get(id(variables[name])) for name in names]
  if None in index:
    return None  # not a leaf of apply_fn's params as given (e.g. a cast)
  return _Layer(
    index[0], index[1] if module.use_bias else None, conv, out.shape, np.dtype(out.dtype)
  )


def _leaf_ids(params):
  return {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(params))}


def _find_layers(apply_fn, params, inputs):
  """``apply_fn``'s covered layers in call order, if they hold every param.

  Traces (no compute) ``apply_fn`` under `flax.linen.intercept_methods`.
  Returns None, for the general path, if any parameter leaf is outside a
  covered layer or used by two calls, or if nothing is a Flax layer.
  """
  found = []

  def trace(params, inputs):
    leaf_ids = _leaf_ids(params)

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      layer = _match(context, args, kwargs, out, leaf_ids, inputs.shape[0])
      if layer is not None:
        found.append(layer)
      return out

    with nn.intercept_methods(interceptor):
      return apply_fn(params, inputs)

  logits = jax.eval_shape(trace, params, inputs)
  covered = sorted(i for layer in found for i in (layer.kernel, layer.bias) if i is not None)
  if (
    covered != list(range(len(jax.tree.leaves(params))))
    or logits.shape[:1] != inputs.shape[:1]
    or len(logits.shape) != 2
  ):
    return None
  return tuple(found)


def _patches(a, out_spatial, kernel_size, strides, dilation, pads):
  """im2col of NHWC-style ``a``: (batch, positions, prod(kernel_size) * C_in).

  The last axis is ordered (kernel offsets, C_in), like the rows of a
  flattened (*kernel_size, C_in, C_out) kernel.
  """
  a = lax.pad(
    a, jnp.zeros((), a.dtype), [(0, 0, 0), *((low, high, 0) for low, high in pads), (0, 0, 0)]
  )
  windows = []
  for offset in itertools.product(*(range(k) for k in kernel_size)):
    start = [o * d for o, d in zip(offset, dilation)]
    limit = [s + (n - 1) * st + 1 for s, n, st in zip(start, out_spatial, strides)]
    windows.append(
      lax.slice(a, (0, *start, 0), (a.shape[0], *limit, a.shape[-1]), (1, *strides, 1))
    )
  patches = jnp.stack(windows, -2)
  return patches.reshape(a.shape[0], math.prod(out_spatial), -1)


def _layer_statistic(layer, a, delta, elementwise_fn):
  """Sums over rows and examples of ``elementwise_fn`` of the layer's
  per-example gradients, for inputs ``a`` (batch, ...) and output cotangents
  ``delta`` (rows, batch, ...): (kernel, bias)."""
  a = a.astype(jnp.float32)
  delta = delta.astype(jnp.float32)
  if layer.conv is None:
    # g_n = outer(a_n, delta_n), and |x y| = |x| |y|, (x y)^2 = x^2 y^2.
    d = jnp.sum(elementwise_fn(delta), 0)
    return elementwise_fn(a).T @ d, jnp.sum(d, 0)
  kernel_size, strides, dilation, pads = layer.conv
  rows, batch, features = delta.shape[0], delta.shape[1], delta.shape[-1]
  patches = _patches(a, delta.shape[2:-1], kernel_size, strides, dilation, pads)
  # (batch, positions, rows * features): every row in one batched matmul.
  d = jnp.moveaxis(delta.reshape(rows, batch, -1, features), 0, 2).reshape(
    batch, patches.shape[1], rows * features
  )
  grads = jnp.einsum("npk,npm->nkm", patches, d)
  kernel = jnp.sum(elementwise_fn(grads), 0).reshape(-1, rows, features)
  bias = jnp.sum(elementwise_fn(jnp.sum(d, 1)), 0).reshape(rows, features)
  return (kernel.sum(1).reshape(*kernel_size, a.shape[-1], features), bias.sum(0))


def _fast_chunk(
  apply_fn, layers, params, total, inputs, labels, keys, valid, *, cotangents, elementwise
):
  """Fast path: adds a chunk's sums of ``elementwise`` per-example grads."""

  def forward(probes):
    # A zero probe added to each layer's output: the VJP with respect to it
    # is the layer's output cotangent, per example.
    leaf_ids = _leaf_ids(params)
    layer_inputs = []

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      layer = _match(context, args, kwargs, out, leaf_ids, inputs.shape[0])
      if layer is None:
        return out
      index = len(layer_inputs)
      if layers[index : index + 1] != (layer,):
        raise RuntimeError("apply_fn called different layers than traced.")
      layer_inputs.append(args[0] if args else kwargs["inputs"])
      return out + probes[index]

    with nn.intercept_methods(interceptor):
      return apply_fn(params, inputs), layer_inputs

  probes = [jnp.zeros(layer.out_shape, layer.out_dtype) for layer in layers]
  logits, vjp_fn, layer_inputs = jax.vjp(forward, probes, has_aux=True)
  u = _masked_cotangents(logits, labels, keys, valid, cotangents)
  (deltas,) = jax.vmap(vjp_fn, in_axes=1)(u)
  elementwise_fn = _ELEMENTWISE[elementwise]
  leaves, treedef = jax.tree.flatten(total)
  for layer, a, delta in zip(layers, layer_inputs, deltas):
    kernel, bias = _layer_statistic(layer, a, delta, elementwise_fn)
    leaves[layer.kernel] = leaves[layer.kernel] + kernel
    if layer.bias is not None:
      leaves[layer.bias] = leaves[layer.bias] + bias
  return treedef.unflatten(leaves)


class _Jitted(NamedTuple):
  chunk_cotangents: Callable
  accumulate_row: Callable
  fast_chunk: Callable


@functools.cache
def _jitted(compiler_options: tuple | None) -> _Jitted:
  jit = functools.partial(
    jax.jit,
    compiler_options=None if compiler_options is None else dict(compiler_options),
  )
  # ``apply_fn`` is a `jax.tree_util.Partial`: its function is static (part of the
  # tree's structure), its bound arguments (e.g. BatchNorm statistics) are traced.
  return _Jitted(
    jit(_chunk_cotangents, static_argnames=("cotangents",)),
    jit(_accumulate_row, static_argnames=("elementwise",), donate_argnames="total"),
    jit(
      _fast_chunk,
      static_argnames=("layers", "cotangents", "elementwise"),
      donate_argnames="total",
    ),
  )


def _as_tree(apply_fn: Callable) -> jax.tree_util.Partial:
  """``apply_fn`` as a pytree argument of jitted code: a `jax.tree_util.Partial` as it
  is, any other callable as a `Partial` of itself with no arguments (static, compiled
  once per callable object, as before)."""
  if isinstance(apply_fn, jax.tree_util.Partial):
    return apply_fn
  return jax.tree_util.Partial(apply_fn)


def _compiler_options() -> tuple | None:
  """The training step's XLA options for the default device, hashable."""
  options = compiler_options(data_mesh(jax.devices()[:1]))
  return None if options is None else tuple(sorted(options.items()))


def mean_per_example_statistic(
  apply_fn: Callable[[Params, jax.Array], jax.Array],
  params: Params,
  inputs: jax.Array,
  *,
  cotangents: str,
  elementwise: str,
  labels: jax.Array | None = None,
  rng: jax.Array | None = None,
  batch_size: int = 32,
  path: str = "auto",
) -> Params:
  """Shared engine of `fisher_diagonal` and the MAS importance.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``; a `jax.tree_util.Partial`'s
      bound arguments are traced, not compiled in.
    params: the parameters.
    inputs: array of shape (N, ...).
    cotangents: ``"exact"``, ``"empirical"``, ``"sampled"`` or
      ``"output_norm"``: which logit cotangents to pull back per example.
    elementwise: ``"square"`` or ``"abs"``, applied to each per-example
      gradient before the mean.
    labels: int labels (N,), used by ``"empirical"``.
    rng: PRNG key, used by ``"sampled"``.
    batch_size: examples per chunk (clipped to N).
    path: ``"auto"`` (the fast layer path where it covers the model, see the
      module docstring), ``"fast"`` (raise if it does not) or ``"general"``.

  Returns:
    float32 pytree shaped like ``params``.

  Raises:
    ValueError: for empty ``inputs``, a bad ``batch_size``, ``labels`` or
      ``path``, or ``path="fast"`` on a model it does not cover.
  """
  num_examples = inputs.shape[0]
  if num_examples == 0:
    raise ValueError("inputs holds no examples.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if path not in PATHS:
    raise ValueError(f"path must be one of {PATHS}, got {path!r}.")
  if labels is None:
    labels = jnp.zeros((num_examples,), jnp.int32)
  elif labels.shape != (num_examples,):
    raise ValueError(f"labels must have shape ({num_examples},), got {labels.shape}.")
  keys = jax.random.split(jax.random.key(0) if rng is None else rng, num_examples)
  batch_size = min(batch_size, num_examples)
  apply_fn = _as_tree(apply_fn)
  layers = None if path == "general" else _find_layers(apply_fn, params, inputs[:batch_size])
  if path == "fast" and layers is None:
    raise ValueError("the fast path does not cover this apply_fn's layers.")
  jitted = _jitted(_compiler_options())
  # A host loop over chunks of one compiled shape (the last chunk is padded
  # by repeating examples, and masked): XLA:CPU ran the same body ~2.5x
  # slower inside a lax.scan.
  padded = np.arange(-(-num_examples // batch_size) * batch_size)
  total = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  for start in range(0, padded.size, batch_size):
    chunk = padded[start : start + batch_size]
    index = chunk % num_examples
    x = inputs[index]
    if layers is not None:
      total = jitted.fast_chunk(
        apply_fn,
        layers,
        params,
        total,
        x,
        labels[index],
        keys[index],
        chunk < num_examples,
        cotangents=cotangents,
        elementwise=elementwise,
      )
      continue
    u = jitted.chunk_cotangents(
      apply_fn,
      params,
      x,
      labels[index],
      keys[index],
      chunk < num_examples,
      cotangents=cotangents,
    )
    # One call per cotangent row (C rows for "exact", redoing the forward
    # pass): inside one compiled function XLA kept all C rows' per-example
    # gradients alive at once (C times the memory), and a lax.scan over rows
    # ran ~3x slower on XLA:CPU.
    for k in range(u.shape[1]):
      total = jitted.accumulate_row(apply_fn, params, total, x, u[:, k], elementwise=elementwise)
  return jax.tree.map(lambda t: t / num_examples, total)


def _check_labels(labels: jax.Array, num_classes: int) -> None:
  """Labels outside the model's classes would index no logit and give a plausible, wrong
  Fisher: refused."""
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}.")
  if labels.size and not 0 <= int(jnp.min(labels)) <= int(jnp.max(labels)) < num_classes:
    raise ValueError(
      f"labels must be class indices in [0, {num_classes}) for this model's {num_classes} "
      f"outputs, got values from {int(jnp.min(labels))} to {int(jnp.max(labels))}."
    )


def fisher_diagonal(
  apply_fn: Callable[[Params, jax.Array], jax.Array],
  params: Params,
  inputs: jax.Array,
  *,
  kind: str = "exact",
  labels: jax.Array | None = None,
  rng: jax.Array | None = None,
  batch_size: int = 32,
) -> Params:
  r"""Diagonal of the Fisher information of a softmax classifier.

  For examples :math:`x_n`, :math:`n = 1..N`, and class probabilities
  :math:`p(c \mid x) = \mathrm{softmax}(\mathrm{apply\_fn}(\theta, x))_c`,

  .. math::

    F = \frac{1}{N} \sum_n \mathbb{E}_{y \sim q_n}
        \left[ (\nabla_\theta \log p(y \mid x_n))^2 \right]

  (squares elementwise), where :math:`q_n` depends on ``kind``:

  * ``"exact"``: the model's own predictive distribution, summed over all
    classes, :math:`\sum_c p(c \mid x_n) (\nabla \log p(c \mid x_n))^2`, with
    the weights :math:`p(c \mid x_n)` held constant (no gradient through them).
    Costs C gradient computations per example (C classes).
  * ``"sampled"``: one label :math:`y_n \sim p(\cdot \mid x_n)`, an unbiased
    one-sample estimate of ``"exact"``.
  * ``"empirical"``: the true label :math:`y_n` (the "empirical Fisher"; not
    the Fisher of the model, see Kunstner et al. 2019).

  The gradients are of the log-likelihood alone, per example (a mean of
  squares, not the square of a mini-batch mean). Pass an eval-mode
  ``apply_fn`` (dropout off). Accumulation is in float32 whatever the dtype of
  ``params``.

  Fast layers: when every parameter belongs to a ``flax.linen.Dense`` with
  2-D inputs or a ``flax.linen.Conv`` (zero padding, no feature groups, input
  dilation or mask), as in the paper's CNN and the MLP, the per-example
  gradients come from each layer's inputs and output cotangents, with one
  forward pass per chunk for all classes (see the module docstring); any other
  model, e.g. one with attention, embeddings or normalisation, or a plain
  function, takes the general ``jax.vmap`` path, automatically. Peak memory
  grows with ``batch_size`` (times the parameter count on the general path,
  times the activations and C on the fast path), independent of N. Compiled
  once per ``apply_fn`` object and chunk shape: pass the same callable each
  time to reuse the compilation, or a `jax.tree_util.Partial` of one function
  whose bound arguments change (a model's BatchNorm statistics, as the
  training engine's `ConsolidationContext.apply_fn` is): they are traced.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> apply_fn = lambda w, x: x @ w
    >>> w = jnp.zeros((3, 2))  # uniform predictions: p = 1/2
    >>> fisher = fisher_diagonal(apply_fn, w, jnp.ones((5, 3)))
    >>> fisher.round(6)  # x^2 p (1 - p) = 1/4
    Array([[0.25, 0.25],
           [0.25, 0.25],
           [0.25, 0.25]], dtype=float32)

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits`` for a batch of inputs,
      logits of shape (batch, C).
    params: the parameters, a pytree.
    inputs: array of shape (N, ...); all of it is used.
    kind: ``"exact"``, ``"sampled"`` or ``"empirical"``.
    labels: int labels of shape (N,); required for ``"empirical"``.
    rng: PRNG key; required for ``"sampled"``.
    batch_size: examples per chunk (clipped to N); trades memory for speed.

  Returns:
    A float32 pytree shaped like ``params``.

  Raises:
    ValueError: for an unknown ``kind``, a missing ``labels`` or ``rng``, or
      empty ``inputs``.

  References:
    Kirkpatrick et al., 2017, Overcoming catastrophic forgetting in neural
    networks, PNAS, https://arxiv.org/abs/1612.00796.
    Martens, 2020, New insights and perspectives on the natural gradient
    method, JMLR, https://arxiv.org/abs/1412.1193.
    Kunstner, Balles and Hennig, 2019, Limitations of the empirical Fisher
    approximation for natural gradient descent, NeurIPS,
    https://arxiv.org/abs/1905.12558.
  """
  if kind not in FISHER_KINDS:
    raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}.")
  if kind == "empirical" and labels is None:
    raise ValueError('kind="empirical" needs labels.')
  if kind == "empirical":
    _check_labels(labels, jax.eval_shape(apply_fn, params, inputs[:1]).shape[-1])
  if kind == "sampled" and rng is None:
    raise ValueError('kind="sampled" needs rng.')
  return mean_per_example_statistic(
    apply_fn,
    params,
    inputs,
    cotangents=kind,
    elementwise="square",
    labels=labels if kind == "empirical" else None,
    rng=rng if kind == "sampled" else None,
    batch_size=batch_size,
  )
