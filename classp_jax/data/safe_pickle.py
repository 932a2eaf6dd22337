"""A restricted unpickler for data files: plain containers, strings, bytes and NumPy arrays only.

Unpickling runs whatever callables a pickle names (its "globals"), so a pickle found on disk
can run code: `os.system`, `eval`, `subprocess.Popen`, ... `restricted_loads` names no global
except the few that NumPy arrays need, and builds even those itself:

- containers (dict, list, tuple, set, frozenset), str, bytes, int, float, bool, None, which
  pickle stores with its own opcodes (sets at protocol 2 name `builtins.set`/`frozenset`);
- bytes as Python 3 writes them at protocols 0-2: `_codecs.encode(text, "latin1")`, and
  `bytes()` for an empty one;
- NumPy arrays of booleans, numbers or fixed-size strings, in the forms NumPy pickles them:
  `numpy.core.multiarray._reconstruct` (NumPy 1.x, and Python 2, as CIFAR's batches were
  written) or `numpy._core.multiarray._reconstruct` (NumPy 2.x) with `numpy.ndarray` and
  `numpy.dtype`, or `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer`
  (protocol 5). Their state is checked (shape, dtype, data length) and the array is built
  with `np.frombuffer`: NumPy's own `__setstate__` never sees the pickle's state. Object
  arrays and structured dtypes are refused.

Any other global is an `UnsafePickleError` naming it, before anything is called.
Persistent ids and the copyreg extension registry are refused too.

>>> import pickle
>>> restricted_loads(pickle.dumps({"data": np.arange(3, dtype=np.uint8)}), "toy")["data"]
array([0, 1, 2], dtype=uint8)
>>> restricted_loads(pickle.dumps(print), "toy")
Traceback (most recent call last):
...
classp_jax.data.safe_pickle.UnsafePickleError: toy: refused to unpickle builtins.print: ...
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

# The dtype kinds an array may have: bool, signed and unsigned ints, floats, complex, bytes, str.
_ARRAY_KINDS = "biufcSU"
_BYTE_ORDERS = "<>|="


class UnsafePickleError(ValueError):
  """A pickle names a global outside the allowed ones (it could run code): nothing was run."""


def _text(value: Any, what: str) -> str:
  """Python 2 pickles read with encoding="bytes" give their `str` values as bytes."""
  if isinstance(value, bytes):
    return value.decode("latin-1")
  if isinstance(value, str):
    return value
  raise pickle.UnpicklingError(f"{what} must be a string, not {type(value).__name__}")


class _Dtype:
  """A dtype as the pickle describes it: `numpy.dtype(obj, align, copy)`, then its state."""

  def __init__(self, obj: Any, align: Any = False, copy: Any = True) -> None:
    code = _text(obj, "a dtype code")
    try:
      dtype = np.dtype(code)
    except TypeError as error:
      raise pickle.UnpicklingError(f"unknown dtype {code!r}") from error
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
      raise pickle.UnpicklingError(f"refused dtype {code!r}: only plain numbers and strings")
    self.dtype = dtype

  def __setstate__(self, state: Any) -> None:
    # (version, byte order, subarray, names, fields, itemsize, alignment, flags)
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
      raise pickle.UnpicklingError(f"unexpected dtype state {state!r}")
    order = _text(state[1], "a byte order")
    if order not in _BYTE_ORDERS or any(part is not None for part in state[2:5]):
      raise pickle.UnpicklingError(f"refused dtype state {state!r}: only plain numbers and strings")
    if state[5] not in (-1, self.dtype.itemsize):
      raise pickle.UnpicklingError(f"dtype {self.dtype} with item size {state[5]}")
    if order in "<>" and self.dtype.itemsize > 1:
      self.dtype = self.dtype.newbyteorder(order)


def _array(data: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
  """The array of `shape` and `dtype` held in `data`, checked, as a writable copy."""
  if not isinstance(dtype, _Dtype):
    raise pickle.UnpicklingError("an array's dtype must be a numpy.dtype")
  if isinstance(data, str):  # NumPy's raw data read from a Python 2 pickle as text
    data = data.encode("latin-1")
  if not isinstance(data, (bytes, bytearray)):
    raise pickle.UnpicklingError(f"an array's data must be bytes, not {type(data).__name__}")
  if not isinstance(shape, tuple) or not all(
    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
  ):
    raise pickle.UnpicklingError(f"bad array shape {shape!r}")
  expected = math.prod(shape) * dtype.dtype.itemsize
  if len(data) != expected:
    raise pickle.UnpicklingError(
      f"an array of shape {shape} and dtype {dtype.dtype} needs {expected:,} bytes, "
      f"not {len(data):,}"
    )
  flat = np.frombuffer(bytes(data), dtype.dtype)
  return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


class _PendingArray:
  """`_reconstruct(ndarray, (0,), b"b")`: an empty array that its state then fills."""

  def __init__(self, subtype: Any, shape: Any = (0,), typecode: Any = b"b") -> None:
    if subtype is not _NDARRAY:
      raise pickle.UnpicklingError("only numpy.ndarray arrays are allowed")
    self.array: np.ndarray | None = None

  def __setstate__(self, state: Any) -> None:
    # (version, shape, dtype, is_fortran, raw data); version 0 pickles lack the version.
    if isinstance(state, tuple) and len(state) == 4:
      state = (0, *state)
    if not isinstance(state, tuple) or len(state) != 5 or state[0] not in (0, 1):
      raise pickle.UnpicklingError("unexpected array state")
    _, shape, dtype, fortran, data = state
    if isinstance(data, list):  # how NumPy pickles object arrays
      raise pickle.UnpicklingError("object arrays are refused")
    self.array = _array(data, dtype, shape, bool(fortran))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
  """Protocol 5's `numpy._core.numeric._frombuffer(buffer, dtype, shape, order)`."""
  if isinstance(buffer, pickle.PickleBuffer):
    buffer = bytes(buffer.raw())
  order = _text(order, "an array order")
  if order not in ("C", "F"):
    raise pickle.UnpicklingError(f"bad array order {order!r}")
  pending = _PendingArray(_NDARRAY)
  pending.array = _array(buffer, dtype, shape, order == "F")
  return pending


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
  """`_codecs.encode`, as protocols 0-2 store bytes in Python 3: latin-1 only."""
  if not isinstance(text, str) or _text(encoding, "an encoding") not in ("latin1", "latin-1"):
    raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 bytes")
  return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
  """`bytes()`, as protocols 0-2 store an empty bytes object in Python 3."""
  if args:
    raise pickle.UnpicklingError("bytes(...) is allowed only without arguments")
  return b""


class _Global:
  """What `find_class` hands the pickle for an allowed global: callable, and immutable.

  The pickle never gets the real function or class, so its BUILD opcode (which sets
  attributes, or calls `__setstate__`) cannot change them for later loads.
  """

  __slots__ = ("_call",)

  def __init__(self, call: Callable[..., Any] | None) -> None:
    object.__setattr__(self, "_call", call)

  def __call__(self, *args: Any) -> Any:
    if self._call is None:
      raise pickle.UnpicklingError("numpy.ndarray is only allowed as _reconstruct's argument")
    return self._call(*args)

  def __setattr__(self, name: str, value: Any) -> None:
    raise pickle.UnpicklingError("a pickle may not change a global")

  def __setstate__(self, state: Any) -> None:
    raise pickle.UnpicklingError("a pickle may not change a global")


_NDARRAY = _Global(None)  # numpy.ndarray: only ever passed to _reconstruct
_NUMPY_CORE = ("numpy.core", "numpy._core")  # NumPy 1.x and 2.x names of one module
_ALLOWED: dict[tuple[str, str], _Global] = {
  ("numpy", "ndarray"): _NDARRAY,
  ("numpy", "dtype"): _Global(_Dtype),
  **{(f"{core}.multiarray", "_reconstruct"): _Global(_PendingArray) for core in _NUMPY_CORE},
  **{(f"{core}.numeric", "_frombuffer"): _Global(_frombuffer) for core in _NUMPY_CORE},
  ("_codecs", "encode"): _Global(_latin1_encode),
  **{(b, "bytes"): _Global(_empty_bytes) for b in ("builtins", "__builtin__")},
  **{(b, "set"): _Global(set) for b in ("builtins", "__builtin__")},
  **{(b, "frozenset"): _Global(frozenset) for b in ("builtins", "__builtin__")},
}


class _RestrictedUnpickler(pickle.Unpickler):
  def __init__(self, data: bytes, where: str) -> None:
    super().__init__(io.BytesIO(data), encoding="bytes")
    self.where = where

  def find_class(self, module: str, name: str) -> Any:
    allowed = _ALLOWED.get((module, name))
    if allowed is None:
      raise UnsafePickleError(
        f"{self.where}: refused to unpickle {module}.{name}: only plain containers, strings, "
        "bytes and NumPy arrays are allowed (a pickle naming other globals can run code)"
      )
    return allowed

  def persistent_load(self, pid: Any) -> Any:
    raise UnsafePickleError(f"{self.where}: refused a persistent id in a pickle")


def _resolve(value: Any) -> Any:
  """Replaces the placeholders `_PendingArray` and `_Dtype` by the arrays and dtypes built."""
  if isinstance(value, _PendingArray):
    if value.array is None:
      raise pickle.UnpicklingError("an array without its state")
    return value.array
  if isinstance(value, _Dtype):
    return value.dtype
  if isinstance(value, dict):
    return {_resolve(k): _resolve(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, set, frozenset)):
    return type(value)(_resolve(v) for v in value)
  return value


def restricted_loads(data: bytes, where: str) -> Any:
  """Unpickles `data`, allowing only plain containers, strings, bytes and NumPy arrays.

  Python 2 pickles are read with encoding="bytes", as CIFAR's own loading code does: their
  `str` values (dict keys included) come back as bytes.

  Args:
      data: the pickle.
      where: names the file in error messages.

  Returns:
      The object, its arrays writable copies.

  Raises:
      UnsafePickleError: the pickle names a global that is not allowed; nothing it names
          was called.
      ValueError: naming `where`, for any other malformed pickle (truncated, a bad array).
  """
  try:
    return _resolve(_RestrictedUnpickler(data, where).load())
  except UnsafePickleError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
    raise ValueError(f"{where}: not a readable pickle ({type(error).__name__}: {error})") from error
  except (AttributeError, MemoryError, RecursionError, OverflowError) as error:
    raise ValueError(f"{where}: not a readable pickle ({type(error).__name__}: {error})") from error
