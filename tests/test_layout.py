"""The package's layout: each concept has one home, and the imports run one way.

A newcomer should be able to read any function on one screen and find any
concept in one place; the training engine must not need the experiments, the
report must not need JAX. These tests read the source with `ast` (they import
neither JAX nor classp_jax) and check:

* no import cycle among classp_jax's modules, imports inside functions counted;
* no import against the layering (`LAYERS`), e.g. methods never import the
  training engine, the report reads only results;
* no JAX, Flax, optax or orbax in `results/` and `report/`;
* no function over 100 lines and no module over 600, docstrings not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "classp_jax"
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600
CORE = ("classp_jax.optimizer", "classp_jax.diagnostics", "classp_jax.models", "classp_jax.metrics")
UPPER = ("classp_jax.planning", "classp_jax.cli", "classp_jax.report", "classp_jax.studies")

# (importer prefix, forbidden prefixes, allowed prefixes, why). A module under the importer
# prefix may import no classp_jax module under a forbidden prefix; with `allowed` set, none
# outside it either.
LAYERS = (
  ("classp_jax.mesh", (), ("classp_jax.mesh",), "the device helpers stand alone"),
  (
    "classp_jax.methods",
    ("classp_jax.training", "classp_jax.experiments", *UPPER),
    (),
    "a user's own loop uses the methods without the engine",
  ),
  (
    "classp_jax.training",
    ("classp_jax.experiments", *UPPER),
    (),
    "the engine runs methods and knows nothing of experiments, studies or reports",
  ),
  ("classp_jax.results", (), ("classp_jax.results",), "results are read without JAX"),
  (
    "classp_jax.report",
    (),
    ("classp_jax.report", "classp_jax.results"),
    "the report reads only results",
  ),
  (
    "classp_jax.data",
    (
      "classp_jax.methods",
      "classp_jax.training",
      "classp_jax.experiments",
      "classp_jax.results",
      *UPPER,
    ),
    (),
    "data knows nothing of what trains on it",
  ),
  *((core, (), CORE, "the core stands on optax alone") for core in CORE),
  ("classp_jax.experiments", UPPER, (), "experiments are configs, below planning"),
  ("classp_jax.planning", ("classp_jax.cli", "classp_jax.report"), (), "planning is below the CLI"),
)
THIRD_PARTY_FREE = ("classp_jax.results", "classp_jax.report")
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "chex")


def _under(module: str, prefix: str) -> bool:
  return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, root: Path = PACKAGE) -> str:
  """``classp_jax/a/b.py`` -> ``classp_jax.a.b``; a package is its ``__init__``."""
  parts = path.relative_to(root.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = PACKAGE) -> dict[str, ast.Module]:
  return {module_name(p, root): ast.parse(p.read_text()) for p in sorted(root.rglob("*.py"))}


def _type_checking_blocks(tree: ast.AST) -> set[int]:
  """The ids of import nodes under ``if TYPE_CHECKING:``."""
  skipped = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
      skipped |= {id(n) for n in ast.walk(node)}
  return skipped


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
  """The classp_jax modules (of ``known``) that module ``name`` imports, anywhere in it."""
  package = name if name in known and _is_package(name, known) else name.rpartition(".")[0]
  skipped, found = _type_checking_blocks(tree), set()
  for node in ast.walk(tree):
    if id(node) in skipped:
      continue
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
  return {m for m in found if m in known and m != name}


def _is_package(name: str, known: set[str]) -> bool:
  return any(other.startswith(name + ".") for other in known)


def import_graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
  known = set(modules)
  return {name: imports(name, tree, known) for name, tree in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan), each in order."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for nxt in sorted(graph.get(node, ())):
      if nxt not in index:
        visit(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
  problems = []
  for importer, imported in sorted(graph.items()):
    for prefix, forbidden, allowed, why in layers:
      if not _under(importer, prefix):
        continue
      for target in sorted(imported):
        bad = any(_under(target, f) for f in forbidden) or (
          allowed and not any(_under(target, a) for a in allowed)
        )
        if bad:
          problems.append(f"{importer} imports {target}: {why}")
  return problems


def experiment_violations(modules: dict[str, ast.Module]) -> list[str]:
  """Experiment modules (those defining ``EXPERIMENT``) importing one another."""
  defines = {
    name
    for name, tree in modules.items()
    if _under(name, "classp_jax.experiments")
    and any(
      isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "EXPERIMENT" for t in n.targets)
      for n in tree.body
    )
  }
  graph = import_graph(modules)
  return [
    f"{a} imports the experiment {b}" for a in sorted(defines) for b in sorted(graph[a] & defines)
  ]


def heavy_imports(modules: dict[str, ast.Module]) -> list[str]:
  problems = []
  for name, tree in modules.items():
    if not any(_under(name, p) for p in THIRD_PARTY_FREE):
      continue
    for node in ast.walk(tree):
      names = (
        [a.name for a in node.names]
        if isinstance(node, ast.Import)
        else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and not node.level
        else []
      )
      problems += [f"{name} imports {n}" for n in names if n.split(".")[0] in HEAVY]
  return problems


def _docstring_lines(node: ast.AST) -> int:
  """Lines of every docstring in ``node`` (its own and its nested definitions')."""
  total = 0
  for sub in ast.walk(node):
    body = getattr(sub, "body", None)
    if (
      not isinstance(sub, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
      or not body
    ):
      continue
    first = body[0]
    if (
      isinstance(first, ast.Expr)
      and isinstance(first.value, ast.Constant)
      and isinstance(first.value.value, str)
    ):
      total += first.end_lineno - first.lineno + 1
  return total


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
  """From the ``def`` line to the last line, decorators aside, less its docstrings."""
  return node.end_lineno - node.lineno + 1 - _docstring_lines(node)


def module_lines(source: str) -> int:
  return len(source.splitlines()) - _docstring_lines(ast.parse(source))


def oversized(root: Path = PACKAGE) -> list[str]:
  problems = []
  for path in sorted(root.rglob("*.py")):
    source = path.read_text()
    if (n := module_lines(source)) > MAX_MODULE_LINES:
      problems.append(f"{path.relative_to(root.parent)} ({n} lines)")
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if (n := function_lines(node)) > MAX_FUNCTION_LINES:
          problems.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
  return problems


# --- the package -------------------------------------------------------------------------------


def test_no_import_cycle():
  found = cycles(import_graph(_modules()))
  assert not found, "import cycles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in found)


def test_imports_run_one_way():
  modules = _modules()
  problems = layer_violations(import_graph(modules)) + experiment_violations(modules)
  assert not problems, "\n".join(problems)


def test_results_and_report_never_import_jax():
  problems = heavy_imports(_modules())
  assert not problems, "\n".join(problems)


def test_no_long_function_or_module():
  problems = oversized()
  assert not problems, "over the limits:\n" + "\n".join(problems)


# --- the checker itself, on small sources --------------------------------------------------------


def test_function_lines_leave_docstrings_out():
  source = 'def f():\n  """One.\n\n  Two.\n  """\n  a = 1\n  b = 2\n  return a + b\n'
  (node,) = ast.parse(source).body
  assert function_lines(node) == 4  # the def line and three body lines
  assert module_lines(source) == 4


def test_a_two_module_cycle_and_a_forbidden_import_are_found(tmp_path):
  root = tmp_path / "classp_jax"
  (root / "methods").mkdir(parents=True)
  (root / "__init__.py").write_text("")
  (root / "methods" / "__init__.py").write_text("")
  (root / "methods" / "a.py").write_text("def f():\n  from classp_jax.training import run\n")
  (root / "training.py").write_text("from classp_jax.methods import a\n")
  graph = import_graph(_modules(root))
  assert graph["classp_jax.methods.a"] == {"classp_jax.training"}
  assert graph["classp_jax.training"] == {"classp_jax.methods.a"}
  assert cycles(graph) == [["classp_jax.methods.a", "classp_jax.training"]]
  assert layer_violations(graph) == [
    "classp_jax.methods.a imports classp_jax.training: a user's own loop uses the methods "
    "without the engine"
  ]
