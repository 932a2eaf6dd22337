"""Flax Linen models: the paper's CNN, an MLP, and the paper's text Transformer.

Why Linen: ``model.apply(params, inputs, train=..., rngs=...)`` already is the
pure function ``(params, inputs, rng) -> logits`` that the training step, the
per-example-gradient Fisher (its layer path, or ``jax.vmap`` over ``apply``) and ``shard_map`` need,
with no split/merge of module state. None of these models has mutable state
(no BatchNorm), so ``params`` is the whole variable tree.

Every model takes ``train: bool``: dropout is active only when ``train=True``
and then draws from the ``'dropout'`` rng collection. Every model returns
logits (no softmax).

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
  so porting PyTorch weights needs a permutation of ``fc1``'s rows.

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
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", name="conv1")(x))
    x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", name="conv2")(x))
    x = max_pool_2x2(x)
    x = nn.Dropout(0.25, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128, name="fc1")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="fc2")(x)


class MLP(nn.Module):
  """A ReLU multilayer perceptron that flattens any input.

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
      x = nn.relu(nn.Dense(width)(x))
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
