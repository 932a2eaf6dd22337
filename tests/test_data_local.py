"""load_dataset from local standard files and the embedded digits; the cache."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
  IMDB_REVIEWS,
  PHRASEBANK_LINES,
  aclimdb_tar_bytes,
  damage_tar,
  flip_bytes,
  idx_bytes,
  phrasebank_bytes,
  write_aclimdb_archive,
  write_aclimdb_tree,
  write_idx_folder,
)

from classp_jax.data import KNOWN_DATASETS, load_dataset
from classp_jax.data.checks import DataSizeWarning
from classp_jax.data.load import FASHION_MNIST_CLASS_NAMES

# The fixtures are far smaller than the standard datasets; the tests that check this
# warning catch it themselves.
pytestmark = pytest.mark.filterwarnings("ignore::classp_jax.data.checks.DataSizeWarning")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
  return tmp_path / "cache"


def load_local(name: str, data_dir: Path, cache_dir: Path, **kwargs):
  return load_dataset(name, source="local", data_dir=data_dir, cache_dir=cache_dir, **kwargs)


# --- MNIST-family IDX files ---


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_as_uint8_images(tmp_path, cache_dir, gz):
  arrays = write_idx_folder(tmp_path / "fmnist", gz=gz)
  dataset = load_local("fashion_mnist", tmp_path / "fmnist", cache_dir)
  assert dataset.train.inputs.shape == (20, 4, 4, 1)
  assert dataset.train.inputs.dtype == np.uint8 and dataset.train.labels.dtype == np.int32
  np.testing.assert_array_equal(dataset.test.inputs[..., 0], arrays["t10k-images-idx3-ubyte"])
  np.testing.assert_array_equal(dataset.train.labels, arrays["train-labels-idx1-ubyte"])
  assert dataset.class_names == FASHION_MNIST_CLASS_NAMES and dataset.num_classes == 10
  assert dataset.source == "local"


def test_local_files_are_found_in_a_subfolder_named_after_the_dataset(tmp_path, cache_dir):
  write_idx_folder(tmp_path / "fashion-mnist")
  assert len(load_local("fashion_mnist", tmp_path, cache_dir).train) == 20


@pytest.mark.parametrize(
  "file_name, content, problem",
  [
    ("train-images-idx3-ubyte", b"\x00\x00\x08\x01" + bytes(20), "wrong magic number"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 4, 4)))[:-5], "truncated data"),
    ("train-images-idx3-ubyte", b"\x00\x00", "truncated header"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.arange(9) % 10), "10 images but"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.array([*range(9), 10])), "labels outside 0..9"),
    ("train-labels-idx1-ubyte", idx_bytes(np.arange(20) % 9), "no examples of class 9"),
    ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 5, 4))), "4x4 images but"),
  ],
)
def test_corrupt_idx_files_raise_value_errors_naming_the_file(
  tmp_path, cache_dir, file_name, content, problem
):
  write_idx_folder(tmp_path, gz=False)
  (tmp_path / file_name).write_bytes(content)
  with pytest.raises(ValueError, match=problem) as error:
    load_local("mnist", tmp_path, cache_dir)
  assert file_name in str(error.value)
  assert cache_files(cache_dir) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_gzip_file_is_a_value_error(tmp_path, cache_dir, damage):
  write_idx_folder(tmp_path, n_train=200)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  if damage == "flip":
    flip_bytes(path, count=8)
  else:
    path.write_bytes(path.read_bytes()[:-8])  # the CRC and length trailer
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: not a readable gzip"):
    load_local("mnist", tmp_path, cache_dir)
  assert cache_files(cache_dir) == []


def test_an_empty_split_is_an_error(tmp_path, cache_dir):
  write_idx_folder(tmp_path, n_test=0)
  with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: the test split is empty"):
    load_local("mnist", tmp_path, cache_dir)


def test_missing_files_name_what_is_expected_and_where_to_get_it(tmp_path, cache_dir):
  with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*yann.lecun"):
    load_local("mnist", tmp_path / "nowhere", cache_dir)
  with pytest.raises(FileNotFoundError, match="needs data_dir"):
    load_dataset("mnist", source="local")


def test_unknown_names_and_sources_are_clear_errors():
  with pytest.raises(ValueError, match="known datasets: mnist, fashion_mnist") as error:
    load_dataset("imagenet2012")
  assert all(name in str(error.value) for name in KNOWN_DATASETS)
  with pytest.raises(ValueError, match="unknown source"):
    load_dataset("mnist", source="web")


# --- aclImdb ---


def test_aclimdb_folder_and_archive_give_the_same_raw_reviews(tmp_path, cache_dir):
  tree = write_aclimdb_tree(tmp_path / "folder")
  archive_dir = tmp_path / "archive"
  archive_dir.mkdir()
  write_aclimdb_archive(tree, archive_dir / "aclImdb_v1.tar.gz")
  from_folder = load_local("imdb_reviews", tmp_path / "folder", cache_dir)
  from_archive = load_local("imdb_reviews", archive_dir, cache_dir)
  from_tree_itself = load_local("imdb_reviews", tree, cache_dir, cache=False)
  for dataset in (from_archive, from_tree_itself):
    for split in ("train", "test"):
      ours, theirs = getattr(from_folder, split), getattr(dataset, split)
      assert list(ours.inputs) == list(theirs.inputs)
      np.testing.assert_array_equal(ours.labels, theirs.labels)
  assert from_folder.class_names == ("neg", "pos")
  expected = sorted((f"{label}/{f}", t, label) for s, label, f, t in IMDB_REVIEWS if s == "train")
  assert list(from_folder.train.inputs) == [text for _, text, _ in expected]  # raw: <br />
  assert from_folder.train.labels.tolist() == [0, 0, 1, 1]  # neg = 0, pos = 1; no unsup
  assert from_folder.train.inputs.dtype == object


def test_a_damaged_archive_is_a_value_error(tmp_path, cache_dir):
  (tmp_path / "aclImdb_v1.tar.gz").write_bytes(gzip.compress(b"not a tar")[:-3])
  with pytest.raises(ValueError, match="aclImdb_v1.tar.gz"):
    load_local("imdb_reviews", tmp_path, cache_dir)


def many_reviews(per_label: int) -> list[tuple[str, str, str, str]]:
  rng = np.random.default_rng(0)
  words = np.array("a great dull film plot moving awful lovely acting scenes".split())
  return [
    (split, label, f"{i}_{8 if label == 'pos' else 3}.txt", " ".join(rng.choice(words, 40)))
    for split in ("train", "test")
    for label in ("neg", "pos")
    for i in range(per_label)
  ]


@pytest.fixture
def archive_dir(tmp_path) -> Path:
  """A folder holding an intact `aclImdb_v1.tar.gz` of 4 x 30 reviews (about 5 KB)."""
  tree = write_aclimdb_tree(tmp_path / "tree", many_reviews(30))
  (tmp_path / "archive").mkdir()
  write_aclimdb_archive(tree, tmp_path / "archive" / "aclImdb_v1.tar.gz")
  return tmp_path / "archive"


@pytest.mark.parametrize(
  "damage, problem",
  [
    ("flip", "damaged .tar.gz archive"),  # 64 bytes inverted mid-file, as in issue 11
    ("truncate", "damaged .tar.gz archive: EOFError"),
    ("truncate_trailer", "damaged .tar.gz archive: EOFError"),  # only the CRC and length cut
  ],
)
def test_a_damaged_or_truncated_archive_raises_and_caches_nothing(
  archive_dir, cache_dir, damage, problem
):
  archive = archive_dir / "aclImdb_v1.tar.gz"
  assert len(load_local("imdb_reviews", archive_dir, cache_dir, cache=False).train) == 60
  if damage == "flip":
    flip_bytes(archive)
  else:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-8])
  with pytest.raises(ValueError, match=problem) as error:
    load_local("imdb_reviews", archive_dir, cache_dir)
  assert str(archive) in str(error.value) and "Nothing was loaded" in str(error.value)
  assert cache_files(cache_dir) == []


@pytest.mark.parametrize(
  "damage, problem",
  [
    ("header", "header at byte [0-9,]+ does not parse"),
    ("no_end", "without an end-of-archive marker"),
    ("trailing", "data follows the end-of-archive marker"),
  ],
)
def test_tar_damage_inside_an_intact_gzip_stream_is_an_error(
  tmp_path, archive_dir, cache_dir, damage, problem
):
  tar = damage_tar(aclimdb_tar_bytes(tmp_path / "tree" / "aclImdb"), damage)
  if damage == "header":  # tarfile alone stops there quietly: the silent partial load
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
      assert 0 < len(archive.getmembers()) < 120
  write_aclimdb_archive(tmp_path / "tree" / "aclImdb", archive_dir / "aclImdb_v1.tar.gz", tar)
  with pytest.raises(ValueError, match=problem):
    load_local("imdb_reviews", archive_dir, cache_dir)
  assert cache_files(cache_dir) == []


def test_a_review_twice_in_the_archive_is_an_error(tmp_path, cache_dir):
  tree = write_aclimdb_tree(tmp_path / "tree")
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w") as tar:
    for path in [*sorted(tree.rglob("*.txt")), tree / "test" / "pos" / "0_8.txt"]:
      tar.add(path, arcname=path.relative_to(tree.parent).as_posix())
  write_aclimdb_archive(tree, tmp_path / "aclImdb_v1.tar.gz", buffer.getvalue())
  with pytest.raises(ValueError, match="aclImdb/test/pos/0_8.txt appears twice"):
    load_local("imdb_reviews", tmp_path, cache_dir)


@pytest.mark.parametrize("form", ["tree", "archive"])
@pytest.mark.parametrize(
  "removed, problem",
  [(("test/pos",), "no test/pos reviews"), (("train/neg", "train/pos"), "no train/neg, train/pos")],
)
def test_a_missing_split_or_label_is_an_error(tmp_path, cache_dir, form, removed, problem):
  kept = [r for r in IMDB_REVIEWS if f"{r[0]}/{r[1]}" not in removed]
  tree = write_aclimdb_tree(tmp_path / "data", kept)
  if form == "archive":
    write_aclimdb_archive(tree, tmp_path / "aclImdb_v1.tar.gz")
  data_dir = tmp_path if form == "archive" else tmp_path / "data"
  with pytest.raises(ValueError, match=problem) as error:
    load_local("imdb_reviews", data_dir, cache_dir)
  assert "test/neg 2" in str(error.value)  # the counts found
  assert cache_files(cache_dir) == []


def test_an_empty_review_is_an_error(tmp_path, cache_dir):
  tree = write_aclimdb_tree(tmp_path)
  (tree / "train" / "pos" / "0_9.txt").write_bytes(b"")
  with pytest.raises(ValueError, match="train/pos/0_9.txt is empty"):
    load_local("imdb_reviews", tmp_path, cache_dir)


@pytest.mark.parametrize("form", ["tree", "archive"])
def test_counts_off_the_full_set_warn_on_every_load(tmp_path, cache_dir, form):
  tree = write_aclimdb_tree(tmp_path / "data")
  if form == "archive":
    write_aclimdb_archive(tree, tmp_path / "aclImdb_v1.tar.gz")
  data_dir = tmp_path if form == "archive" else tmp_path / "data"
  expected = "found train/neg 2, train/pos 2, test/neg 2, test/pos 2; the standard .* 12,500"
  for _ in range(2):  # built, then from the cache
    with pytest.warns(DataSizeWarning, match=expected):
      dataset = load_local("imdb_reviews", data_dir, cache_dir)
    assert len(dataset.train) == 4
  assert len(cache_files(cache_dir)) == 1


# --- Financial PhraseBank ---


@pytest.mark.parametrize(
  "encoding, newline",
  [("utf-8-sig", "\r\n"), ("iso-8859-1", "\r\n"), ("utf-8", "\n"), ("iso-8859-1", "\n")],
)
def test_phrasebank_reads_every_encoding_and_line_end(tmp_path, cache_dir, encoding, newline):
  (tmp_path / "Sentences_50Agree.txt").write_bytes(phrasebank_bytes(encoding, newline))
  dataset = load_local("financial_phrasebank", tmp_path, cache_dir)
  assert dataset.class_names == ("negative", "neutral", "positive")
  assert len(dataset.train) == 24 and len(dataset.test) == 6  # 20% of each class
  assert np.bincount(dataset.test.labels).tolist() == [2, 2, 2]
  sentences = set(dataset.train.inputs) | set(dataset.test.inputs)
  assert sentences == {s for s, _ in PHRASEBANK_LINES}  # "Lähde", inner "@" intact
  by_sentence = dict(PHRASEBANK_LINES)
  for sentence, label in zip(dataset.train.inputs, dataset.train.labels):
    assert dataset.class_names[label] == by_sentence[sentence]


def test_phrasebank_split_is_seeded(tmp_path, cache_dir):
  (tmp_path / "Sentences_50Agree.txt").write_bytes(phrasebank_bytes())
  first = load_local("financial_phrasebank", tmp_path, cache_dir, cache=False)
  again = load_local("financial_phrasebank", tmp_path, cache_dir)
  other = load_local("financial_phrasebank", tmp_path, cache_dir, split_seed=1)
  assert list(first.test.inputs) == list(again.test.inputs)
  assert list(first.test.inputs) != list(other.test.inputs)


def test_phrasebank_agreement_file_choice(tmp_path, cache_dir):
  folder = tmp_path / "FinancialPhraseBank-v1.0"
  folder.mkdir()
  (folder / "Sentences_AllAgree.txt").write_bytes(phrasebank_bytes(lines=PHRASEBANK_LINES[:12]))
  (folder / "Sentences_66Agree.txt").write_bytes(phrasebank_bytes())
  assert len(load_local("financial_phrasebank", tmp_path, cache_dir).train) == 24  # 66Agree
  all_agree = load_local(
    "financial_phrasebank", tmp_path, cache_dir, phrasebank_agreement="AllAgree"
  )
  assert len(all_agree.train) + len(all_agree.test) == 12
  with pytest.raises(FileNotFoundError, match="Sentences_50Agree.txt"):
    load_local("financial_phrasebank", tmp_path, cache_dir, phrasebank_agreement="50Agree")
  with pytest.raises(ValueError, match="AllAgree"):
    load_local("financial_phrasebank", tmp_path, cache_dir, phrasebank_agreement="90Agree")


def test_a_malformed_phrasebank_line_gives_its_number(tmp_path, cache_dir):
  lines = phrasebank_bytes("iso-8859-1").split(b"\r\n")
  lines[3] = b"no label on this line"
  (tmp_path / "Sentences_50Agree.txt").write_bytes(b"\r\n".join(lines))
  with pytest.raises(ValueError, match="line 4"):
    load_local("financial_phrasebank", tmp_path, cache_dir)
  lines[3] = b"an unknown label@great"
  (tmp_path / "Sentences_50Agree.txt").write_bytes(b"\r\n".join(lines))
  with pytest.raises(ValueError, match="line 4.*great"):
    load_local("financial_phrasebank", tmp_path, cache_dir)


@pytest.mark.parametrize(
  "lines, problem",
  [
    ([line for line in PHRASEBANK_LINES if line[1] != "neutral"], "no neutral sentences"),
    (PHRASEBANK_LINES[:6], "class 0 has 2 examples: too few"),  # 2 * 0.2 rounds to 0
  ],
)
def test_a_phrasebank_file_with_a_class_missing_or_too_small_is_an_error(
  tmp_path, cache_dir, lines, problem
):
  (tmp_path / "Sentences_50Agree.txt").write_bytes(phrasebank_bytes(lines=lines))
  with pytest.raises(ValueError, match=problem) as error:
    load_local("financial_phrasebank", tmp_path, cache_dir)
  assert "Sentences_50Agree.txt" in str(error.value)
  assert cache_files(cache_dir) == []


def test_a_phrasebank_file_cut_mid_line_is_an_error(tmp_path, cache_dir):
  content = phrasebank_bytes()
  (tmp_path / "Sentences_50Agree.txt").write_bytes(content[: content.index(b"@neutral") + 3])
  with pytest.raises(ValueError, match="line 3.*Finland@ne'$"):
    load_local("financial_phrasebank", tmp_path, cache_dir)


def test_a_phrasebank_file_of_another_size_than_distributed_warns(tmp_path, cache_dir):
  (tmp_path / "Sentences_AllAgree.txt").write_bytes(phrasebank_bytes())
  for _ in range(2):  # built, then from the cache
    expected = "Sentences_AllAgree.txt: found sentences 30; .* 2,264"
    with pytest.warns(DataSizeWarning, match=expected):
      load_local("financial_phrasebank", tmp_path, cache_dir)


def test_phrasebank_is_not_in_tfds(tmp_path):
  with pytest.raises(FileNotFoundError, match="not in the TFDS catalog.*source='local'"):
    load_dataset("financial_phrasebank", source="tfds")
  with pytest.raises(FileNotFoundError, match="Sentences_50Agree.txt"):
    load_dataset("financial_phrasebank", data_dir=tmp_path)  # auto, nothing there


# --- digits ---


def test_digits_are_real_scaled_and_split_by_class():
  digits = load_dataset("digits")
  assert digits.source == "embedded" and digits.class_names == tuple("0123456789")
  assert digits.train.inputs.shape[1:] == (8, 8, 1) and digits.train.inputs.dtype == np.uint8
  assert digits.train.inputs.max() == 255 and len(digits.train) + len(digits.test) == 1797
  test_share = np.bincount(digits.test.labels) / np.bincount(
    np.concatenate([digits.train.labels, digits.test.labels])
  )
  np.testing.assert_allclose(test_share, 0.2, atol=0.01)
  np.testing.assert_array_equal(digits.test.inputs, load_dataset("digits").test.inputs)
  with pytest.raises(ValueError, match="scikit-learn"):
    load_dataset("digits", source="tfds")


# --- the cache ---


def cache_files(cache_dir: Path) -> list[Path]:
  return sorted(cache_dir.iterdir()) if cache_dir.exists() else []


def test_cache_hit_returns_the_same_data_and_a_changed_source_misses(tmp_path, cache_dir):
  write_idx_folder(tmp_path / "data")
  first = load_local("mnist", tmp_path / "data", cache_dir)
  assert len(cache_files(cache_dir)) == 1
  again = load_local("mnist", tmp_path / "data", cache_dir)
  np.testing.assert_array_equal(first.train.inputs, again.train.inputs)
  assert again.class_names == first.class_names and again.source == "local"
  write_idx_folder(tmp_path / "data", n_train=20, seed=1)  # new files: new sizes and mtimes
  assert len(load_local("mnist", tmp_path / "data", cache_dir).train) == 20
  assert len(cache_files(cache_dir)) == 2


def test_a_source_changed_in_place_with_its_size_and_mtime_kept_misses_the_cache(
  tmp_path, cache_dir
):
  write_idx_folder(tmp_path / "data", gz=False)
  first = load_local("mnist", tmp_path / "data", cache_dir)
  images = tmp_path / "data" / "train-images-idx3-ubyte"
  before = images.stat()
  data = bytearray(images.read_bytes())
  data[16:] = bytes(255 - b for b in data[16:])  # every pixel changed, the header kept
  images.write_bytes(bytes(data))
  os.utime(images, ns=(before.st_atime_ns, before.st_mtime_ns))  # as bit rot would leave it
  assert (images.stat().st_size, images.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
  again = load_local("mnist", tmp_path / "data", cache_dir)
  np.testing.assert_array_equal(again.train.inputs, 255 - first.train.inputs)
  assert len(cache_files(cache_dir)) == 2


def test_text_survives_the_cache(tmp_path, cache_dir):
  write_aclimdb_tree(tmp_path)
  first = load_local("imdb_reviews", tmp_path, cache_dir)
  again = load_local("imdb_reviews", tmp_path, cache_dir)
  assert list(again.train.inputs) == list(first.train.inputs)
  assert again.train.inputs.dtype == object and again.class_names == ("neg", "pos")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(tmp_path, cache_dir, damage):
  write_idx_folder(tmp_path / "data")
  expected = load_local("mnist", tmp_path / "data", cache_dir)
  (entry,) = cache_files(cache_dir)
  content = entry.read_bytes()
  entry.write_bytes(
    {"truncate": content[: len(content) // 2], "garbage": os.urandom(500), "empty": b""}[damage]
  )
  with pytest.warns(UserWarning, match="unreadable cache file"):
    rebuilt = load_local("mnist", tmp_path / "data", cache_dir)
  np.testing.assert_array_equal(rebuilt.train.inputs, expected.train.inputs)
  assert entry.read_bytes() == content  # rewritten whole


def test_an_interrupted_cache_write_leaves_nothing(tmp_path, cache_dir, monkeypatch):
  write_idx_folder(tmp_path / "data")

  def crash(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(np, "savez", crash)
  with pytest.raises(KeyboardInterrupt):
    load_local("mnist", tmp_path / "data", cache_dir)
  assert cache_files(cache_dir) == []


def run_in_threads(count: int, target) -> list:
  results, errors = [None] * count, []

  def run(i):
    try:
      results[i] = target()
    except BaseException as error:  # reported by the test, not lost in the thread
      errors.append(error)

  threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(60)
  assert not errors, errors
  return results


def test_two_loads_writing_one_entry_at_once_both_succeed(tmp_path, cache_dir, monkeypatch):
  arrays = write_idx_folder(tmp_path / "data")
  both_writing = threading.Barrier(2, timeout=30)
  savez = np.savez

  def savez_then_wait(*args, **kwargs):  # both entries are written before either is renamed
    savez(*args, **kwargs)
    both_writing.wait()

  monkeypatch.setattr(np, "savez", savez_then_wait)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    loaded = run_in_threads(2, lambda: load_local("mnist", tmp_path / "data", cache_dir))
  assert [str(w.message) for w in caught] == []  # e.g. no "could not write cache file"
  for dataset in loaded:
    np.testing.assert_array_equal(dataset.train.labels, arrays["train-labels-idx1-ubyte"])
  assert [path.suffix for path in cache_files(cache_dir)] == [".npz"]  # one entry, no temp files
  monkeypatch.setattr("classp_jax.data.load.read_idx_splits", lambda files: 1 / 0)
  again = load_local("mnist", tmp_path / "data", cache_dir)  # from the cache
  np.testing.assert_array_equal(again.test.inputs, loaded[0].test.inputs)


def test_a_load_during_a_write_never_sees_the_half_written_entry(tmp_path, cache_dir, monkeypatch):
  write_idx_folder(tmp_path / "data")
  writing, finish = threading.Event(), threading.Event()
  savez = np.savez

  def slow_savez(file, **arrays):  # the writer stops halfway through its entry
    file.write(b"PK\x03\x04 the first bytes of a zip")
    writing.set()
    assert finish.wait(30)
    file.seek(0)
    file.truncate()
    savez(file, **arrays)

  monkeypatch.setattr(np, "savez", slow_savez)
  writer = threading.Thread(target=load_local, args=("mnist", tmp_path / "data", cache_dir))
  writer.start()
  assert writing.wait(30)
  monkeypatch.setattr(np, "savez", savez)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # an "unreadable cache file" warning would fail here
      reader = load_local("mnist", tmp_path / "data", cache_dir)  # a miss: it builds its own
  finally:
    finish.set()
    writer.join(30)
  assert len(reader.train) == 20
  assert [path.suffix for path in cache_files(cache_dir)] == [".npz"]


@pytest.mark.slow  # two fresh Python processes
def test_two_processes_building_one_entry_at_once_both_succeed(tmp_path, cache_dir):
  write_idx_folder(tmp_path / "data")
  script = textwrap.dedent(
    f"""
    import sys, time, warnings
    import numpy as np
    from classp_jax.data import load_dataset
    warnings.simplefilter("error")  # an unreadable entry would warn
    savez = np.savez
    def slow_savez(*args, **kwargs):  # widen the window in which both are writing
      savez(*args, **kwargs)
      time.sleep(0.5)
    np.savez = slow_savez
    from pathlib import Path
    ready = Path(sys.argv[1])
    (ready / sys.argv[2]).touch()
    while len(list(ready.iterdir())) < 2:  # start loading together
      time.sleep(0.01)
    for _ in range(5):
      dataset = load_dataset(
        "mnist", source="local", data_dir={str(tmp_path / "data")!r}, cache_dir={str(cache_dir)!r}
      )
    print(len(dataset.train), len(dataset.test))
    """
  )
  (tmp_path / "ready").mkdir()
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
  runs = [
    subprocess.Popen(
      [sys.executable, "-c", script, str(tmp_path / "ready"), str(i)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      env=env,
    )
    for i in range(2)
  ]
  for run in runs:
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err.decode()
    assert out.decode().split() == ["20", "10"]
  assert [path.suffix for path in cache_files(cache_dir)] == [".npz"]


def test_temporary_files_of_killed_writers_are_removed_once_stale(tmp_path, cache_dir):
  write_idx_folder(tmp_path / "data")
  load_local("mnist", tmp_path / "data", cache_dir)
  (entry,) = cache_files(cache_dir)
  stale, fresh = cache_dir / f"{entry.name}killed.tmp", cache_dir / f"{entry.name}live.tmp"
  stale.write_bytes(b"half")
  fresh.write_bytes(b"half")
  os.utime(stale, (time.time() - 2 * 3600,) * 2)
  entry.unlink()  # the next load writes the entry again
  load_local("mnist", tmp_path / "data", cache_dir)
  assert cache_files(cache_dir) == [entry, fresh]


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
  write_idx_folder(tmp_path / "data")
  monkeypatch.setenv("CLASSP_JAX_CACHE_DIR", str(tmp_path / "env-cache"))
  load_dataset("mnist", data_dir=tmp_path / "data")  # auto finds the local files
  assert len(cache_files(tmp_path / "env-cache")) == 1
  load_dataset("mnist", data_dir=tmp_path / "data", cache=False)
  assert len(cache_files(tmp_path / "env-cache")) == 1
