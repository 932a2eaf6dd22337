"""The paper's claims, tested on the frontiers: the headline, CLASSP against the paper's
baselines, its ablations, and sparse updates at matched plasticity.

Which method is which is read from the runs (`classp_jax.results.MethodInfo`),
never from their names: the reference is the method with the `REFERENCE` role,
the baselines those with `PAPER_BASELINE`, and an ablation is a method that
records what it is an ablation of (``ablation_of``) and what it changes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from classp_jax.report.tables import (
  MISSING,
  NOT_RUN,
  mean_std,
  paired_cells,
  paired_differences,
  reference_method,
  study_name,
)
from classp_jax.results import (
  PAPER_BASELINE,
  Selection,
  best_per_method,
  diverged_note,
  experiment_label,
  is_variant,
  met_targets,
  method_info,
  method_order,
  runs_by_method,
  selection_info,
  target_accuracy,
  tuned_runs,
  variant_name,
)

# The knobs of a sparsity comparison: the sparse curve sweeps the threshold at a fixed
# learning rate, the dense one (the method it is an ablation of) the learning rate.
SPARSE_KNOB = "threshold"
DENSE_KNOB = "learning_rate"


def plasticity(run: dict[str, Any]) -> float:
  """Mean accuracy on each task right after training it (the matrix's diagonal)."""
  return float(np.mean(np.diag(np.asarray(run["accuracy_matrix"], dtype=np.float64))))


def _learning_rate(run: dict[str, Any]) -> Any:
  return ((run.get("settings") or {}).get("method") or {}).get("hparams", {}).get("learning_rate")


def sparsity_curves(selections: list[Selection]) -> list[tuple[Selection, Selection]]:
  """``(sparse curve, dense curve)`` pairs: does a sparser update forget less than a lower
  learning rate that learns each task as well?

  A sparse curve is the `SPARSE_KNOB` curve of a method that is an ablation of another
  (``ablation_of``); its dense curve is that other method's `DENSE_KNOB` curve. In
  `method_order`.
  """
  curves = {(s.method, s.knob): s for s in selections}
  pairs = []
  for s in sorted(selections, key=lambda s: method_order(s.method, selection_info(s))):
    dense = curves.get((selection_info(s).ablation_of, DENSE_KNOB))
    if s.knob == SPARSE_KNOB and dense is not None:
      pairs.append((s, dense))
  return pairs


def matched_plasticity_rows(selections: list[Selection]) -> list[list[str]]:
  """Forgetting of each sparse-update point against its dense method's (`sparsity_curves`).

  For each point of a sparse curve (a threshold swept at a fixed learning rate), two
  references from the dense curve (the method without the threshold, learning rate swept):

  * at matched plasticity: the dense curve interpolated linearly, over its points' mean
    plasticity, to the forgetting it has at the sparse point's plasticity (not where that
    plasticity is outside the dense curve's range). A negative difference means the
    sparser update forgot less than a lower learning rate that learned as well;
  * at the same learning rate: the dense point at the sparse curve's learning rate, if it
    was run (from the runs' recorded settings).

  Points with a diverged seed are not compared.
  """
  rows = []
  for sparse, dense_curve in sparsity_curves(selections):
    sound = [p for p in dense_curve.points if p.score is not None]
    dense = sorted(
      (
        float(np.mean([plasticity(r) for r in p.runs])),
        float(np.mean([r["forgetting"] for r in p.runs])),
      )
      for p in sound
    )
    by_lr = {p.value: p for p in sound}
    for point in sparse.points:
      name = variant_name(sparse.method, sparse.knob, point.value)
      if point.score is None:
        rows.append(
          [name, str(len(point.runs)), diverged_note(point.runs) or MISSING, *[MISSING] * 4]
        )
        continue
      p = [plasticity(r) for r in point.runs]
      f = [r["forgetting"] for r in point.runs]
      x, y = zip(*dense) if dense else ((), ())
      inside = bool(dense) and x[0] <= np.mean(p) <= x[-1]
      matched = float(np.interp(np.mean(p), x, y)) if inside else None
      same = by_lr.get(_learning_rate(point.runs[0]))
      rows.append(
        [
          name,
          str(len(point.runs)),
          mean_std(p),
          mean_std(f),
          f"{matched:.3f} ({np.mean(f) - matched:+.3f})" if inside else "outside its range",
          MISSING
          if same is None
          else f"{np.mean([r['forgetting'] for r in same.runs]):.3f} at plasticity "
          f"{np.mean([plasticity(r) for r in same.runs]):.3f}",
        ]
      )
  return rows


MATCHED_HEADER = [
  "sparse point",
  "seeds",
  "plasticity",
  "forgetting",
  "threshold 0 at this plasticity (lr swept): forgetting (difference)",
  "threshold 0 at the same lr: forgetting",
]


def ablation_rows(tuned: list[dict[str, Any]]) -> list[list[str]]:
  """Each method that is an ablation of another (``ablation_of``), both present: the
  variant's ACC minus the other's, both at their selected points, paired by seed, labelled
  with what the variant changes; a seed where either diverged is skipped. In the order of
  ``tuned`` (`tuned_runs`: `method_order`)."""
  by_method = runs_by_method(tuned)
  rows = []
  for variant, group in by_method.items():
    info = method_info(group[0])
    if info.ablation_of in by_method:
      rows.append(
        [
          f"{variant} vs {info.ablation_of}",
          info.changes or MISSING,
          *paired_cells(*paired_differences(group, by_method[info.ablation_of])),
        ]
      )
  return rows


ABLATION_HEADER = [
  "ablation",
  "what changes",
  "seeds",
  "ACC difference (variant - reference)",
  "variant wins",
  "seeds skipped (diverged)",
]


def _fixed_point_cell(runs: list[dict[str, Any]]) -> str:
  """``mean ± std (seeds)`` of runs at a point not selected (the paper's), and, for those
  that missed their training targets, that they did and what they reached: their ACC is
  not accuracy-matched."""
  cell = f"{mean_std(r['acc'] for r in runs)} ({len(runs)})"
  missed = [r for r in runs if not met_targets(r)]
  if missed:
    cell += (
      f"; target missed ({len(missed)}/{len(runs)} seeds, reached "
      f"{mean_std(map(target_accuracy, missed))})"
    )
  return cell


def _selected_cell(s: Selection) -> str:
  """A method's headline cell: its ACC at its selected point, or why it has none."""
  if s.selected is not None:
    runs = s.selected.runs
    return f"{mean_std(r['acc'] for r in runs)} ({len(runs)})"
  if s.closest is not None:
    return f"target missed (reached {mean_std(map(target_accuracy, s.closest.runs))})"
  return "every point diverged"


def headline_rows(
  experiments: list[dict[str, Any]], selections: list[list[Selection]]
) -> tuple[list[str], list[list[str]]]:
  """Each method's test ACC at its selected point (`best_per_method`), study by study, and
  the reference method (`reference_method`) at the paper's point: the report's first table.

  A cell is ``mean ± std (seeds)``; a method that never reached an accuracy-matched
  study's training target reads ``target missed``, with the training accuracy it reached
  (the paper's point, which is not selected, says so after its ACC).

  Args:
    experiments: merged results (`classp_jax.results.load_results`).
    selections: each one's `select_points`.

  Returns:
    The header (``method`` and one column per study with frontier runs, named by
    `study_name`) and the rows: the methods in `method_order` (CLASSP's family first), a
    paper's point right after its tuned method; ``not run`` where a study did not run
    the method.
  """
  columns, cells, papers, infos = [], defaultdict(dict), {}, {}
  for results, study in zip(experiments, selections):
    if not study:
      continue
    column = study_name(results)
    if column in columns:  # two studies that read alike: the full label tells them apart
      column = experiment_label(results)
    columns.append(column)
    for s in best_per_method(study):
      cells[s.method][column] = _selected_cell(s)
      infos[s.method] = selection_info(s)
    named = [r for r in results["runs"] if not is_variant(r)]
    reference = reference_method(named)
    own = [r for r in named if r["method"] == reference]
    if own:
      paper = f"{reference} at the paper's point"
      papers[paper] = (*method_order(reference, method_info(own[0])), 1)
      cells[paper][column] = diverged_note(own) or _fixed_point_cell(own)
  order = sorted(cells, key=lambda m: papers[m] if m in papers else (*method_order(m, infos[m]), 0))
  rows = [[m, *(cells[m].get(c, NOT_RUN) for c in columns)] for m in order]
  return ["method", *columns], rows


def paper_baselines(experiments: list[dict[str, Any]]) -> list[str]:
  """The methods the paper compares CLASSP with (role `PAPER_BASELINE`) that any of the
  experiments ran, by name."""
  return sorted(
    {
      r.get("base_method") or r["method"]
      for results in experiments
      for r in results["runs"]
      if PAPER_BASELINE in method_info(r).roles
    }
  )


def claim_rows(
  experiments: list[dict[str, Any]], selections: list[list[Selection]]
) -> tuple[list[str], list[list[str]]]:
  """The tuned reference method's ACC minus each of `paper_baselines`' (each at its
  selected point), paired by seed, study by study: the evidence for the paper's accuracy
  claim.

  A cell is ``mean ± std (wins/seeds)``; ``not run`` where either method has no selected
  point. Columns as in `headline_rows`.
  """
  baselines = paper_baselines(experiments)
  columns, rows = [], {b: [b] for b in baselines}
  for results, study in zip(experiments, selections):
    tuned = runs_by_method(tuned_runs(study))
    reference = reference_method(r for runs in tuned.values() for r in runs)
    if reference is None:
      continue
    column = study_name(results)
    columns.append(experiment_label(results) if column in columns else column)
    for baseline in baselines:
      differences, _ = paired_differences(tuned[reference], tuned.get(baseline, []))
      rows[baseline].append(
        f"{mean_std(differences)} ({sum(d > 0 for d in differences)}/{len(differences)})"
        if differences
        else NOT_RUN
      )
  return ["CLASSP (tuned) minus", *columns], list(rows.values()) if columns else []
