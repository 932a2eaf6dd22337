"""Tests for classp_jax.models: shapes, parameter counts, dropout, padding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_jax.models import MLP, PaperCNN, TextTransformer, max_pool_2x2


def _param_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def _tiny_transformer(**overrides) -> TextTransformer:
  config = dict(vocab_size=50, num_classes=3, d_model=16, num_heads=4, mlp_dim=32, max_len=12)
  return TextTransformer(**(config | overrides))


def _padded(rows, length: int) -> jnp.ndarray:
  """Token rows padded with 0 at the end to `length`."""
  return jnp.array([list(r) + [0] * (length - len(r)) for r in rows], jnp.int32)


@pytest.fixture(scope="module")
def cnn_and_params():
  model = PaperCNN(num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
  return model, params


def test_paper_cnn_matches_pytorch_param_count_and_shapes(cnn_and_params):
  model, params = cnn_and_params
  assert _param_count(params) == 1_199_882
  assert set(params["params"]) == {"conv1", "conv2", "fc1", "fc2"}
  assert params["params"]["conv2"]["kernel"].shape == (3, 3, 32, 64)
  assert params["params"]["fc1"]["kernel"].shape == (12 * 12 * 64, 128)
  logits = model.apply(params, jnp.ones((3, 28, 28, 1)), train=False)
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32


def test_paper_cnn_dropout_only_in_train_mode(cnn_and_params):
  model, params = cnn_and_params
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  eval_a = model.apply(params, x, train=False)
  eval_b = model.apply(params, x, train=False, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(2)})
  train_b = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(train_a, train_b)


@pytest.mark.parametrize("shape", [(2, 24, 24, 3), (1, 7, 5, 2)])
def test_max_pool_2x2_matches_flax_max_pool(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  expected = nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool_2x2(x), expected)


def test_mlp_flattens_any_input_and_counts_params():
  model = MLP(num_classes=5, hidden=(8, 4))
  params = model.init(jax.random.key(0), jnp.zeros((1, 3, 2)), train=False)
  assert _param_count(params) == (6 * 8 + 8) + (8 * 4 + 4) + (4 * 5 + 5)
  assert model.apply(params, jnp.ones((7, 3, 2)), train=False).shape == (7, 5)


def test_mlp_dropout_only_in_train_mode():
  model = MLP(num_classes=5, hidden=(64,), dropout=0.5)
  x = jnp.ones((2, 10))
  params = model.init(jax.random.key(0), x, train=False)
  np.testing.assert_array_equal(
    model.apply(params, x, train=False), model.apply(params, x, train=False)
  )
  train_a = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


@pytest.fixture(scope="module")
def transformer_and_params():
  model = _tiny_transformer()
  params = model.init(jax.random.key(0), jnp.ones((1, 12), jnp.int32), train=False)
  return model, params


def test_transformer_shapes_and_param_count(transformer_and_params):
  model, params = transformer_and_params
  d, v, f, length, c = 16, 50, 32, 12, 3
  embeddings = v * d + length * d
  attention = 4 * (d * d + d)
  mlp = (d * f + f) + (f * d + d)
  norms = 4 * 2 * d
  assert _param_count(params) == embeddings + attention + mlp + norms + (d * c + c)
  logits = model.apply(params, _padded([[3, 4, 5], [6]], 12), train=False)
  assert logits.shape == (2, 3)


def test_paper_transformer_sizes():
  model = TextTransformer(vocab_size=100)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.ones((2, 30), jnp.int32), train=False)
  )
  attention = shapes["params"]["encoder"]["attention"]
  assert attention["query"]["kernel"].shape == (600, 30, 20)
  assert shapes["params"]["encoder"]["mlp_in"]["kernel"].shape == (600, 2048)
  assert shapes["params"]["head"]["kernel"].shape == (600, 3)


def test_transformer_ignores_trailing_padding(transformer_and_params):
  model, params = transformer_and_params
  rows = [[3, 4, 5], [7, 8, 9, 10, 11], [12]]
  short = model.apply(params, _padded(rows, 6), train=False)
  long = model.apply(params, _padded(rows, 12), train=False)
  np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)


def test_transformer_reads_last_non_pad_token(transformer_and_params):
  model, params = transformer_and_params
  # Same prefix, different last token: logits must change.
  a = model.apply(params, _padded([[3, 4, 5]], 12), train=False)
  b = model.apply(params, _padded([[3, 4, 6]], 12), train=False)
  assert not np.allclose(a, b)


def test_transformer_rows_are_independent(transformer_and_params):
  model, params = transformer_and_params
  rows = [[3, 4, 5], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [12]]
  batch = model.apply(params, _padded(rows, 12), train=False)
  for i, row in enumerate(rows):
    alone = model.apply(params, _padded([row], 12), train=False)
    np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-6)


def test_transformer_all_pad_rows_are_finite(transformer_and_params):
  model, params = transformer_and_params
  tokens = _padded([[], [5, 6]], 12)
  for train in (False, True):
    logits = model.apply(params, tokens, train=train, rngs={"dropout": jax.random.key(1)})
    assert np.isfinite(logits).all()
  grads = jax.grad(lambda p: model.apply(p, tokens, train=False).sum())(params)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_transformer_dropout_only_in_train_mode(transformer_and_params):
  model, params = transformer_and_params
  tokens = _padded([[3, 4, 5], [6, 7]], 12)
  np.testing.assert_array_equal(
    model.apply(params, tokens, train=False), model.apply(params, tokens, train=False)
  )
  train_a = model.apply(params, tokens, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(params, tokens, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


def test_transformer_rejects_too_long_sequences(transformer_and_params):
  model, params = transformer_and_params
  with pytest.raises(ValueError, match="max_len"):
    model.apply(params, jnp.ones((1, 13), jnp.int32), train=False)
