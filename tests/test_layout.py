"""The package's layout: each concept has one home, and the imports run one way.

A newcomer should find any concept in one place and read any function on one
screen; the methods must not need the training engine, the engine must not need
the experiments, and reading results or writing a report must not start JAX.
These tests read the source with `ast` (they import neither JAX nor classp_jax,
and take well under a second) and check:

* no import cycle among classp_jax's modules, imports inside functions counted;
* no import against the layering (`LAYERS`), and no experiment importing another;
* no JAX, jaxlib, Flax, optax, orbax or chex in `results/` and `report/`;
* no function over 100 lines and no module over 600, docstrings not counted.

The graph has an edge for every ``import classp_jax.x`` and ``from classp_jax.x
import y`` (relative imports resolved) anywhere in a module, except under ``if
TYPE_CHECKING:``. It has no implicit edge from a module to its parent packages'
``__init__``, and ``importlib.import_module`` of a string is not followed.
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).parents[1] / "classp_jax"
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "chex")
THIRD_PARTY_FREE = ("classp_jax.results", "classp_jax.report")
CORE = ("classp_jax.optimizer", "classp_jax.diagnostics", "classp_jax.models", "classp_jax.metrics")
EXPERIMENTS = "classp_jax.experiments"
UPPER = ("classp_jax.planning", "classp_jax.cli", "classp_jax.report", "classp_jax.studies")


class Outside(NamedTuple):
  """A forbidden pattern: every classp_jax module outside the ``allowed`` prefixes."""

  allowed: tuple[str, ...]


# (importer prefix, forbidden imported prefixes, why). A forbidden entry is a prefix, or
# `Outside(...)` for every classp_jax module outside the given prefixes.
LAYERS = (
  ("classp_jax.mesh", (Outside(("classp_jax.mesh",)),), "the device helpers stand alone"),
  (
    "classp_jax.methods",
    ("classp_jax.training", "classp_jax.experiments", *UPPER),
    "a user's own training loop uses the methods without the engine",
  ),
  (
    "classp_jax.training",
    ("classp_jax.experiments", *UPPER),
    "the engine runs methods and knows nothing of experiments, plans, studies or reports",
  ),
  (
    "classp_jax.results",
    (Outside(("classp_jax.results",)),),
    "results are read and written without JAX or the engine",
  ),
  (
    "classp_jax.report",
    (Outside(("classp_jax.report", "classp_jax.results")),),
    "the report reads only results",
  ),
  (
    "classp_jax.data",
    (
      "classp_jax.methods",
      "classp_jax.training",
      "classp_jax.planning",
      "classp_jax.cli",
      "classp_jax.experiments",
      "classp_jax.report",
      "classp_jax.results",
    ),
    "the data knows nothing of what trains on it",
  ),
  *((core, (Outside(CORE),), "the core stands on JAX and optax alone") for core in CORE),
  (
    "classp_jax.experiments",
    ("classp_jax.planning", "classp_jax.cli", "classp_jax.report"),
    "experiments are configurations, below planning, the CLI and the report",
  ),
  (
    "classp_jax.planning",
    ("classp_jax.cli", "classp_jax.report"),
    "planning is below the CLI and the report",
  ),
)


# --- reading the package ---------------------------------------------------------------------


def matches(prefix: str, module: str) -> bool:
  """Whether ``module`` is ``prefix`` or inside it."""
  return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, root: Path = PACKAGE) -> str:
  """``classp_jax/a/b.py`` -> ``classp_jax.a.b``; a package is the module of its ``__init__``."""
  parts = path.relative_to(root.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_paths(root: Path = PACKAGE) -> dict[str, Path]:
  """Every module of the package, by name; a package's ``__init__`` wins over a same-named file."""
  paths = {}
  for path in sorted(root.rglob("*.py")):
    name = module_name(path, root)
    if name not in paths or path.name == "__init__.py":
      paths[name] = path
  return paths


def parse(paths: dict[str, Path]) -> dict[str, ast.Module]:
  return {name: ast.parse(path.read_text(), str(path)) for name, path in paths.items()}


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
  )


def import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
  """Every import statement in ``tree``, at any depth, except those under ``if TYPE_CHECKING:``."""
  pending = [tree]
  while pending:
    node = pending.pop()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
      pending.extend(node.orelse)
    else:
      pending.extend(ast.iter_child_nodes(node))


def _from_base(node: ast.ImportFrom, name: str, is_package: bool) -> str:
  """The absolute module a ``from ... import`` reads from, relative imports resolved."""
  if not node.level:
    return node.module or ""
  anchor = name.split(".") if is_package else name.split(".")[:-1]
  anchor = anchor[: len(anchor) - node.level + 1]
  return ".".join([*anchor, *([node.module] if node.module else [])])


def imported_names(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> set[str]:
  """The absolute modules that module ``name`` imports; ``from a import b`` is ``a.b`` if known."""
  found = set()
  for node in import_nodes(tree):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
      continue
    base = _from_base(node, name, is_package)
    found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
  return found


def _nearest_known(module: str, known: set[str]) -> str | None:
  """``module`` itself, else its nearest known parent (an import of a module that is gone)."""
  parts = module.split(".")
  for end in range(len(parts), 0, -1):
    if ".".join(parts[:end]) in known:
      return ".".join(parts[:end])
  return None


def import_graph(trees: dict[str, ast.Module], paths: dict[str, Path]) -> dict[str, set[str]]:
  """Module -> the other classp_jax modules it imports."""
  known, graph = set(trees), {}
  for name, tree in trees.items():
    is_package = paths[name].name == "__init__.py"
    targets = {_nearest_known(m, known) for m in imported_names(tree, name, is_package, known)}
    graph[name] = {t for t in targets if t is not None and t != name}
  return graph


# --- the checks --------------------------------------------------------------------------------


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
  """Tarjan's strongly connected components of more than one module, each sorted."""
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
      while not component or component[-1] != node:
        component.append(stack.pop())
        on_stack.discard(component[-1])
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return sorted(found)


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
  """The shortest path ``start -> ... -> start`` inside ``within`` (breadth first)."""
  came_from, queue = {}, deque([start])
  while queue:
    node = queue.popleft()
    for nxt in sorted(graph[node] & within):
      if nxt == start:
        path = [node]
        while path[-1] != start:
          path.append(came_from[path[-1]])
        return [*reversed(path), start]
      if nxt not in came_from:
        came_from[nxt] = node
        queue.append(nxt)
  raise ValueError(f"{start} is on no cycle")


def cycles(graph: dict[str, set[str]]) -> list[str]:
  """Each import cycle as ``a -> b -> a``, one per strongly connected component."""
  lines = []
  for component in strongly_connected(graph):
    line = " -> ".join(shortest_cycle(graph, component[0], set(component)))
    if len(component) > len(line.split(" -> ")) - 1:
      line += f"  (all entangled: {', '.join(component)})"
    lines.append(line)
  return lines


def _forbids(pattern: str | Outside, module: str) -> bool:
  if isinstance(pattern, Outside):
    return not any(matches(allowed, module) for allowed in pattern.allowed)
  return matches(pattern, module)


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
  """``importer imports imported: why`` for every import a rule of ``layers`` forbids."""
  problems = []
  for importer, imported in sorted(graph.items()):
    for prefix, forbidden, why in layers:
      if matches(prefix, importer):
        bad = sorted(m for m in imported if any(_forbids(f, m) for f in forbidden))
        problems += [f"{importer} imports {m}: {why}" for m in bad]
  return problems


def _assigns_experiment(tree: ast.Module) -> bool:
  """Whether the module assigns a module-level name ``EXPERIMENT``."""
  for node in tree.body:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
      isinstance(t, ast.Name) and t.id == "EXPERIMENT" for t in targets
    ):
      return True
  return False


def experiment_violations(trees: dict[str, ast.Module], graph: dict[str, set[str]]) -> list[str]:
  """Modules of ``classp_jax.experiments`` (not its registry ``__init__``) importing an experiment."""
  experiments = {
    name
    for name, tree in trees.items()
    if name.rpartition(".")[0] == EXPERIMENTS and _assigns_experiment(tree)
  }
  importers = sorted(name for name in graph if name.startswith(EXPERIMENTS + "."))
  return [
    f"{a} imports {b}: one experiment does not build on another (share base, common, "
    "datasets or sizing instead)"
    for a in importers
    for b in sorted(graph[a] & experiments)
  ]


def heavy_imports(trees: dict[str, ast.Module]) -> list[str]:
  """``module imports jax...`` for the JAX-free parts, imports inside functions counted."""
  problems = []
  for name, tree in sorted(trees.items()):
    if not any(matches(p, name) for p in THIRD_PARTY_FREE):
      continue
    for node in import_nodes(tree):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      else:
        names = [] if node.level else [node.module or ""]
      problems += [f"{name} imports {n}" for n in names if n.split(".")[0] in HEAVY]
  return problems


def docstring(node: ast.AST) -> ast.Expr | None:
  """The docstring statement of a module, class or function, if it has one."""
  if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
    return None
  first = node.body[0] if node.body else None
  if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
    return first if isinstance(first.value.value, str) else None
  return None


def docstring_lines(node: ast.AST) -> int:
  """The lines of every docstring in ``node``: its own and its nested definitions'."""
  strings = (docstring(sub) for sub in ast.walk(node))
  return sum(s.end_lineno - s.lineno + 1 for s in strings if s is not None)


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
  """From the ``def`` line to the last, decorators aside, less the docstrings inside."""
  return node.end_lineno - node.lineno + 1 - docstring_lines(node)


def module_lines(source: str) -> int:
  """The module's lines less every docstring in it."""
  return len(source.splitlines()) - docstring_lines(ast.parse(source))


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
  """Every function and method with its dotted name (``Class.method``, ``outer.inner``)."""
  for node in ast.iter_child_nodes(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield prefix + node.name, node
    named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    yield from _functions(node, f"{prefix}{node.name}." if named else prefix)


def oversized(root: Path = PACKAGE) -> list[str]:
  """``path:line name (N lines)`` for each module and function of ``root`` over the limits."""
  problems = []
  for path in sorted(root.rglob("*.py")):
    source, shown = path.read_text(), path.relative_to(root.parent)
    if (n := module_lines(source)) > MAX_MODULE_LINES:
      problems.append(
        f"{shown}:1 {module_name(path, root)} ({n} lines, at most {MAX_MODULE_LINES})"
      )
    for name, node in _functions(ast.parse(source)):
      if (n := function_lines(node)) > MAX_FUNCTION_LINES:
        problems.append(f"{shown}:{node.lineno} {name} ({n} lines, at most {MAX_FUNCTION_LINES})")
  return problems


# --- the package -------------------------------------------------------------------------------


@functools.cache
def _package_graph() -> tuple[dict[str, ast.Module], dict[str, set[str]]]:
  paths = module_paths()
  trees = parse(paths)
  return trees, import_graph(trees, paths)


def test_the_package_is_found():
  assert {"classp_jax", "classp_jax.optimizer", "classp_jax.training"} <= set(module_paths())


def test_no_import_cycle():
  _, graph = _package_graph()
  found = cycles(graph)
  assert not found, "import cycles (function-level imports counted):\n" + "\n".join(found)


def test_imports_run_one_way():
  trees, graph = _package_graph()
  problems = layer_violations(graph) + experiment_violations(trees, graph)
  assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_results_and_report_never_import_jax():
  trees, _ = _package_graph()
  problems = heavy_imports(trees)
  assert not problems, "JAX-free modules importing JAX & co.:\n" + "\n".join(problems)


def test_no_long_function_or_module():
  problems = oversized()
  assert not problems, "over the limits (docstrings not counted):\n" + "\n".join(problems)


# --- the checker itself, on small sources --------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
  """Writes ``files`` (relative path -> source) as a package ``classp_jax`` under ``tmp_path``."""
  root = tmp_path / "classp_jax"
  for relative, source in {"__init__.py": "", **files}.items():
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_text(source)
  return root


def _graph(root: Path) -> dict[str, set[str]]:
  paths = module_paths(root)
  return import_graph(parse(paths), paths)


def test_function_lines_leave_docstrings_out():
  source = 'def f():\n  """One.\n\n  Two.\n  """\n  a = 1\n  b = 2\n  return a + b\n'
  (node,) = ast.parse(source).body
  assert function_lines(node) == 4  # the def line and three body lines
  assert module_lines(source) == 4


def test_nested_docstrings_and_decorators_are_not_counted():
  source = (
    '"""Module."""\n'
    "@decorator\n"
    "def f():\n"
    "  class C:\n"
    '    """C.\n\n    More.\n    """\n'
    "    x = 1\n"
    "  def g():\n"
    '    """G."""\n'
    "    return 2\n"
    "  return C, g\n"
  )
  f = ast.parse(source).body[1]
  assert function_lines(f) == 6  # def, class, x, def g, return 2, return
  assert module_lines(source) == 7  # those and the decorator
  assert [name for name, _ in _functions(ast.parse(source))] == ["f", "f.g"]


def test_a_string_that_is_not_first_is_no_docstring():
  source = 'def f():\n  x = 1\n  """Not a docstring."""\n  return x\n'
  (node,) = ast.parse(source).body
  assert function_lines(node) == 4


def test_oversized_names_path_line_and_count(tmp_path):
  body = "".join(f"    x{i} = {i}\n" for i in range(100))
  root = _package(tmp_path, {"big.py": f'"""Doc."""\n\n\nclass K:\n  def long(self):\n{body}'})
  assert oversized(root) == ["classp_jax/big.py:5 K.long (101 lines, at most 100)"]


def test_a_two_module_cycle_is_found_through_a_function_level_import(tmp_path):
  root = _package(
    tmp_path,
    {
      "methods/__init__.py": "from classp_jax.methods.a import f\n",
      "methods/a.py": "def f():\n  from classp_jax.training import run\n",
      "training.py": "from classp_jax.methods import a\n",
    },
  )
  graph = _graph(root)
  assert graph["classp_jax.methods.a"] == {"classp_jax.training"}
  assert graph["classp_jax.training"] == {"classp_jax.methods.a"}
  assert graph["classp_jax.methods"] == {"classp_jax.methods.a"}  # no edge up to classp_jax
  assert cycles(graph) == ["classp_jax.methods.a -> classp_jax.training -> classp_jax.methods.a"]


def test_a_cycle_is_shown_in_its_real_order():
  graph = {"a": {"c"}, "b": {"a"}, "c": {"b"}, "d": {"a"}}
  assert cycles(graph) == ["a -> c -> b -> a"]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_and_import_module_strings_make_no_edge(tmp_path):
  root = _package(
    tmp_path,
    {
      "a.py": (
        "import importlib\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n  from classp_jax import b\nelse:\n  import classp_jax.c\n"
        "importlib.import_module('classp_jax.b')\n"
      ),
      "b.py": "",
      "c.py": "",
    },
  )
  assert _graph(root)["classp_jax.a"] == {"classp_jax.c"}


def test_from_imports_go_to_the_module_else_the_package(tmp_path):
  root = _package(
    tmp_path,
    {
      "p/__init__.py": "from .q import thing\nfrom . import r\n",
      "p/q.py": "from ..p import r\nfrom . import thing_in_init\n",
      "p/r.py": "from classp_jax.p import q, NAME\n",
    },
  )
  graph = _graph(root)
  assert graph["classp_jax.p"] == {"classp_jax.p.q", "classp_jax.p.r"}
  assert graph["classp_jax.p.q"] == {"classp_jax.p.r", "classp_jax.p"}
  assert graph["classp_jax.p.r"] == {"classp_jax.p.q", "classp_jax.p"}


def test_a_forbidden_import_names_both_modules_and_the_why():
  graph = {
    "classp_jax.methods.a": {"classp_jax.training.loop", "classp_jax.optimizer"},
    "classp_jax.report.tables": {"classp_jax.results.schema", "classp_jax.models"},
    "classp_jax.mesh": {"classp_jax.mesh_extra"},
  }
  assert layer_violations(graph) == [
    "classp_jax.mesh imports classp_jax.mesh_extra: the device helpers stand alone",
    "classp_jax.methods.a imports classp_jax.training.loop: a user's own training loop uses "
    "the methods without the engine",
    "classp_jax.report.tables imports classp_jax.models: the report reads only results",
  ]
  assert matches("classp_jax.mesh", "classp_jax.mesh") and not matches("classp_jax.mesh", "x")


def test_an_experiment_importing_another_is_reported(tmp_path):
  root = _package(
    tmp_path,
    {
      "experiments/__init__.py": "from classp_jax.experiments import a, b\n",
      "experiments/base.py": "",
      "experiments/a.py": "from classp_jax.experiments import base\nEXPERIMENT = 1\n",
      "experiments/b.py": "from classp_jax.experiments.a import EXPERIMENT as A\nEXPERIMENT: int = A\n",
    },
  )
  paths = module_paths(root)
  trees = parse(paths)
  assert experiment_violations(trees, import_graph(trees, paths)) == [
    "classp_jax.experiments.b imports classp_jax.experiments.a: one experiment does not build "
    "on another (share base, common, datasets or sizing instead)"
  ]


def test_jax_in_the_report_is_found_even_inside_a_function():
  trees = {
    "classp_jax.report.x": ast.parse("import numpy\ndef f():\n  import jax.numpy as jnp\n"),
    "classp_jax.results.y": ast.parse("from optax import adam\nfrom . import jaxlike\n"),
    "classp_jax.training.z": ast.parse("import jax\n"),
  }
  assert heavy_imports(trees) == [
    "classp_jax.report.x imports jax.numpy",
    "classp_jax.results.y imports optax",
  ]
