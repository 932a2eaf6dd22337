"""Results: the one schema of ``results.json``, its storage, and reading it back.

* `schema`: `RunEntry`, `ResultsHeader` and `MethodInfo`, the typed records;
* `store`: strict JSON, atomic writes merged under a lock;
* `naming`: the ``METHOD[KNOB=VALUE]`` rule of frontier points;
* `loading`: run folders' results read back, checked and merged per experiment;
* `selection`: the selection protocol of frontier points, and where grids grow.

Pure Python and NumPy: reading results never imports JAX.
"""

from classp_jax.results.loading import (
  METRICS,
  diverged_note,
  experiment_label,
  finished,
  is_diverged,
  load_results,
  read_results,
  runs_by_method,
  subsample,
)
from classp_jax.results.naming import is_variant, parse_variant, variant_name
from classp_jax.results.schema import (
  FAMILIES,
  LOWER_BOUND,
  PAPER_BASELINE,
  REFERENCE,
  REQUIRED_RUN_KEYS,
  REQUIRED_TOP_LEVEL_KEYS,
  UPPER_BOUND,
  MethodInfo,
  ResultsHeader,
  RunEntry,
)
from classp_jax.results.selection import (
  FLAT_MARGIN,
  FrontierPoint,
  Selection,
  best_per_method,
  has_validation,
  met_targets,
  method_info,
  method_order,
  neighbour_points,
  next_points,
  parse_select,
  select_points,
  selected_variants,
  selection_info,
  shown_value,
  target_accuracy,
  tuned_runs,
)
from classp_jax.results.store import (
  RESULTS_FILE,
  check_compatible,
  check_writable,
  differing_keys,
  flatten_settings,
  read_strict_json,
  save_results,
  strict_json,
  write_json_atomically,
)

__all__ = [
  "is_variant",
  "parse_variant",
  "variant_name",
  "MethodInfo",
  "ResultsHeader",
  "RunEntry",
  "RESULTS_FILE",
  "check_compatible",
  "check_writable",
  "differing_keys",
  "flatten_settings",
  "read_strict_json",
  "save_results",
  "strict_json",
  "write_json_atomically",
  "METRICS",
  "diverged_note",
  "experiment_label",
  "finished",
  "is_diverged",
  "load_results",
  "read_results",
  "runs_by_method",
  "subsample",
  "FAMILIES",
  "LOWER_BOUND",
  "PAPER_BASELINE",
  "REFERENCE",
  "REQUIRED_RUN_KEYS",
  "REQUIRED_TOP_LEVEL_KEYS",
  "UPPER_BOUND",
  "FLAT_MARGIN",
  "FrontierPoint",
  "Selection",
  "best_per_method",
  "has_validation",
  "met_targets",
  "method_info",
  "method_order",
  "neighbour_points",
  "next_points",
  "parse_select",
  "select_points",
  "selected_variants",
  "selection_info",
  "shown_value",
  "target_accuracy",
  "tuned_runs",
]
