"""CIFAR-10, CIFAR-100 and Tiny-ImageNet: readers on fixtures in the exact public formats.

The fixtures are written here into tmp_path: CIFAR's binary and Python tarballs (and their
extracted folders) with a few images per batch file, the Python batches pickled as Python 2's
cPickle wrote them; Tiny-ImageNet's folder and zip with a few JPEGs per class.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import tarfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from data_fixtures import damage_tar
from PIL import Image

from classp_jax.data import Dataset, Split, dataset_folders, load_dataset, standard_split_stream
from classp_jax.data.checks import DataSizeWarning
from classp_jax.data.cifar import (
  CIFAR10_CLASS_NAMES,
  CIFAR100_CLASS_NAMES,
  CIFAR100_COARSE_CLASS_NAMES,
  CIFAR100_COARSE_OF_FINE,
)
from classp_jax.data.safe_pickle import UnsafePickleError, restricted_loads

pytestmark = pytest.mark.filterwarnings("ignore::classp_jax.data.checks.DataSizeWarning")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
  return tmp_path / "cache"


def load_local(name: str, data_dir: Path, cache_dir: Path, **kwargs) -> Dataset:
  return load_dataset(name, source="local", data_dir=data_dir, cache_dir=cache_dir, **kwargs)


def cache_files(cache_dir: Path) -> list[Path]:
  return sorted(cache_dir.iterdir()) if cache_dir.exists() else []


# --- CIFAR fixtures ---------------------------------------------------------------------------

# Per dataset and form: the folder inside the archive, the archive, and each split's files.
CIFAR_FORMS = {
  ("cifar10", "binary"): (
    "cifar-10-batches-bin",
    "cifar-10-binary.tar.gz",
    {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
  ),
  ("cifar10", "python"): (
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
  ),
  ("cifar100", "binary"): (
    "cifar-100-binary",
    "cifar-100-binary.tar.gz",
    {"train": ["train.bin"], "test": ["test.bin"]},
  ),
  ("cifar100", "python"): (
    "cifar-100-python",
    "cifar-100-python.tar.gz",
    {"train": ["train"], "test": ["test"]},
  ),
}


def py2_pickle(obj) -> bytes:
  """`obj` pickled as Python 2's cPickle (protocol 2) wrote CIFAR's batches: str as byte
  strings (SHORT_BINSTRING/BINSTRING), arrays through NumPy 1.x's `numpy.core` globals."""
  out = bytearray(b"\x80\x02")

  def string(value: bytes) -> None:
    if len(value) < 256:
      out.extend(b"U" + bytes([len(value)]) + value)
    else:
      out.extend(b"T" + len(value).to_bytes(4, "little") + value)

  def integer(value: int) -> None:
    if 0 <= value < 256:
      out.extend(b"K" + bytes([value]))
    else:
      out.extend(b"J" + value.to_bytes(4, "little", signed=True))

  def emit(value) -> None:
    if isinstance(value, dict):
      out.extend(b"}(")
      for key, item in value.items():
        emit(key)
        emit(item)
      out.extend(b"u")
    elif isinstance(value, list):
      out.extend(b"](")
      for item in value:
        emit(item)
      out.extend(b"e")
    elif isinstance(value, bytes):
      string(value)
    elif isinstance(value, int):
      integer(value)
    elif isinstance(value, np.ndarray):  # ndarray.__reduce__ as NumPy 1.x wrote it
      out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
      string(b"b")
      out.extend(b"\x87R(K\x01(")
      for d in value.shape:
        integer(d)
      out.extend(b"tcnumpy\ndtype\n")
      string(value.dtype.str[1:].encode())
      out.extend(b"K\x00K\x01\x87R(K\x03")
      string(value.dtype.str[:1].encode())
      out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
      string(np.ascontiguousarray(value).tobytes())
      out.extend(b"tb")
    else:
      raise TypeError(type(value))

  emit(obj)
  return bytes(out + b".")


def cifar_member(dataset: str, form: str, images: np.ndarray, fine: np.ndarray) -> bytes:
  """One batch file: binary records, or a pickled dict, of `images` (N, 32, 32, 3)."""
  rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
  coarse = CIFAR100_COARSE_OF_FINE[fine]
  if form == "binary":
    labels = np.stack([coarse, fine], 1) if dataset == "cifar100" else fine[:, None]
    return np.concatenate([labels.astype(np.uint8), rows], axis=1).tobytes()
  names = [f"image_{i}.png".encode() for i in range(len(images))]
  batch = {b"batch_label": b"training batch 1 of 5", b"data": rows, b"filenames": names}
  if dataset == "cifar100":
    batch.update({b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist()})
  else:
    batch[b"labels"] = fine.tolist()
  return py2_pickle(batch)


def cifar_members(
  dataset: str, form: str, per_file: int, seed: int = 0
) -> tuple[dict[str, bytes], dict[str, Split]]:
  """Every batch file of a form, and the splits they hold; each split has every class."""
  num_classes = 100 if dataset == "cifar100" else 10
  rng = np.random.default_rng(seed)
  _, _, files = CIFAR_FORMS[dataset, form]
  members, splits = {}, {}
  for split_name, names in files.items():
    parts = []
    for k, member in enumerate(names):
      images = rng.integers(0, 256, (per_file, 32, 32, 3), dtype=np.uint8)
      fine = ((np.arange(per_file) + k * per_file) % num_classes).astype(np.int32)
      members[member] = cifar_member(dataset, form, images, fine)
      parts.append((images, fine))
    splits[split_name] = Split(
      np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )
  return members, splits


def tar_bytes(folder: str, members: dict[str, bytes]) -> bytes:
  """An uncompressed tar of `folder/` holding `members` and a readme, as CIFAR's are."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
    directory = tarfile.TarInfo(folder)
    directory.type = tarfile.DIRTYPE
    tar.addfile(directory)
    for name, data in {**members, "readme.html": b"<html></html>"}.items():
      info = tarfile.TarInfo(f"{folder}/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def write_cifar(
  root: Path, dataset: str, form: str, *, extracted: bool = False, per_file: int | None = None,
  members: dict[str, bytes] | None = None,
) -> dict[str, Split]:  # fmt: skip
  """Writes a form's archive (or extracted folder) into `root`; returns the splits it holds."""
  per_file = per_file or (100 if dataset == "cifar100" else 10)
  made, splits = cifar_members(dataset, form, per_file)
  members = made if members is None else members
  folder, archive, _ = CIFAR_FORMS[dataset, form]
  root.mkdir(parents=True, exist_ok=True)
  if extracted:
    (root / folder).mkdir()
    for name, data in members.items():
      (root / folder / name).write_bytes(data)
  else:
    (root / archive).write_bytes(gzip.compress(tar_bytes(folder, members), mtime=0))
  return splits


# --- CIFAR readers ----------------------------------------------------------------------------


@pytest.mark.parametrize("extracted", [False, True], ids=["archive", "folder"])
@pytest.mark.parametrize("dataset, form", list(CIFAR_FORMS))
def test_cifar_forms_give_uint8_nhwc_images_and_their_labels(
  tmp_path, cache_dir, dataset, form, extracted
):
  expected = write_cifar(tmp_path / "data", dataset, form, extracted=extracted)
  with pytest.warns(DataSizeWarning, match="the standard distribution has train 50,000"):
    loaded = load_local(dataset, tmp_path / "data", cache_dir)
  for split_name in ("train", "test"):
    split = getattr(loaded, split_name)
    assert split.inputs.dtype == np.uint8 and split.inputs.shape[1:] == (32, 32, 3)
    assert split.labels.dtype == np.int32 and split.inputs.flags.c_contiguous
    np.testing.assert_array_equal(split.inputs, expected[split_name].inputs)
    np.testing.assert_array_equal(split.labels, expected[split_name].labels)
  per_file = 100 if dataset == "cifar100" else 10
  assert len(loaded.train) == (1 if dataset == "cifar100" else 5) * per_file
  names = CIFAR100_CLASS_NAMES if dataset == "cifar100" else CIFAR10_CLASS_NAMES
  assert loaded.class_names == names and loaded.source == "local"


def test_cifar_pixels_are_channel_planes_row_by_row(tmp_path, cache_dir):
  members, _ = cifar_members("cifar10", "binary", 10)
  record = np.zeros(3073, np.uint8)
  record[1 + 5] = 10  # red plane, row 0, column 5
  record[1 + 1024 + 32 * 2 + 7] = 20  # green plane, row 2, column 7
  record[1 + 2048 + 32 * 31] = 30  # blue plane, row 31, column 0
  members["test_batch.bin"] = record.tobytes() + members["test_batch.bin"][3073:]
  write_cifar(tmp_path, "cifar10", "binary", members=members)
  image = load_local("cifar10", tmp_path, cache_dir, cache=False).test.inputs[0]
  assert image[0, 5, 0] == 10 and image[2, 7, 1] == 20 and image[31, 0, 2] == 30
  assert int(image.astype(int).sum()) == 60


@pytest.mark.parametrize("form", ["binary", "python"])
def test_cifar100_gives_fine_labels_and_cifar100_coarse_their_superclasses(
  tmp_path, cache_dir, form
):
  expected = write_cifar(tmp_path / "cifar-100", "cifar100", form)
  fine = load_local("cifar100", tmp_path, cache_dir)
  coarse = load_local("cifar100_coarse", tmp_path, cache_dir)
  np.testing.assert_array_equal(fine.train.labels, expected["train"].labels)
  np.testing.assert_array_equal(coarse.test.labels, CIFAR100_COARSE_OF_FINE[fine.test.labels])
  np.testing.assert_array_equal(coarse.train.inputs, fine.train.inputs)
  assert coarse.num_classes == 20 and coarse.class_names == CIFAR100_COARSE_CLASS_NAMES
  assert fine.num_classes == 100 and len(cache_files(cache_dir)) == 2
  # The CIFAR page's superclasses: apples are fruit, whales aquatic mammals, ...
  for fine_name, coarse_name in [
    ("apple", "fruit_and_vegetables"),
    ("whale", "aquatic_mammals"),
    ("lawn_mower", "vehicles_2"),
    ("worm", "non-insect_invertebrates"),
  ]:
    label = CIFAR100_CLASS_NAMES.index(fine_name)
    assert coarse.class_names[CIFAR100_COARSE_OF_FINE[label]] == coarse_name
  assert np.bincount(CIFAR100_COARSE_OF_FINE).tolist() == [5] * 20


def test_cifar_is_found_in_its_folder_under_a_data_root(tmp_path, cache_dir):
  write_cifar(tmp_path / "cifar-10", "cifar10", "python")
  write_cifar(tmp_path / "cifar100", "cifar100", "binary", extracted=True)
  assert len(load_local("cifar10", tmp_path, cache_dir).train) == 50
  assert len(load_local("cifar100", tmp_path, cache_dir).train) == 100
  assert tmp_path / "cifar100" in dataset_folders("cifar100_coarse", tmp_path)
  assert tmp_path / "cifar-10" not in dataset_folders("cifar100", tmp_path)


def test_the_second_load_is_served_from_the_cache(tmp_path, cache_dir):
  write_cifar(tmp_path, "cifar10", "binary")
  first = load_local("cifar10", tmp_path, cache_dir)
  with mock.patch("classp_jax.data.load.read_cifar", side_effect=AssertionError("not cached")):
    with pytest.warns(DataSizeWarning):  # the size warning is given on every load
      again = load_local("cifar10", tmp_path, cache_dir)
  np.testing.assert_array_equal(first.train.inputs, again.train.inputs)
  np.testing.assert_array_equal(first.test.labels, again.test.labels)
  assert again.class_names == CIFAR10_CLASS_NAMES and again.train.inputs.dtype == np.uint8


def truncated(archive: Path) -> None:
  archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])


def header_damaged(archive: Path) -> None:
  archive.write_bytes(gzip.compress(damage_tar(gzip.decompress(archive.read_bytes()), "header")))


@pytest.mark.parametrize(
  "damage, problem",
  [
    (truncated, "damaged .tar.gz archive: EOFError"),
    (lambda a: a.write_bytes(a.read_bytes()[:-8]), "damaged .tar.gz archive"),  # CRC trailer
    (header_damaged, "header at byte .* does not parse"),
  ],
  ids=["truncated", "no_crc", "bad_header"],
)
def test_a_damaged_cifar_archive_is_an_error_and_caches_nothing(
  tmp_path, cache_dir, damage, problem
):
  write_cifar(tmp_path, "cifar10", "binary")
  damage(tmp_path / "cifar-10-binary.tar.gz")
  with pytest.raises(ValueError, match=problem) as error:
    load_local("cifar10", tmp_path, cache_dir)
  assert "cifar-10-binary.tar.gz" in str(error.value) and "download it again" in str(error.value)
  assert cache_files(cache_dir) == []


def cifar_with(dataset: str, form: str, change) -> dict[str, bytes]:
  members, _ = cifar_members(dataset, form, 100 if dataset == "cifar100" else 10)
  change(members)
  return members


@pytest.mark.parametrize(
  "dataset, form, change, problem",
  [
    ("cifar10", "binary", lambda m: m.pop("data_batch_3.bin"), "data_batch_3.bin missing"),
    ("cifar10", "python", lambda m: m.pop("test_batch"), "test_batch missing"),
    (
      "cifar10", "binary", lambda m: m.update({"test_batch.bin": m["test_batch.bin"][:-1]}),
      "not a whole number of 3,073-byte records",
    ),
    (
      "cifar100", "binary", lambda m: m.update({"train.bin": m["train.bin"] + b"\0" * 3073}),
      "not a whole number of 3,074-byte records",
    ),
    (
      "cifar10", "binary", lambda m: m.update({"test_batch.bin": b"\x0a" + m["test_batch.bin"][1:]}),
      "labels outside 0..9",
    ),
    (
      "cifar100", "binary", lambda m: m.update({"test.bin": b"\x05" + m["test.bin"][1:]}),
      "not their fine label's superclass",
    ),
    (
      "cifar10", "python", lambda m: m.update(test_batch=py2_pickle([1, 2])),
      "holds a list, not a batch dict",
    ),
    (
      "cifar10", "python", lambda m: m.update(test_batch=py2_pickle({b"data": np.zeros((2, 3072), np.uint8)})),
      "no 'labels' entry",
    ),
    (
      "cifar10", "python", lambda m: m.update(test_batch=m["test_batch"][:-100]),
      "test_batch: not a readable pickle",
    ),
  ],
  ids=[
    "missing_batch", "missing_test_batch", "cut_record", "extra_record_bytes", "bad_label",
    "bad_superclass", "not_a_dict", "no_labels", "truncated_pickle",
  ],
)  # fmt: skip
def test_damaged_cifar_files_are_errors_naming_the_file(
  tmp_path, cache_dir, dataset, form, change, problem
):
  members = cifar_with(dataset, form, change)
  write_cifar(tmp_path, dataset, form, members=members)
  with pytest.raises(ValueError, match=problem):
    load_local(dataset, tmp_path, cache_dir)
  assert cache_files(cache_dir) == []


def test_a_missing_file_in_an_extracted_folder_is_an_error(tmp_path, cache_dir):
  write_cifar(tmp_path, "cifar10", "python", extracted=True)
  (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
  with pytest.raises(ValueError, match="data_batch_5 missing from the folder"):
    load_local("cifar10", tmp_path, cache_dir)


def test_no_cifar_files_name_what_is_expected(tmp_path, cache_dir):
  with pytest.raises(FileNotFoundError, match="cifar-100-binary.tar.gz.*cifar-100-python.tar.gz"):
    load_local("cifar100", tmp_path, cache_dir)


# --- the restricted unpickler -------------------------------------------------------------------


class RunsACommand:
  """Unpickling this calls `os.system(command)` (or another callable) through `__reduce__`."""

  def __init__(self, call, *args) -> None:
    self.call, self.args = call, args

  def __reduce__(self):
    return self.call, self.args


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("call", ["system", "eval", "subprocess"])
def test_a_cifar_pickle_that_would_run_code_is_refused_and_nothing_runs(
  tmp_path, cache_dir, protocol, call
):
  marker = tmp_path / "pwned"
  payload = {
    "system": RunsACommand(os.system, f"touch {marker}"),
    "eval": RunsACommand(eval, f"open({str(marker)!r}, 'w').close()"),
    "subprocess": RunsACommand(subprocess.check_call, ["touch", str(marker)]),
  }[call]
  batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10)), b"x": payload}
  members = cifar_with("cifar10", "python", lambda m: None)
  members["test_batch"] = pickle.dumps(batch, protocol=protocol)
  write_cifar(tmp_path, "cifar10", "python", members=members)
  with pytest.raises(UnsafePickleError, match="cifar-10-python.tar.gz:test_batch: refused to"):
    load_local("cifar10", tmp_path, cache_dir)
  assert not marker.exists() and cache_files(cache_dir) == []
  pickle.loads(members["test_batch"])  # the plain unpickler runs it: the payload is live
  assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_unpickler_reads_containers_bytes_and_arrays_at_every_protocol(protocol):
  arrays = [
    np.arange(12, dtype="<i4").reshape(3, 4),
    np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3)),
    np.array(["ab", "c"]),
    np.zeros((0, 3), np.uint8),
  ]
  value = {"a": arrays, b"b": (1, 2.5, None, True, b"", b"\xff"), "c": {1, 2}, "d": "é"}
  loaded = restricted_loads(pickle.dumps(value, protocol=protocol), "fixture")
  assert loaded["c"] == {1, 2} and loaded[b"b"] == value[b"b"] and loaded["d"] == "é"
  for got, want in zip(loaded["a"], arrays):
    assert got.dtype == want.dtype and got.flags.writeable
    np.testing.assert_array_equal(got, want)


def test_the_unpickler_reads_python2_numpy1_pickles():
  value = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [3, 300, 70000]}
  data = py2_pickle(value)
  assert b"numpy.core.multiarray\n_reconstruct" in data
  loaded = restricted_loads(data, "fixture")
  np.testing.assert_array_equal(loaded[b"data"], value[b"data"])
  assert loaded[b"labels"] == [3, 300, 70000]


@pytest.mark.parametrize(
  "value, problem",
  [
    (np.array([None], object), "refused dtype 'O8'"),
    (np.zeros(2, [("a", "u1")]), "refused dtype"),
    (np.float32(1), "refused to unpickle numpy._core.multiarray.scalar"),
    (print, "refused to unpickle builtins.print"),
  ],
)
def test_the_unpickler_refuses_objects_structured_arrays_and_other_globals(value, problem):
  with pytest.raises(ValueError, match=problem):
    restricted_loads(pickle.dumps(value), "fixture")


# --- Tiny-ImageNet fixtures ---------------------------------------------------------------------

WNIDS = ("n02124075", "n04067472", "n04540053", "n04099969")  # wnids.txt is not sorted


def jpeg(seed: int, mode: str = "RGB", size: int = 64) -> bytes:
  rng = np.random.default_rng(seed)
  shape = (size, size, 3) if mode == "RGB" else (size, size)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, "JPEG")
  return buffer.getvalue()


def tiny_imagenet_files(per_class: int = 2, val_per_class: int = 1) -> dict[str, bytes]:
  """The folder's files by path: wnids, words, train images and boxes, val, test, one gray."""
  files = {"wnids.txt": "".join(f"{w}\n" for w in WNIDS).encode(), "words.txt": b"n0\tthing\n"}
  for c, wnid in enumerate(WNIDS):
    for i in range(per_class):
      mode = "L" if (c, i) == (1, 0) else "RGB"  # a grayscale JPEG, as the real set has
      files[f"train/{wnid}/images/{wnid}_{i}.JPEG"] = jpeg(100 * c + i, mode)
    files[f"train/{wnid}/{wnid}_boxes.txt"] = b""
  annotations = []
  for i in range(len(WNIDS) * val_per_class):
    wnid = WNIDS[::-1][i % len(WNIDS)]
    files[f"val/images/val_{i}.JPEG"] = jpeg(1000 + i)
    annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t3\t60\t62\n")
  files["val/val_annotations.txt"] = "".join(annotations).encode()
  files["test/images/test_0.JPEG"] = jpeg(5000)
  return files


def write_tiny_imagenet(root: Path, files: dict[str, bytes], *, as_zip: bool = False) -> Path:
  root.mkdir(parents=True, exist_ok=True)
  if as_zip:
    path = root / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
      for name, data in files.items():
        archive.writestr(f"tiny-imagenet-200/{name}", data)
    return path
  for name, data in files.items():
    (root / "tiny-imagenet-200" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "tiny-imagenet-200" / name).write_bytes(data)
  return root / "tiny-imagenet-200"


# --- Tiny-ImageNet reader -----------------------------------------------------------------------


def test_tiny_imagenet_folder_and_zip_give_the_same_rgb_images_and_wnid_labels(tmp_path, cache_dir):
  files = tiny_imagenet_files()
  write_tiny_imagenet(tmp_path / "folder", files)
  write_tiny_imagenet(tmp_path / "zip", files, as_zip=True)
  with pytest.warns(DataSizeWarning, match="found classes 4, train 8, test 4"):
    tree = load_local("tiny_imagenet", tmp_path / "folder", cache_dir)
  archive = load_local("tiny_imagenet", tmp_path / "zip", cache_dir)
  assert tree.class_names == WNIDS and archive.class_names == WNIDS
  assert tree.train.inputs.shape == (8, 64, 64, 3) and tree.train.inputs.dtype == np.uint8
  assert tree.test.inputs.shape == (4, 64, 64, 3) and tree.test.labels.dtype == np.int32
  for split_name in ("train", "test"):
    np.testing.assert_array_equal(
      getattr(tree, split_name).inputs, getattr(archive, split_name).inputs
    )
    np.testing.assert_array_equal(
      getattr(tree, split_name).labels, getattr(archive, split_name).labels
    )
  # Sorted by path: train/<wnid>/... in the order of the sorted wnids; labels in wnids.txt's.
  assert tree.train.labels.tolist() == [0, 0, 1, 1, 3, 3, 2, 2]
  assert tree.test.labels.tolist() == [3, 2, 1, 0]  # val_i is annotated WNIDS[::-1][i]
  gray = tree.train.inputs[2]  # n04067472_0, the grayscale JPEG
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  expected = np.asarray(Image.open(io.BytesIO(files["val/images/val_0.JPEG"])).convert("RGB"))
  np.testing.assert_array_equal(tree.test.inputs[0], expected)


def test_tiny_imagenet_is_found_as_the_folder_itself_and_cached(tmp_path, cache_dir):
  folder = write_tiny_imagenet(tmp_path, tiny_imagenet_files())
  first = load_local("tiny_imagenet", folder, cache_dir)
  patched = "classp_jax.data.load.read_tiny_imagenet"
  with mock.patch(patched, side_effect=AssertionError("not cached")):
    again = load_local("tiny_imagenet", tmp_path, cache_dir)  # found as tmp_path/tiny-imagenet-200
  np.testing.assert_array_equal(first.train.inputs, again.train.inputs)
  assert again.class_names == WNIDS


@pytest.mark.parametrize(
  "damage, problem",
  [
    ({"val/val_annotations.txt": None}, "no val/val_annotations.txt"),
    ({"wnids.txt": "".join(f"{w}\n" for w in (*WNIDS, WNIDS[0])).encode()}, "listed more than once"),
    ({"val/images/val_9.JPEG": jpeg(9)}, "no annotation for val_9.JPEG"),
    ({"val/images/val_0.JPEG": None}, "lists images missing from val/images/: val_0.JPEG"),
    ({"train/n09999999/images/n09999999_0.JPEG": jpeg(1)}, "wnids not in wnids.txt: n09999999"),
    ({"train/n02124075/images/n02124075_0.JPEG": jpeg(1, size=32)}, "a 32x32 image, not 64x64"),
    ({"train/n02124075/images/n02124075_1.JPEG": jpeg(1)[:200]}, "n02124075_1.JPEG: not a readable image"),
    ({"val/val_annotations.txt": b"val_0.JPEG\tn01234567\t0\t0\t1\t1\n"}, "n01234567 is not in wnids.txt"),
  ],
  ids=[
    "no_annotations", "repeated_wnid", "unannotated", "annotated_missing", "stray_class",
    "small_image", "cut_jpeg", "unknown_annotation",
  ],
)  # fmt: skip
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_damaged_tiny_imagenet_files_are_errors(tmp_path, cache_dir, damage, problem, as_zip):
  files = tiny_imagenet_files()
  for path, value in damage.items():
    if value is None:
      del files[path]
    else:
      files[path] = value
  write_tiny_imagenet(tmp_path, files, as_zip=as_zip)
  with pytest.raises(ValueError, match=problem):
    load_local("tiny_imagenet", tmp_path, cache_dir)
  assert cache_files(cache_dir) == []


def test_a_damaged_tiny_imagenet_zip_is_an_error(tmp_path, cache_dir):
  path = write_tiny_imagenet(tmp_path, tiny_imagenet_files(), as_zip=True)
  data = path.read_bytes()
  image = data.index(jpeg(101)) + 400  # inside a stored JPEG: its CRC no longer matches
  path.write_bytes(data[:image] + bytes([data[image] ^ 0xFF]) + data[image + 1 :])
  with pytest.raises(ValueError, match="damaged zip archive .*Bad CRC-32"):
    load_local("tiny_imagenet", tmp_path, cache_dir)
  path.write_bytes(data[: len(data) // 2])  # truncated: the central directory is gone
  with pytest.raises(ValueError, match="tiny-imagenet-200.zip: damaged zip archive"):
    load_local("tiny_imagenet", tmp_path, cache_dir)


def test_tiny_imagenet_is_not_in_tfds(tmp_path):
  with pytest.raises(FileNotFoundError, match="not in the TFDS catalog.*source='local'"):
    load_dataset("tiny_imagenet", source="tfds")
  with pytest.raises(FileNotFoundError, match="tiny-imagenet-200.zip"):
    load_dataset("tiny_imagenet", data_dir=tmp_path)


# --- TFDS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "cifar100_coarse"])
def test_cifar_from_tfds(tmp_path, name):
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    dataset = load_dataset(name, source="tfds", cache_dir=tmp_path)
    fine = load_dataset("cifar100", source="tfds", cache_dir=tmp_path)
  assert dataset.train.inputs.shape == (6, 32, 32, 3) and dataset.train.inputs.dtype == np.uint8
  assert dataset.source == "tfds" and dataset.num_classes == {
    "cifar10": 10,
    "cifar100_coarse": 20,
  }.get(name, 100)
  if name == "cifar100_coarse":
    np.testing.assert_array_equal(dataset.train.labels, CIFAR100_COARSE_OF_FINE[fine.train.labels])


# --- streams ------------------------------------------------------------------------------------


def synthetic(name: str, num_classes: int, shape: tuple[int, ...]) -> Dataset:
  labels = np.arange(2 * num_classes, dtype=np.int32) % num_classes
  split = Split(np.zeros((len(labels), *shape), np.uint8), labels)
  return Dataset(name, split, split, tuple(f"c{c}" for c in range(num_classes)))


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_split_cifar10_cifar100_and_tiny_imagenet_deal_their_classes_to_tasks(
  tmp_path, cache_dir, scenario
):
  write_cifar(tmp_path, "cifar10", "binary")
  datasets = [
    load_local("cifar10", tmp_path, cache_dir),
    synthetic("cifar100", 100, (32, 32, 3)),
    synthetic("tiny_imagenet", 200, (64, 64, 3)),
  ]
  for dataset, (tasks, per_task, name) in zip(
    datasets, [(5, 2, "split_cifar10"), (10, 10, "split_cifar100"), (10, 20, "split_tinyimagenet")]
  ):
    stream = standard_split_stream(dataset, scenario)
    assert stream.name == name and len(stream) == tasks and stream.scenario == scenario
    assert stream.input_shape == dataset.train.inputs.shape[1:]
    assert stream.num_classes == (per_task if scenario == "domain" else dataset.num_classes)
    for t, task in enumerate(stream.tasks):
      group = list(range(t * per_task, (t + 1) * per_task))
      assert task.num_classes == per_task and task.train.inputs.dtype == np.float32
      if scenario == "domain":
        assert task.classes == tuple(range(per_task))
        assert sorted(set(task.test.labels.tolist())) == list(range(per_task))
      else:
        assert task.classes == tuple(group)
        assert sorted(set(task.train.labels.tolist())) == group
      assert task.class_names == tuple(dataset.class_names[c] for c in group)


def test_a_dataset_without_a_standard_split_is_a_clear_error():
  with pytest.raises(ValueError, match="no standard split of 'cifar100_coarse'.*split_stream"):
    standard_split_stream(synthetic("cifar100_coarse", 20, (32, 32, 3)))
