"""Continual-learning data: datasets, task streams and the text pipeline.

- `load_dataset` (load.py): TFDS, local standard files, or the embedded `digits`.
- `Split`, `Dataset`, `Task`, `TaskStream` (containers.py): the contracts the loop relies on.
- `SCENARIOS`: "task", "domain", "class" (containers.py; `TaskStream.scenario`).
- `sequential_stream`, `split_stream`, `standard_split_stream` (split CIFAR-10, CIFAR-100,
  Tiny-ImageNet, ...), `permuted_stream`, `digits_stream`, `joint_stream`, `subsample_stream`,
  and the logit masks of the scenarios `class_mask`, `label_class_masks`, `seen_class_mask`
  (streams.py); the long streams of the plasticity studies `long_permuted_stream`,
  `label_permuted_stream`, `rotated_stream` (plasticity_streams.py).
- `tokenize`, `Vocabulary`, `build_vocabulary` (vocabulary.py); `text_stream` (text.py).
- The cache of decoded arrays (cache.py), TFDS reading (tfds_source.py), and one reader per
  local file format (idx.py, aclimdb.py, phrasebank.py, digits.py, cifar.py, tiny_imagenet.py;
  with archives.py, the checked reading of .tar.gz files, and safe_pickle.py, the restricted
  unpickler of CIFAR's Python batches).
"""

from classp_jax.data.cache import CACHE_DIR_ENV, default_cache_dir
from classp_jax.data.checks import DataSizeWarning
from classp_jax.data.containers import SCENARIOS, Dataset, Split, Task, TaskStream
from classp_jax.data.load import KNOWN_DATASETS, dataset_folders, find_local_files, load_dataset
from classp_jax.data.plasticity_streams import (
  label_permuted_stream,
  long_permuted_stream,
  rotated_stream,
)
from classp_jax.data.stratified import stratified_split
from classp_jax.data.streams import (
  class_mask,
  digits_stream,
  joint_stream,
  label_class_masks,
  permuted_stream,
  seen_class_mask,
  sequential_stream,
  split_stream,
  standard_split_stream,
  subsample_stream,
)
from classp_jax.data.text import SENTIMENT_CLASSES, sentiment_labels, text_stream
from classp_jax.data.tfds_source import TfdsUnavailableError
from classp_jax.data.vocabulary import PAD_ID, UNK_ID, Vocabulary, build_vocabulary, tokenize

__all__ = [
  "CACHE_DIR_ENV",
  "DataSizeWarning",
  "KNOWN_DATASETS",
  "PAD_ID",
  "SCENARIOS",
  "SENTIMENT_CLASSES",
  "UNK_ID",
  "Dataset",
  "Split",
  "Task",
  "TaskStream",
  "TfdsUnavailableError",
  "Vocabulary",
  "build_vocabulary",
  "class_mask",
  "dataset_folders",
  "default_cache_dir",
  "digits_stream",
  "find_local_files",
  "joint_stream",
  "label_class_masks",
  "label_permuted_stream",
  "load_dataset",
  "long_permuted_stream",
  "permuted_stream",
  "rotated_stream",
  "seen_class_mask",
  "sentiment_labels",
  "sequential_stream",
  "split_stream",
  "standard_split_stream",
  "stratified_split",
  "subsample_stream",
  "text_stream",
  "tokenize",
]
