"""fisher_diagonal against closed forms and hand-computed per-example grads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classp_jax import fisher_diagonal
from classp_jax.methods.fisher import mean_per_example_statistic
from classp_jax.models import MLP, PaperCNN, TextTransformer

N, D, C = 7, 4, 3


def linear(p, x):
  return x @ p["w"] + p["b"]


@pytest.fixture(name="problem")
def _problem():
  rng = np.random.default_rng(0)
  params = {
    "w": jnp.asarray(rng.normal(size=(D, C)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(C,)), jnp.float32),
  }
  inputs = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, C, size=N), jnp.int32)
  return params, inputs, labels


def _per_example_grads(params, inputs, labels):
  """Gradients of log p(y_n | x_n), one example at a time (no vmap)."""
  grads = []
  for x, y in zip(inputs, labels):
    grads.append(jax.grad(lambda p: jax.nn.log_softmax(linear(p, x[None])[0])[y])(params))
  return grads


def test_exact_matches_closed_form(problem):
  params, inputs, _ = problem
  fisher = fisher_diagonal(linear, params, inputs, kind="exact", batch_size=3)
  p = jax.nn.softmax(linear(params, inputs))
  var = p * (1 - p)
  np.testing.assert_allclose(
    fisher["w"], np.mean(inputs[:, :, None] ** 2 * var[:, None, :], 0), rtol=1e-5
  )
  np.testing.assert_allclose(fisher["b"], np.mean(var, 0), rtol=1e-5)


def test_empirical_is_mean_of_squares_not_square_of_mean(problem):
  params, inputs, labels = problem
  fisher = fisher_diagonal(linear, params, inputs, kind="empirical", labels=labels, batch_size=2)
  grads = _per_example_grads(params, inputs, labels)
  for name in params:
    per_example = np.stack([g[name] for g in grads])
    np.testing.assert_allclose(fisher[name], np.mean(per_example**2, 0), rtol=1e-5)
    assert not np.allclose(fisher[name], np.mean(per_example, 0) ** 2)


def test_sampled_averages_to_exact(problem):
  params, inputs, _ = problem
  many = jnp.tile(inputs, (3000, 1))  # 3000 label draws per example
  sampled = fisher_diagonal(
    linear, params, many, kind="sampled", rng=jax.random.key(1), batch_size=7000
  )
  exact = fisher_diagonal(linear, params, inputs, kind="exact")
  for name in params:
    np.testing.assert_allclose(sampled[name], exact[name], rtol=0.1)


@pytest.mark.parametrize("kind", ["exact", "empirical", "sampled"])
@pytest.mark.parametrize("batch_size", [3, 100])
def test_chunking_does_not_change_the_result(problem, kind, batch_size):
  params, inputs, labels = problem
  kwargs = dict(kind=kind, labels=labels, rng=jax.random.key(2))
  whole = fisher_diagonal(linear, params, inputs, batch_size=N, **kwargs)
  chunked = fisher_diagonal(linear, params, inputs, batch_size=batch_size, **kwargs)
  for name in params:
    np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-5)


def test_bfloat16_params_accumulate_in_float32(problem):
  params, inputs, _ = problem
  fisher = fisher_diagonal(
    linear, jax.tree.map(lambda p: p.astype(jnp.bfloat16), params), inputs.astype(jnp.bfloat16)
  )
  assert all(f.dtype == jnp.float32 for f in jax.tree.leaves(fisher))
  exact = fisher_diagonal(linear, params, inputs)
  np.testing.assert_allclose(fisher["b"], exact["b"], rtol=0.1)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(kind="diagonal"), "kind must be one of"),
    (dict(kind="empirical"), "labels"),
    (dict(kind="sampled"), "rng"),
  ],
)
def test_invalid_arguments(problem, kwargs, match):
  params, inputs, _ = problem
  with pytest.raises(ValueError, match=match):
    fisher_diagonal(linear, params, inputs, **kwargs)


@pytest.mark.parametrize("bad", [C, -1])
def test_empirical_labels_outside_the_classes_are_refused(problem, bad):
  # A label of C (or -1) indexes no logit: the Fisher it gave looked plausible.
  params, inputs, labels = problem
  with pytest.raises(ValueError, match=rf"class indices in \[0, {C}\).*{bad}"):
    fisher_diagonal(linear, params, inputs, kind="empirical", labels=labels.at[3].set(bad))


def test_empirical_labels_must_be_integers(problem):
  params, inputs, labels = problem
  with pytest.raises(ValueError, match="integer class indices"):
    fisher_diagonal(linear, params, inputs, kind="empirical", labels=labels.astype(jnp.float32))


def test_empty_inputs(problem):
  params, _, _ = problem
  with pytest.raises(ValueError, match="no examples"):
    fisher_diagonal(linear, params, jnp.zeros((0, D)))


# --- the fast layer path against the general per-example path ---


class _ConvNet(nn.Module):
  """Strides, kernel dilation, SAME and explicit padding, a bias-free conv."""

  num_classes: int

  @nn.compact
  def __call__(self, x, *, train=False):
    del train
    x = nn.relu(nn.Conv(4, (3, 3), strides=2, padding="SAME")(x))
    x = nn.tanh(
      nn.Conv(3, (2, 3), kernel_dilation=(1, 2), padding=((1, 0), (2, 1)), use_bias=False)(x)
    )
    x = nn.Conv(2, (1,), padding="VALID")(x.reshape(x.shape[0], -1, 3))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


MODELS = {
  "mlp": (lambda c: MLP(c, hidden=(6, 5)), (3, 4)),
  "paper_cnn": (PaperCNN, (6, 6, 1)),
  "conv_net": (_ConvNet, (7, 6, 2)),
}


def _model(name, num_classes, seed=0, param_dtype=jnp.float32):
  make, shape = MODELS[name]
  model = make(num_classes)
  rng = np.random.default_rng(seed)
  inputs = jnp.asarray(rng.normal(size=(N, *shape)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_classes, size=N), jnp.int32)
  # Jitted, and perturbed in NumPy: run eagerly, each op compiles apart (seconds a model).
  params = jax.jit(lambda key, x: model.init(key, x, train=False))(jax.random.key(seed), inputs[:1])
  noise = np.random.default_rng(seed + 1)
  params = jax.tree.map(
    lambda p: jnp.asarray(np.asarray(p) + 0.3 * noise.normal(size=p.shape), param_dtype), params
  )  # nonzero biases, so no gradient is trivially zero

  def apply_fn(p, x):
    return model.apply(p, x, train=False)

  return apply_fn, params, inputs, labels


def _exact_on_path(apply_fn, params, inputs, path):
  return mean_per_example_statistic(
    apply_fn, params, inputs, cotangents="exact", elementwise="square", batch_size=3, path=path
  )


STATISTICS = [
  ("exact", "square"),
  ("empirical", "square"),
  ("sampled", "square"),
  ("output_norm", "abs"),
]


@pytest.mark.parametrize("name, num_classes", [("mlp", 1), ("paper_cnn", 2), ("conv_net", 3)])
def test_fast_path_equals_general_path(name, num_classes):
  apply_fn, params, inputs, labels = _model(name, num_classes)
  for cotangents, elementwise in STATISTICS:
    results = [
      mean_per_example_statistic(
        apply_fn,
        params,
        inputs,
        cotangents=cotangents,
        elementwise=elementwise,
        labels=labels,
        rng=jax.random.key(4),
        batch_size=3,
        path=path,
      )  # 7 = 3 + 3 + 1: a padded last chunk
      for path in ("fast", "general")
    ]
    for fast, general in zip(*map(jax.tree.leaves, results)):
      assert fast.dtype == jnp.float32
      np.testing.assert_allclose(
        fast, general, rtol=2e-5, atol=2e-6 * np.max(np.abs(general)) + 1e-12
      )
    # With one class every log-likelihood gradient is zero.
    nonzero = num_classes > 1 or cotangents == "output_norm"
    assert all(np.any(np.asarray(leaf) > 0) == nonzero for leaf in jax.tree.leaves(results[0]))


def test_fast_path_matches_closed_form():
  model = nn.Dense(C)
  params = model.init(jax.random.key(0), jnp.zeros((1, D)))
  params = jax.tree.map(lambda p: p + 0.5, params)
  inputs = jnp.asarray(np.random.default_rng(0).normal(size=(N, D)), jnp.float32)
  fisher = mean_per_example_statistic(
    model.apply, params, inputs, cotangents="exact", elementwise="square", batch_size=3, path="fast"
  )["params"]
  p = jax.nn.softmax(model.apply(params, inputs))
  var = p * (1 - p)
  np.testing.assert_allclose(
    fisher["kernel"], np.mean(inputs[:, :, None] ** 2 * var[:, None, :], 0), rtol=1e-5
  )
  np.testing.assert_allclose(fisher["bias"], np.mean(var, 0), rtol=1e-5)


def test_fast_path_bfloat16_params_accumulate_in_float32():
  apply_fn, params, inputs, _ = _model("mlp", 3, param_dtype=jnp.bfloat16)
  fast = fisher_diagonal(apply_fn, params, inputs, batch_size=3)
  exact = fisher_diagonal(
    apply_fn, jax.tree.map(lambda p: p.astype(jnp.float32), params), inputs, batch_size=3
  )
  for low, high in zip(jax.tree.leaves(fast), jax.tree.leaves(exact)):
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, high, rtol=0.1, atol=0.02 * high.max())


class _SharedDense(nn.Module):
  """One Dense called twice: its per-example gradient is a sum of two terms."""

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(D)
    return nn.Dense(C)(dense(jnp.tanh(dense(x))))


class _Normalised(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(C)(nn.LayerNorm()(nn.Dense(5)(x)))


@pytest.mark.parametrize("model", [_SharedDense(), _Normalised()])
def test_uncovered_models_fall_back_to_the_general_path(model):
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
  params = model.init(jax.random.key(0), inputs[:1])
  with pytest.raises(ValueError, match="does not cover"):
    _exact_on_path(model.apply, params, inputs, "fast")
  auto = fisher_diagonal(model.apply, params, inputs, batch_size=3)
  general = _exact_on_path(model.apply, params, inputs, "general")
  for a, g in zip(jax.tree.leaves(auto), jax.tree.leaves(general)):
    np.testing.assert_allclose(a, g, rtol=1e-6)


def test_plain_function_is_not_on_the_fast_path(problem):
  params, inputs, _ = problem
  with pytest.raises(ValueError, match="does not cover"):
    _exact_on_path(linear, params, inputs, "fast")


def test_text_transformer_uses_the_general_path():
  model = TextTransformer(vocab_size=11, d_model=8, num_heads=2, mlp_dim=8, max_len=5)
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 11, size=(N, 5)), jnp.int32)
  params = model.init(jax.random.key(0), tokens, train=False)

  def apply_fn(p, x):
    return model.apply(p, x, train=False)

  with pytest.raises(ValueError, match="does not cover"):
    _exact_on_path(apply_fn, params, tokens, "fast")
  fisher = fisher_diagonal(apply_fn, params, tokens, batch_size=4)
  head = fisher["params"]["head"]["bias"]
  # The head's bias gradient per class is e_c - p: its Fisher is mean p(1-p).
  p = jax.nn.softmax(apply_fn(params, tokens))
  np.testing.assert_allclose(head, np.mean(p * (1 - p), 0), rtol=1e-5)


def test_invalid_path(problem):
  params, inputs, _ = problem
  with pytest.raises(ValueError, match="path must be one of"):
    _exact_on_path(linear, params, inputs, "vmap")
