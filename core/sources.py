"""Where voxc's modules live, and the hash of the code a build stage runs.

Installed, the code is the `voxc` namespace; in the repository the folders sit at the top (core/,
models/, compiler/, targets/, calibration/, voice/, voxc/). A stage's cache key includes the hash
of its source closure: its module and every voxc module it imports (at any depth, including
imports inside functions), so editing code invalidates exactly the stages that run it. Modules
loaded by name through a registry (families, backends) are not followed: stages name them.

The same walk, at the grain of functions, names the tools in the key: imported_tools() follows what
a stage's function can reach (the names it uses, through voxc modules) to the third-party
distributions it imports, and adds what those distributions require -- so the libraries that decide
a gate (pesq, pystoi, speechmos, scipy, numpy) key the stages that judge with them, and no others.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from voxc.core.hashing import sha256_chunks

ROOT_PACKAGE = "voxc"


def module_file(name: str) -> Path | None:
    """The source file of a voxc module (a package's __init__.py), or None if it does not exist."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def read_source(path: Path) -> bytes:
    return path.read_bytes()


@functools.lru_cache(maxsize=None)
def direct_imports(name: str) -> tuple[str, ...]:
    """voxc modules a module imports anywhere in its text (absolute imports only)."""
    path = module_file(name)
    if path is None:
        return ()
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for m in mods:
            if m.split(".")[0] == ROOT_PACKAGE and module_file(m) is not None:
                found.append(m)
    return tuple(sorted(set(found)))


def closure(names, exclude=()) -> list[str]:
    """The modules named and every voxc module they import, transitively (not following `exclude`)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name in exclude or module_file(name) is None:
            continue
        seen.add(name)
        todo += direct_imports(name)
    return sorted(seen)


def package_modules(package: str) -> list[str]:
    """Every module of a package folder (e.g. a model family: its declaration and its graphs)."""
    init = module_file(package)
    if init is None or init.name != "__init__.py":
        return [package] if init is not None else []
    return [package] + sorted(f"{package}.{p.stem}" for p in init.parent.glob("*.py") if p.name != "__init__.py")


def source_hash(names) -> str:
    """Hash of the text of the closure of `names` (module name + bytes of each file)."""
    mods = closure(names)
    return sha256_chunks(m.encode() + read_source(module_file(m)) for m in mods)[:16]


# ---- the third-party distributions a stage imports (the tools in its key) ---------------------------

@functools.lru_cache(maxsize=None)
def _tree(name: str) -> ast.Module | None:
    path = module_file(name)
    return ast.parse(path.read_text()) if path is not None else None


def _is_module(name: str) -> bool:
    return name.split(".")[0] == ROOT_PACKAGE and module_file(name) is not None


def _import_bindings(nodes) -> dict[str, tuple]:
    """Names the import statements among `nodes` bind: ("module", voxc module), ("def", voxc module, name)
    or ("external", top-level module name)."""
    out: dict[str, tuple] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == ROOT_PACKAGE:
                    out[a.asname or a.name.split(".")[0]] = ("module", a.name if a.asname else ROOT_PACKAGE)
                else:
                    out[a.asname or a.name.split(".")[0]] = ("external", a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                local = a.asname or a.name
                if node.module.split(".")[0] != ROOT_PACKAGE:
                    out[local] = ("external", node.module.split(".")[0])
                elif _is_module(f"{node.module}.{a.name}"):
                    out[local] = ("module", f"{node.module}.{a.name}")
                else:
                    out[local] = ("def", node.module, a.name)
    return out


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """A module's statements that run when it is imported (inside top-level if/try blocks too)."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [n for field in ("body", "orelse", "finalbody", "handlers") for n in getattr(node, field, [])]
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
        else:
            out.append(node)
    return out


def _definitions(name: str) -> dict[str, ast.AST]:
    """A module's top-level functions, classes and names assigned once (e.g. `is_deferred = schema.x`)."""
    tree = _tree(name)
    out: dict[str, ast.AST] = {}
    for n in _top_level(tree) if tree else []:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[n.name] = n
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                if isinstance(t, ast.Name):
                    out[t.id] = n
    return out


def _imports_inside(node: ast.AST) -> list[ast.stmt]:
    return [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]


class _Reach:
    """Walks what a function can run: the module it lives in is imported (its top-level imports run),
    the names it uses resolve to functions and classes of voxc modules (followed the same way) or to
    modules (a voxc module used whole brings every import in it); third-party top-level modules found
    on the way are collected."""

    def __init__(self):
        self.external: set[str] = set()
        self.seen: set[tuple] = set()

    def module(self, name: str) -> None:
        """Importing a voxc module runs its top-level imports."""
        if ("module", name) in self.seen or _tree(name) is None:
            return
        self.seen.add(("module", name))
        self._bind(_import_bindings(_top_level(_tree(name))).values())
        parent = name.rpartition(".")[0]
        if parent:
            self.module(parent)

    def whole(self, name: str) -> None:
        """A module used as a value: anything in it may run."""
        if ("whole", name) in self.seen or _tree(name) is None:
            return
        self.seen.add(("whole", name))
        self.module(name)
        for kind, *rest in _import_bindings(_imports_inside(_tree(name))).values():
            if kind == "external":
                self.external.add(rest[0])
            elif kind == "module":
                self.whole(rest[0])
            else:
                self.definition(*rest)

    def definition(self, module: str, name: str) -> None:
        if ("def", module, name) in self.seen:
            return
        self.seen.add(("def", module, name))
        self.module(module)
        node = _definitions(module).get(name)
        outer = _import_bindings(_top_level(_tree(module))) if _tree(module) else {}
        if node is None:                  # a name the module imports from elsewhere, or a constant
            if name in outer and outer[name][0] != "external":
                self._use(outer[name], None)
            return
        inner = _import_bindings(_imports_inside(node))
        self._bind(inner.values())
        bindings = {**outer, **inner}
        local = _definitions(module)
        based = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in bindings:
                based.add(id(n.value))
                self._use(bindings[n.value.id], n.attr)
        for n in ast.walk(node):     # a package's data read by name (importlib.resources.files("pkg"))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "files" \
                    and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str):
                self.external.add(n.args[0].value.split(".")[0])
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and id(n) not in based:
                if n.id in bindings:
                    self._use(bindings[n.id], None)
                elif n.id in local and n.id != name:
                    self.definition(module, n.id)

    def _bind(self, bound) -> None:
        """Import statements that run: their modules are imported."""
        for kind, *rest in bound:
            if kind == "external":
                self.external.add(rest[0])
            else:
                self.module(rest[0])

    def _use(self, binding: tuple, attr: str | None) -> None:
        kind, *rest = binding
        if kind == "external":
            self.external.add(rest[0])
        elif kind == "def":
            self.definition(*rest)
        elif attr is not None and attr in _definitions(rest[0]):
            self.definition(rest[0], attr)
        elif attr is not None and attr in _import_bindings(_top_level(_tree(rest[0]))):   # a re-exported name
            self._use(_import_bindings(_top_level(_tree(rest[0])))[attr], None)
        elif attr is not None and _is_module(f"{rest[0]}.{attr}"):
            self.whole(f"{rest[0]}.{attr}")
        else:
            self.whole(rest[0])


INSTALLERS = {"setuptools", "pip", "wheel"}    # required by some packages, but run no stage code


@functools.lru_cache(maxsize=1)
def _distributions_of() -> dict[str, list[str]]:
    import importlib.metadata
    return importlib.metadata.packages_distributions()


@functools.lru_cache(maxsize=None)
def imported_tools(module: str, function: str, modules: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The third-party distributions a stage runs: those the function `module.function` can reach by its
    imports (at any depth through voxc code), plus those the named `modules` import when they load
    (a stage's backend and family, which the registries load by name). Standard-library modules are
    left out; an import no installed distribution provides keeps its module name."""
    import sys
    reach = _Reach()
    reach.definition(module, function)
    for m in modules:
        reach.module(m)
    dists = _distributions_of()
    out = set()
    for top in reach.external:
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        out.update(dists.get(top, [top]))
    return tuple(sorted(out | {r for d in out for r in _requires(d)} - INSTALLERS))


@functools.lru_cache(maxsize=None)
def _requires(dist: str) -> tuple[str, ...]:
    """The installed distributions `dist` itself requires (no extras): what its own code runs, e.g.
    scipy under pystoi."""
    import importlib.metadata
    import re
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    out = []
    for r in reqs:
        name, _, marker = r.partition(";")
        if "extra" in marker:
            continue
        name = re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]
        try:
            out.append(importlib.metadata.metadata(name)["Name"])
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(sorted(set(out)))
