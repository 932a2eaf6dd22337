#!/usr/bin/env bash
# Regenerates experiments/results/report.md (version 2) on a CPU, stage by stage.
#
#   experiments/run_report.sh DATA_ROOT [RUNS_DIR] [STAGE...]
#
# DATA_ROOT holds one folder per dataset (e.g. mnist-10k/, fashion-mnist/, imdb/,
# financial-phrasebank/). RUNS_DIR (default: runs) keeps every run; the report is built
# from it. Every stage resumes: a run already in its folder's results.json with the same
# settings is skipped (--skip-finished), so a stage stopped part-way goes on where it
# stopped, and two invocations may run different stages side by side (one per core).
#
# STAGEs (default: all, in this order). For each STUDY in split_mnist_task,
# split_mnist_domain, split_mnist_class, permuted_mnist, mnist_fashion, fpb_imdb_cpu:
#   STUDY_frontier  every method's knobs, one at a time around a centre
#                   (classp_jax/experiments/common.py), 3 seeds (0-2); then each grid
#                   whose selected point is at its edge grows past it, point by point,
#                   and a method that diverged at every point grows its strength grid (or
#                   its learning rate's) down (`classp-jax select --next-points`), until
#                   neither is left (8 rounds at most: permuted_mnist's grids, centred on
#                   split_mnist's points, needed more than 4);
#   STUDY_selected  each method's best frontier point, selected on validation accuracy
#                   over seeds 0-2, run on seeds 3 and 4 too: the 5-seed tables. For
#                   mnist_fashion, whose frontier runs on a subsample, the point selected
#                   there and, for the methods in RESELECTED_METHODS (below), its grid
#                   neighbours either side run on all the data first (3 seeds, into
#                   RUNS/mnist_fashion/selected; grown like a frontier), and the point
#                   selected there gets seeds 0-4;
#   STUDY_paper     the named methods at the paper's points, 5 seeds;
# and `report`, which reads whatever has finished (of every study: it refuses a RUNS folder
# that lacks one). Not run by default: `mnist_fashion_rerun` and `rerun_report`, the
# mnist_fashion runs made after the report's own runs were lost (MNIST_FASHION_RERUN below).
#
# Scaled down for the CPU (see the report's budget section):
# - mnist_fashion: its frontier runs on 3,000 training examples per task (a run on all the
#   data took 6-9 CPU-minutes) and sweeps the learning rate, from 3 points, and EWC's,
#   SI's and MAS's strengths, with task-end evaluations only and no training-split scoring,
#   and leaves out the p = 2 and reset ablations; each selected point, the two grid
#   neighbours of those of CLASSP (absolute and relative threshold), SGD, Adam, AdaGrad, EWC
#   and MAS (the other methods' neighbours would have cost about 10 CPU-hours more), and the
#   paper's points, run on all the data;
# - permuted_mnist: 3-point learning-rate grids around each method's point selected on
#   split_mnist (domain-incremental; see classp_jax/experiments/permuted_mnist.py), and
#   task-end evaluations only;
# - fpb_imdb_cpu: 5,000 IMDB training and 2,000 test examples (the preset: batch 100, FPB 20
#   epochs, IMDB to 70% training accuracy within 30 epochs); its frontier sweeps the learning
#   rate from 3 points, CLASSP's thresholds, and EWC's, SI's and MAS's strengths (at their
#   centres every EWC and SI point diverged), but not DER++'s or LwF's alpha.
set -euo pipefail
# Runs of one method differ in injected hyperparameters only, so their compiled steps are
# the same: XLA's persistent cache compiles a learning-rate sweep once (about 4x faster).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-${2:-runs}/.xla-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0.5}
DATA=${1:?usage: experiments/run_report.sh DATA_ROOT [RUNS_DIR] [STAGE...]}
RUNS=${2:-runs}
shift $(( $# < 2 ? $# : 2 ))
STUDIES="split_mnist_task split_mnist_domain split_mnist_class permuted_mnist mnist_fashion fpb_imdb_cpu"
if [[ $# -eq 0 ]]; then
  set -- $(for s in $STUDIES; do echo "${s}_frontier ${s}_selected ${s}_paper"; done) report
fi
# The methods of the 5-seed tables: each tuned on its frontier, plus the paper's points.
# Set FRONTIER_METHODS to a part of this list to split a study's frontier and selected stages
# between jobs (each job tunes, and runs the selected points of, its own methods).
FRONTIER_METHODS=${FRONTIER_METHODS:-"classp classp_no_threshold classp_relative classp_eq1 classp_p2 classp_reset classp+er sgd adam adagrad ewc si mas er derpp agem lwf joint"}
# The methods at the paper's points; like FRONTIER_METHODS, a part of it splits the paper
# stages between jobs.
PAPER_METHODS=${PAPER_METHODS:-"classp classp_as_released sgd adam adagrad ewc"}
# The methods a study tuned on a subsample selects again on all the data: those of the
# paper's claims, CLASSP with the relative threshold (the sparsity principle's verdict), and
# MAS, whose subsample point diverged on all of mnist_fashion (a grid of one point cannot
# grow). The others keep the point selected on the subsample.
RESELECTED_METHODS="classp classp_relative sgd adam adagrad ewc mas"
# The runs behind report.md were lost with the disk that held their RUNS folder
# (experiments/README.md, "The runs behind the report"). mnist_fashion's unfinished methods
# go on from the points its subsample frontier selected, as report.md lists them, on all the
# data. MAS's point diverged on all the data, so it runs the learning rates either side;
# SI's diverged there on 2 of 3 seeds, so it runs the strength below too (the one above
# diverged on the subsample). The grids then grow as a frontier's do. CLASSP's selected
# point runs again too, to pair the new methods with it by seed and to check that the lost
# runs reproduce. Their report, with the mnist_fashion_paper stage's runs (also lost),
# stands apart (rerun_report). Give RUNS as experiments/results/runs: its results.json files
# are committed, so the stage resumes across machines.
MNIST_FASHION_RERUN="classp[learning_rate=0.006] si[strength=0.1] si[strength=0.01]
  derpp[learning_rate=0.09] classp+er[learning_rate=0.02] mas[learning_rate=0.009]
  mas[learning_rate=0.09] classp_no_threshold[learning_rate=0.02]
  classp_eq1[learning_rate=0.002]"

study_args() {  # the experiment and options of a study
  case $1 in
    split_mnist_*) echo "split_mnist --set scenario=${1#split_mnist_}" ;;
    permuted_mnist) echo "permuted_mnist" ;;
    mnist_fashion) echo "mnist_fashion" ;;
    fpb_imdb_cpu) echo "fpb_imdb_cpu --subsample 5000,2000" ;;
    *) echo "unknown study: $1" >&2; exit 2 ;;
  esac
}

tuning_args() {  # what a study's frontier and selected points add to its options
  case $1 in
    # No training-split scoring and fewer evaluations (the paper stage has those): for
    # mnist_fashion, at task ends only (its 20,000 test images took about 15% of a
    # subsample run); for fpb_imdb_cpu, one mid-task evaluation. mnist_fashion sweeps no
    # thresholds or alphas (the budget), but the penalties' strengths, at SGD's learning
    # rate: a penalty method swept in learning rate only, at one strength, is understated
    # (permuted_mnist's first sweep scored EWC 0.19 below its best).
    mnist_fashion) echo "--frontier --knobs learning_rate,strength --set evals_per_task=0 --set paper_eval=false" ;;
    fpb_imdb_cpu) echo "--frontier --knobs learning_rate,threshold,strength --set evals_per_task=1 --set paper_eval=false" ;;
    # Evaluating all 10 tasks' test sets took a third of a run: task-end evaluations only.
    permuted_mnist) echo "--frontier --set evals_per_task=0" ;;
    *) echo "--frontier" ;;
  esac
}

frontier_methods() {  # the methods a study tunes: all, but for mnist_fashion (a run on all its
  local m             # data takes minutes) not the p = 2 and reset ablations, which the
  for m in $FRONTIER_METHODS; do  # other five studies measure
    case $1:$m in
      mnist_fashion:classp_p2 | mnist_fashion:classp_reset) ;;
      *) echo -n "$m " ;;
    esac
  done
}

frontier_data() {  # what a study's frontier adds to its data options: a subsample to tune on
  case $1 in
    mnist_fashion) echo "--subsample 3000" ;;
  esac
}

selected_part() {  # the folder of a study's 5-seed selected points: its frontier's, unless
  case $1 in       # the frontier ran on other data
    mnist_fashion) echo selected ;;
    *) echo frontier ;;
  esac
}

run() {  # run STUDY PART ARGS...: one resumable `classp-jax run` into RUNS/STUDY/PART
  local study=$1 part=$2; shift 2
  local out=$RUNS/$study/$part
  mkdir -p "$RUNS/$study"
  echo "$(date +%T) $study $part: classp-jax run $(study_args "$study") $*"
  # shellcheck disable=SC2046
  classp-jax run $(study_args "$study") "$@" --data-dir "$DATA" --out "$out" --no-progress \
    --skip-finished >> "$out.log" 2>&1 || echo "FAILED: $out (see $out.log)"
}

of_methods() {  # of_methods "M1 M2..." [-v]: the METHOD[KNOB=VALUE] lines read whose
  local methods=" $1 " point  # method is one of M1 M2... (with -v: is none of them)
  while read -r point; do
    if [[ $methods == *" ${point%%[*} "* ]]; then
      [[ ${2:-} != -v ]] && echo "$point"
    else
      [[ ${2:-} == -v ]] && echo "$point"
    fi
  done
  return 0
}

tuned_by() {  # tuned_by STUDY: the METHOD[KNOB=VALUE] lines read of the methods it tunes
  of_methods "$(frontier_methods "$1")"
}

frontier() {  # frontier STUDY: sweep, then grow each grid whose selected point is at an edge
  local study=$1
  # shellcheck disable=SC2046
  for m in $(frontier_methods "$study"); do
    run "$study" frontier $(tuning_args "$study") $(frontier_data "$study") --methods "$m" --seeds 0,1,2
  done
  # shellcheck disable=SC2046
  grow "$study" frontier $(frontier_data "$study")
}

# refine STUDY PART: a study tuned on a subsample selects again on all the data (into
# RUNS/STUDY/PART), from the subsample's selected points and, for RESELECTED_METHODS,
# their grid neighbours.
refine() {
  local study=$1 part=$2 frontier=$RUNS/$1/frontier points
  points=$({ classp-jax select "$frontier" --neighbours | of_methods "$RESELECTED_METHODS"
             classp-jax select "$frontier" | of_methods "$RESELECTED_METHODS" -v; } |
           tuned_by "$study" | paste -sd,) || { echo "FAILED: classp-jax select $frontier"; return 0; }
  [[ -z $points ]] && return 0
  # shellcheck disable=SC2046
  run "$study" "$part" $(tuning_args "$study") --methods "$points" --seeds 0,1,2
  grow "$study" "$part"
}

grow() {  # grow STUDY PART [DATA OPTIONS]: extend each grid of RUNS/STUDY/PART whose selected
  local study=$1 part=$2 points  # point is at an edge, until none is (8 rounds at most)
  shift 2
  for _ in 1 2 3 4 5 6 7 8; do
    points=$(classp-jax select "$RUNS/$study/$part" --next-points | tuned_by "$study" |
             paste -sd,) || return 0
    [[ -z $points ]] && return 0
    # shellcheck disable=SC2046
    run "$study" "$part" $(tuning_args "$study") "$@" --methods "$points" --seeds 0,1,2
  done
}

# five_seeds STUDY PART: each point selected in RUNS/STUDY/PART, on seeds 0-4. A seed that
# diverges there disqualifies its point and the selection moves on: run the new points' seeds
# too, until the selection stands.
five_seeds() {
  local study=$1 part=$2 selected previous=
  for _ in 1 2 3 4; do
    selected=$(classp-jax select "$RUNS/$study/$part" | tuned_by "$study" | paste -sd,) \
      || { echo "FAILED: classp-jax select $RUNS/$study/$part"; return 0; }
    [[ -z $selected || $selected == "$previous" ]] && return 0
    # shellcheck disable=SC2046
    run "$study" "$part" $(tuning_args "$study") --methods "$selected" --seeds 0,1,2,3,4
    previous=$selected
  done
}

for stage in "$@"; do
  study=${stage%_*}
  case $stage in
    *_frontier) frontier "$study" ;;
    *_selected)
      part=$(selected_part "$study")
      [[ $part != frontier ]] && refine "$study" "$part"
      five_seeds "$study" "$part" ;;
    mnist_fashion_rerun)
      points=$(tr -s ' \n' '\n' <<< "$MNIST_FASHION_RERUN" | tuned_by mnist_fashion | paste -sd,)
      # shellcheck disable=SC2046
      [[ -n $points ]] &&
        run mnist_fashion selected $(tuning_args mnist_fashion) --methods "$points" --seeds 0,1,2
      grow mnist_fashion selected
      five_seeds mnist_fashion selected ;;
    rerun_report)
      classp-jax report "$RUNS"/mnist_fashion/*/results.json \
        --out experiments/results/mnist_fashion_rerun --notes experiments/mnist_fashion_rerun.md ;;
    *_paper)
      run "$study" paper --methods "${PAPER_METHODS// /,}" --seeds 0,1,2,3,4 ;;
    report)
      # A RUNS folder that lacks a study (e.g. experiments/results/runs, which holds the
      # reruns only) would replace the report with a part of it.
      for s in $STUDIES; do
        compgen -G "$RUNS/$s/*/results.json" > /dev/null ||
          { echo "report: $RUNS has no runs of $s, so the report is left as it is" >&2; exit 2; }
      done
      rm -f experiments/results/*.png  # plots of studies no longer in the report
      classp-jax report "$RUNS"/*/*/results.json --out experiments/results \
        --notes experiments/conclusions.md ;;
    *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done
