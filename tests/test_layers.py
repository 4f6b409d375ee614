"""Imports point one way: each module of treadle imports only from the layers above it.

The layers are the table in docs/map.md (the one copy of it), top to bottom; this test
reads it. Within a layer the modules are in order too: a module may import one listed
before it, never one after (unless marked unordered). A folder name stands for every
module under it. Modules not listed are classified by name (see ``classify``); a
module that fits nowhere fails the test until its author adds it to the table. Imports
under ``if TYPE_CHECKING:`` are exempt, and so are ``__init__.py`` and ``__main__.py``
(which re-export and dispatch). Every module must also open with a docstring.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import treadle

PACKAGE_DIR = Path(treadle.__file__).resolve().parent
MAP = Path(__file__).resolve().parents[1] / "docs" / "map.md"


@dataclass(frozen=True)
class Listed:
    """A module (or folder) named in the layer table."""

    name: str
    ordered: bool


def read_layer_table(text: str) -> list[tuple[str, list[Listed]]]:
    """The rows of the ``| layer | modules | job |`` table under "## Layers", in order."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, list[Listed]]] = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("layer", "") or set(cells[0]) <= set("-: "):
            continue
        listed = [
            Listed(match.group(1), ordered=match.group(2) is None)
            for match in re.finditer(r"`([\w.]+)`( \(unordered\))?", cells[1])
        ]
        rows.append((cells[0], listed))
    return rows


# (layer name, modules in the order they may import each other), from docs/map.md.
LAYERS = read_layer_table(MAP.read_text(encoding="utf-8"))
LAYER_INDEX = {name: i for i, (name, _) in enumerate(LAYERS)}

# Modules the table does not name are classified by name, first match wins. They may
# import any module of their own layer (their order within it is not known).
NAME_RULES: list[tuple[tuple[str, ...], str]] = [
    (("bench", "benchmarks"), "side"),  # whole sub-packages, by prefix
]
KEYWORD_RULES: list[tuple[tuple[str, ...], str]] = [
    (("crawl", "demo"), "crawler"),
    (("http",), "HTTP"),
    (("stream", "socket", "server", "tls", "dns", "threads"), "I/O"),
]

EXEMPT = {"__init__", "__main__"}


@dataclass(frozen=True)
class Place:
    layer: int
    position: int | None  # None: not ordered within its layer

    def describe(self) -> str:
        return LAYERS[self.layer][0]


def classify(module: str) -> Place | None:
    """Where ``module`` (dotted, relative to treadle: "loop", "tour.cli") sits, or None."""
    for layer, (_, listed) in enumerate(LAYERS):
        ordered = [entry.name for entry in listed if entry.ordered]
        for entry in listed:
            if module == entry.name:
                return Place(layer, ordered.index(module) if entry.ordered else None)
            if module.startswith(entry.name + "."):  # a module of a listed folder
                return Place(layer, None)
    top = module.split(".")[0]
    for prefixes, layer_name in NAME_RULES:
        if top.startswith(prefixes):
            return Place(LAYER_INDEX[layer_name], None)
    for keywords, layer_name in KEYWORD_RULES:
        if any(keyword in module for keyword in keywords):
            return Place(LAYER_INDEX[layer_name], None)
    return None


def may_import(importer: Place, imported: Place) -> bool:
    if imported.layer != importer.layer:
        return imported.layer < importer.layer
    if importer.position is None or imported.position is None:
        return True
    return imported.position <= importer.position


# --- reading imports ----------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, anywhere (functions too), except under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _exists(module: str, package_dir: Path) -> bool:
    path = package_dir.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def treadle_imports(
    source: str, module: str, *, is_package: bool = False, package_dir: Path = PACKAGE_DIR
) -> list[tuple[int, str]]:
    """(line, target) for each import of treadle in ``source``.

    A target is a module relative to treadle ("loop", "testing.clock"), or "" for the
    package ``treadle`` itself (its ``__init__``).
    """
    tree = ast.parse(source)
    parts = module.split(".") if module else []
    package = parts if is_package else parts[:-1]
    targets: list[tuple[int, str]] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "treadle" or alias.name.startswith("treadle."):
                    targets.append((node.lineno, alias.name.removeprefix("treadle").lstrip(".")))
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            absolute = ".".join([*base, *([node.module] if node.module else [])])
        elif node.module == "treadle" or (node.module or "").startswith("treadle."):
            absolute = node.module.removeprefix("treadle").lstrip(".")  # type: ignore[union-attr]
        else:
            continue
        for alias in node.names:
            submodule = f"{absolute}.{alias.name}" if absolute else alias.name
            if alias.name != "*" and _exists(submodule, package_dir):
                targets.append((node.lineno, submodule))
            else:
                targets.append((node.lineno, absolute))
    return targets


def all_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module under treadle, by dotted name relative to it ("__init__" for the root)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).with_suffix("")
        modules[".".join(relative.parts)] = path
    return modules


def _package_of(target: str) -> str:
    """The module that holds a package's code: "" -> "__init__", "testing" -> "testing.__init__"."""
    return f"{target}.__init__" if target else "__init__"


def violations(
    module: str, source: str, sources: dict[str, str], *, is_package: bool = False
) -> list[str]:
    """What is wrong with ``module``'s imports, given every module's source."""
    importer = classify(module)
    if importer is None:
        return [
            f"treadle.{module} is not classified: add it to the layer table in docs/map.md "
            "(or name it so a rule in classify() places it)"
        ]
    problems = []
    for line, target in treadle_imports(source, module, is_package=is_package):
        # Importing a package runs its __init__: what that imports must be allowed too.
        expanded = [target]
        seen = set()
        while expanded:
            name = expanded.pop()
            if name in seen:
                continue
            seen.add(name)
            init = _package_of(name)
            if init in sources and name == "":
                expanded.extend(t for _, t in treadle_imports(sources[init], "", is_package=True))
                continue
            imported = classify(name)
            if imported is None:
                problems.append(
                    f"treadle.{module}:{line} imports treadle.{name}, which is not classified: "
                    "add it to the layer table in docs/map.md"
                )
            elif not may_import(importer, imported):
                via = f" (through 'treadle.{target}')" if name != target else ""
                problems.append(
                    f"treadle.{module}:{line} ({importer.describe()}) imports "
                    f"treadle.{name}{via} ({imported.describe()}), a layer below it or a "
                    "module after it in its layer"
                )
    return problems


def _module_params() -> list[str]:
    return [name for name in all_modules() if name.split(".")[-1] not in EXEMPT]


# --- the checks -------------------------------------------------------------------------


@pytest.mark.parametrize("module", _module_params())
def test_module_imports_only_from_the_layers_above(module: str) -> None:
    modules = all_modules()
    sources = {name: path.read_text(encoding="utf-8") for name, path in modules.items()}
    problems = violations(module, sources[module], sources)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", list(all_modules()))
def test_module_opens_with_a_docstring(module: str) -> None:
    tree = ast.parse(all_modules()[module].read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring and docstring.strip(), f"treadle.{module} must open with a docstring"


def test_the_core_modules_are_where_the_map_says() -> None:
    modules = all_modules()
    core = [entry.name for entry in LAYERS[LAYER_INDEX["core"]][1]]
    assert core[0] == "core.clock" and core[-1] == "core.loop", core
    for name in ("errors", *core, "loop", "runners", "sleeping", "testing.clock"):
        assert name in modules, f"treadle.{name} is missing"
    unplaced = [m for m in modules if classify(m) is None and m.split(".")[-1] not in EXEMPT]
    assert not unplaced, unplaced


def test_the_map_table_reads_as_meant() -> None:
    text = (
        "# Map\n\n## Layers\n\n| layer | modules | job |\n|---|---|---|\n"
        "| one | `a`, `b` | x |\n| two | `c`, `d` (unordered), `e` | y |\n"
        "\n## Next\n\n| z | `q` | w |\n"
    )
    assert read_layer_table(text) == [
        ("one", [Listed("a", True), Listed("b", True)]),
        ("two", [Listed("c", True), Listed("d", False), Listed("e", True)]),
    ]


# --- the checker itself -------------------------------------------------------------------


def _check(module: str, source: str, sources: dict[str, str] | None = None) -> list[str]:
    return violations(module, source, sources or {})


def test_checker_flags_an_import_from_a_lower_layer() -> None:
    assert _check("core.loop", "from treadle.loop import EventLoop\n")
    assert _check("errors", "import treadle.core.clock\n")
    assert _check("core.futures", "from treadle import sleeping\n")
    assert _check("sleeping", "from treadle.testing import VirtualClock\n")


def test_checker_flags_an_import_inside_a_function() -> None:
    assert _check("core.handles", "def f():\n    from treadle.core.loop import CoreLoop\n")


def test_checker_allows_imports_from_above() -> None:
    source = "from treadle.core.futures import Future\nimport treadle.errors\n"
    assert _check("core.tasks", source) == []
    assert _check("testing.runner", "from treadle.loop import EventLoop\n") == []
    assert _check("streams", "from treadle.sockets import sock_connect\n") == []


def test_checker_orders_modules_within_a_layer() -> None:
    assert _check("core.tasks", "from treadle.core.futures import Future\n") == []
    assert _check("core.futures", "from treadle.core.tasks import Task\n")
    assert _check("locks", "from treadle.waitqueue import WaitQueue\n") == []
    assert _check("waitqueue", "from treadle.locks import Lock\n")


def test_checker_exempts_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n    from treadle.core.tasks import Task\n"
        "if typing.TYPE_CHECKING:\n    from treadle.core.loop import CoreLoop\n"
    )
    assert _check("core.futures", source) == []
    # The else branch of a TYPE_CHECKING test runs, so it is checked.
    source = "if TYPE_CHECKING:\n    pass\nelse:\n    import treadle.core.tasks\n"
    assert _check("core.futures", source)


def test_checker_resolves_relative_imports() -> None:
    assert _check("core.futures", "from .tasks import Task\n")
    assert _check("core.futures", "from . import tasks\n")
    assert _check("core.tasks", "from .futures import Future\n") == []
    assert _check("testing.runner", "from .clock import VirtualClock\n") == []
    assert _check("testing.runner", "from ..loop import EventLoop\n") == []
    assert _check("testing.runner", "from .. import loop\n") == []


def test_checker_expands_the_package_init() -> None:
    sources = {"__init__": "from treadle.sleeping import sleep\nfrom treadle.loop import x\n"}
    assert _check("core.futures", "import treadle\n", sources)
    assert _check("testing.runner", "import treadle\n", sources) == []


def test_checker_classifies_by_name() -> None:
    side = LAYER_INDEX["side"]
    assert classify("tour.server") == Place(side, None)
    assert classify("testing.clock") == Place(side, None)
    assert classify("streams_tls").layer == LAYER_INDEX["I/O"]  # type: ignore[union-attr]
    assert classify("dns").layer == LAYER_INDEX["I/O"]  # type: ignore[union-attr]
    assert classify("servers").layer == LAYER_INDEX["I/O"]  # type: ignore[union-attr]
    assert classify("http.client").layer == LAYER_INDEX["HTTP"]  # type: ignore[union-attr]
    assert classify("http_server").layer == LAYER_INDEX["HTTP"]  # type: ignore[union-attr]
    assert classify("crawler.frontier").layer == LAYER_INDEX["crawler"]  # type: ignore[union-attr]
    assert classify("demo_site").layer == LAYER_INDEX["crawler"]  # type: ignore[union-attr]
    assert classify("tls") == Place(LAYER_INDEX["I/O"], 3)
    assert classify("core.tasks") == Place(LAYER_INDEX["core"], 5)
    assert classify("core.tracebacks") == Place(LAYER_INDEX["core"], 2)
    assert classify("describe") == Place(LAYER_INDEX["errors"], 1)
    assert classify("mystery") is None


def test_checker_asks_for_unknown_modules_to_be_classified() -> None:
    problems = _check("mystery", "import os\n")
    assert len(problems) == 1
    assert "add it to the layer table" in problems[0]
    problems = _check("core.tasks", "from treadle.mystery import thing\n")
    assert len(problems) == 1
    assert "not classified" in problems[0]
