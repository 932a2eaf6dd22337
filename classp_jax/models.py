"""Flax Linen models: the paper's CNN, an MLP, the paper's text Transformer, and the
CIFAR ResNet-18 of the continual-learning benchmarks.

Why Linen: ``model.apply(variables, inputs, train=..., rngs=...)`` already is the
pure function ``(params, inputs, rng) -> logits`` that the training step, the
per-example-gradient Fisher (its layer path, or ``jax.vmap`` over ``apply``) and ``shard_map`` need,
with no split/merge of module state. The paper's models have no mutable state, so
``params`` is their whole variable tree. `ResNet18` has BatchNorm: its running
statistics are a second collection, ``batch_stats``, that a training step
updates (``mutable=["batch_stats"]``) and evaluation reads; the training engine
keeps them in the run state (`classp_jax.training.TrainState.model_state`).

Every model takes ``train: bool``: dropout is active only when ``train=True``
and then draws from the ``'dropout'`` rng collection; BatchNorm normalises by
the batch's statistics when ``train=True`` and by its running averages
otherwise. Every model returns logits (no softmax).

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = PaperCNN(num_classes=10)
  >>> x = jnp.zeros((2, 28, 28, 1), jnp.float32)
  >>> params = model.init(jax.random.key(0), x, train=False)
  >>> model.apply(params, x, train=False).shape
  (2, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD_ID = 0
"""Token id of ``<pad>``; padding sits at the end of each sequence."""

# PyTorch's LayerNorm default; Flax's default is 1e-6.
_TORCH_LAYER_NORM_EPS = 1e-5
# PyTorch's BatchNorm2d default (Flax's is 1e-5 too; named here for the ResNet's reader).
_TORCH_BATCH_NORM_EPS = 1e-5

ACTIVATIONS = "activations"
"""The collection the MLP and the paper's CNN sow their hidden ReLU activations into.

``model.apply(variables, x, train=..., mutable=[ACTIVATIONS])`` returns the logits and
``{ACTIVATIONS: {layer: {"relu": (h,)}}}``, by the name of the layer (in ``params``) whose
outputs they are; `unit_activations` flattens it. Without ``mutable`` nothing is sown (and
nothing is computed twice), and ``init`` never sows, so variables hold no activations.
Read by the dormant-unit metric and Continual Backprop (`classp_jax.continual_backprop`).
"""


def sow_relu(module: nn.Module, layer: nn.Module, h: jax.Array) -> jax.Array:
  """Sows ``h``, the ReLU of ``layer``'s outputs, under ``layer``'s name; returns ``h``."""
  if not module.is_initializing():
    layer.sow(ACTIVATIONS, "relu", h)
  return h


def unit_activations(collection) -> dict[str, jax.Array]:
  """``{layer: h}`` from an ``ACTIVATIONS`` collection as ``apply`` returns it.

  >>> import jax, jax.numpy as jnp
  >>> model = MLP(num_classes=2, hidden=(3,))
  >>> x = jnp.ones((4, 5))
  >>> variables = model.init(jax.random.key(0), x, train=False)
  >>> _, sown = model.apply(variables, x, train=False, mutable=[ACTIVATIONS])
  >>> {k: h.shape for k, h in unit_activations(sown[ACTIVATIONS]).items()}
  {'Dense_0': (4, 3)}
  """
  return {name: entry["relu"][-1] for name, entry in collection.items()}


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool with stride 2 over NHWC, flooring odd sizes like PyTorch.

  Same forward values as ``nn.max_pool(x, (2, 2), strides=(2, 2))``, written as
  a reshape and a max: on XLA:CPU the backward of ``reduce_window`` is
  ``select_and_scatter``, which is much slower than the backward of a reduce.
  Gradients differ from ``select_and_scatter`` only where a window holds tied
  maxima (the reduce splits the gradient among them instead of picking one);
  after a ReLU ties are almost always zeros, whose ReLU gradient is zero anyway.

  Args:
    x: array of shape (N, H, W, C).

  Returns:
    Array of shape (N, H // 2, W // 2, C).
  """
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2, :]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class PaperCNN(nn.Module):
  """The paper's CNN (the PyTorch MNIST example network).

  conv 32 3x3 (VALID) -> relu -> conv 64 3x3 (VALID) -> relu -> max-pool 2 ->
  dropout 0.25 -> flatten -> dense 128 -> relu -> dropout 0.5 -> dense.
  Parameter count equals the PyTorch model's (1,199,882 for 28x28x1 inputs and
  10 classes). The flatten is over (H, W, C) rather than PyTorch's (C, H, W),
  so porting PyTorch weights needs a permutation of ``fc1``'s rows. Its three
  ReLU layers sow their activations (`ACTIVATIONS`).

  Attributes:
    num_classes: size of the output layer.
  """

  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes logits.

    Args:
      x: float32 images (N, H, W, C) in [0, 1], e.g. (N, 28, 28, 1).
      train: enables dropout (needs the ``'dropout'`` rng).

    Returns:
      Logits of shape (N, num_classes).
    """
    for name, width in (("conv1", 32), ("conv2", 64)):
      conv = nn.Conv(width, (3, 3), padding="VALID", name=name)
      x = sow_relu(self, conv, nn.relu(conv(x)))
    x = max_pool_2x2(x)
    x = nn.Dropout(0.25, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    fc1 = nn.Dense(128, name="fc1")
    x = sow_relu(self, fc1, nn.relu(fc1(x)))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="fc2")(x)


class MLP(nn.Module):
  """A ReLU multilayer perceptron that flattens any input; its hidden layers sow their
  activations (`ACTIVATIONS`).

  Attributes:
    num_classes: size of the output layer.
    hidden: widths of the hidden layers.
    dropout: dropout rate after each hidden layer (0 disables it).
  """

  num_classes: int
  hidden: Sequence[int] = (256, 256)
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes logits.

    Args:
      x: array of shape (N, ...); everything after the batch axis is flattened.
      train: enables dropout (needs the ``'dropout'`` rng when dropout > 0).

    Returns:
      Logits of shape (N, num_classes).
    """
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    for width in self.hidden:
      dense = nn.Dense(width)
      x = sow_relu(self, dense, nn.relu(dense(x)))
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


class EncoderLayer(nn.Module):
  """Post-norm Transformer encoder layer, like ``torch.nn.TransformerEncoderLayer``.

  x = LN(x + Dropout(SelfAttention(x))); x = LN(x + Dropout(FFN(x))), with
  FFN = Dense(mlp_dim) -> relu -> Dropout -> Dense(d_model), and dropout on the
  attention weights too, as in PyTorch's defaults.

  Attributes:
    num_heads: attention heads; must divide the model width.
    mlp_dim: hidden width of the feed-forward block.
    dropout: dropout rate everywhere inside the layer.
  """

  num_heads: int
  mlp_dim: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """Applies the layer.

    Args:
      x: (N, L, D) token representations.
      mask: boolean attention mask broadcastable to (N, heads, L, L).
      train: enables dropout.

    Returns:
      (N, L, D) token representations.
    """
    d_model = x.shape[-1]
    attention = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dropout_rate=self.dropout,
      deterministic=not train,
      name="attention",
    )(x, x, mask=mask)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(attention)
    x = nn.LayerNorm(epsilon=_TORCH_LAYER_NORM_EPS, name="attention_norm")(x)
    hidden = nn.relu(nn.Dense(self.mlp_dim, name="mlp_in")(x))
    hidden = nn.Dropout(self.dropout, deterministic=not train)(hidden)
    hidden = nn.Dense(d_model, name="mlp_out")(hidden)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(hidden)
    return nn.LayerNorm(epsilon=_TORCH_LAYER_NORM_EPS, name="mlp_norm")(x)


class TextTransformer(nn.Module):
  """The paper's text classifier: embedding, one encoder layer, last-token head.

  embedding (+ learned positions) -> dropout -> LayerNorm -> one post-norm
  encoder layer -> LayerNorm -> representation of the last non-pad token ->
  dense over the labels.

  Padding: token id 0 is ``<pad>`` and sits at the end of each sequence.
  Attention never attends to pad keys, and "the last token" is the last
  non-pad one (gathered at ``length - 1``), so a sequence's logits do not
  depend on how much padding follows it or on other sequences in the batch.
  An all-pad row reads position 0 and yields finite (meaningless) logits.

  Positions: the authors put ``torch.nn.TransformerEncoderLayer`` after an
  embedding and do not describe a positional encoding. Without one, a single
  attention layer read out at the last token is order-blind except for which
  token is last, so ``learned_positions=True`` (the default) adds a learned
  (max_len, d_model) position embedding; for 30-token inputs this matters
  little. Set it to False for the position-free variant.

  Attributes:
    vocab_size: number of token ids, including ``<pad>`` = 0.
    num_classes: size of the output layer (3 sentiment labels).
    d_model: width of embeddings and the encoder layer.
    num_heads: attention heads; must divide ``d_model``.
    mlp_dim: feed-forward width (PyTorch's ``dim_feedforward`` default).
    dropout: dropout rate on embeddings and inside the encoder layer.
    max_len: longest sequence accepted (size of the position table).
    learned_positions: whether to add learned position embeddings.
  """

  vocab_size: int
  num_classes: int = 3
  d_model: int = 600
  num_heads: int = 30
  mlp_dim: int = 2048
  dropout: float = 0.1
  max_len: int = 30
  learned_positions: bool = True

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
    """Computes logits.

    Args:
      tokens: int32 token ids (N, L) with L <= max_len, padded with 0 at the end.
      train: enables dropout (needs the ``'dropout'`` rng).

    Returns:
      Logits of shape (N, num_classes).
    """
    if tokens.shape[1] > self.max_len:
      raise ValueError(f"sequence length {tokens.shape[1]} > max_len {self.max_len}")
    is_token = tokens != PAD_ID
    x = nn.Embed(self.vocab_size, self.d_model, name="token_embedding")(tokens)
    if self.learned_positions:
      positions = nn.Embed(self.max_len, self.d_model, name="position_embedding")
      x = x + positions(jnp.arange(tokens.shape[1]))[None]
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.LayerNorm(epsilon=_TORCH_LAYER_NORM_EPS, name="embedding_norm")(x)
    # Mask keys only: pad queries produce unused outputs, and masking them too
    # would leave all-pad rows with no valid key at all.
    mask = is_token[:, None, None, :]
    x = EncoderLayer(self.num_heads, self.mlp_dim, self.dropout, name="encoder")(
      x, mask, train=train
    )
    x = nn.LayerNorm(epsilon=_TORCH_LAYER_NORM_EPS, name="final_norm")(x)
    last = jnp.maximum(is_token.sum(axis=1) - 1, 0)
    x = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    return nn.Dense(self.num_classes, name="head")(x)


class BasicBlock(nn.Module):
  """ResNet's basic block: two 3x3 convolutions with BatchNorm, and a shortcut.

  conv 3x3 (stride) -> BN -> relu -> conv 3x3 -> BN, plus the input, through a
  1x1 convolution and BN where the stride or the width changes; then relu. The
  convolutions have no bias (BN's shift replaces it), as in He et al.'s and
  Mammoth's ResNets.

  Attributes:
    features: output channels.
    strides: the first convolution's (and the shortcut's) stride.
    momentum: BatchNorm's running-average decay (PyTorch's momentum 0.1 is 0.9 here).
    axis_name: the mapped axis over which batch statistics are computed (None: this
      device's batch).
  """

  features: int
  strides: int = 1
  momentum: float = 0.9
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Applies the block to NHWC ``x``."""

    def norm(name: str) -> nn.BatchNorm:
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.momentum,
        epsilon=_TORCH_BATCH_NORM_EPS,
        axis_name=self.axis_name,
        name=name,
      )

    stride = (self.strides, self.strides)
    y = nn.Conv(self.features, (3, 3), stride, padding=1, use_bias=False, name="conv1")(x)
    y = nn.relu(norm("bn1")(y))
    y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(y)
    y = norm("bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), stride, padding="VALID", use_bias=False, name="shortcut")(
        x
      )
      x = norm("shortcut_bn")(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """The CIFAR ResNet-18 of the continual-learning benchmarks (Mammoth, GEM, DER).

  Per-channel normalisation of the inputs (``mean``, ``std``; none by default) ->
  conv 3x3 (``width``, stride 1, no bias) -> BN -> relu -> four stages of two
  `BasicBlock`\\ s of ``width``, 2, 4 and 8 x ``width`` channels (the last three
  start with stride 2) -> global average pool -> dense. Unlike ImageNet's
  ResNet-18 the stem is one 3x3 convolution and there is no max-pool, so 32x32
  images reach the last stage at 4x4. ``width=64`` is He et al.'s ResNet-18 as
  Mammoth and DER train it on split CIFAR-10 and Tiny-ImageNet (11,173,962
  params for 10 classes); ``width=20`` is the reduced ResNet-18 of Lopez-Paz and
  Ranzato (2017) that GEM, A-GEM and many replay papers use.

  The model normalises its own inputs, so that training (after augmentation),
  evaluation, the Fisher and replay all see the same pipeline: a random crop's
  zero padding is black, normalised as Mammoth's ``RandomCrop(padding=4)`` then
  ``Normalize(mean, std)`` does it.

  BatchNorm keeps its running statistics in the ``batch_stats`` collection:
  ``model.apply(variables, x, train=True, mutable=["batch_stats"])`` returns the
  logits and the updated statistics. With ``axis_name`` set (the training engine
  sets it to the ``data`` mesh axis on more than one device), batch statistics
  are computed over the global batch, so results do not depend on the device
  count.

  Example (shapes only, traced with `jax.eval_shape`):
    >>> model = ResNet18(num_classes=10)
    >>> x = jnp.zeros((2, 32, 32, 3), jnp.float32)
    >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    >>> sorted(variables), sum(p.size for p in jax.tree.leaves(variables["params"]))
    (['batch_stats', 'params'], 11173962)
    >>> train = lambda v: model.apply(v, x, train=True, mutable=["batch_stats"])
    >>> logits, updated = jax.eval_shape(train, variables)
    >>> logits.shape, sorted(updated)
    ((2, 10), ['batch_stats'])

  Attributes:
    num_classes: size of the output layer.
    width: channels of the first stage (64: ResNet-18; 20: the reduced one).
    mean: per-channel input means to subtract, or None.
    std: per-channel input standard deviations to divide by (with ``mean``).
    momentum: BatchNorm's running-average decay (0.9 = PyTorch's momentum 0.1).
    axis_name: the mapped axis of the batch statistics (None: this device's batch).

  References:
    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
    Baseline", NeurIPS 2020 (Mammoth, https://github.com/aimagelab/mammoth).
  """

  num_classes: int
  width: int = 64
  mean: Sequence[float] | None = None
  std: Sequence[float] | None = None
  momentum: float = 0.9
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes logits.

    Args:
      x: float32 images (N, H, W, C) in [0, 1].
      train: normalise by the batch's statistics and update the running ones
        (needs ``mutable=["batch_stats"]``), or use the running ones.

    Returns:
      Logits of shape (N, num_classes).
    """
    x = x.astype(jnp.float32)
    if (self.mean is None) != (self.std is None):
      raise ValueError("pass both mean and std, or neither")
    if self.mean is not None:
      x = (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)
    x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, name="conv1")(x)
    x = nn.BatchNorm(
      use_running_average=not train,
      momentum=self.momentum,
      epsilon=_TORCH_BATCH_NORM_EPS,
      axis_name=self.axis_name,
      name="bn1",
    )(x)
    x = nn.relu(x)
    for stage, multiple in enumerate((1, 2, 4, 8)):
      for block in range(2):
        x = BasicBlock(
          self.width * multiple,
          strides=2 if stage and not block else 1,
          momentum=self.momentum,
          axis_name=self.axis_name,
          name=f"layer{stage + 1}_{block}",
        )(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)
