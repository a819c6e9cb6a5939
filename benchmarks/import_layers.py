"""The import structure of the ``huracan`` package, read from its own source (``ast``, no imports).

Prints, per layer (bottom to top, the order of the package sketch in the docs' architecture page):
lines of code, the imports that run from a lower layer up to a higher one, the import circles
(strongly connected components of the module graph, counting imports made inside functions,
which dodge a circle at import time but are a circle all the same) and the longest functions.

Alias modules are left out of the import graph (their lines still count): a module whose
docstring starts with ``Alias:`` and whose other statements are only imports and an ``__all__``
assignment. They keep an old import path working (pickled classes of registered models, Hydra
``_target_``s of past runs, old imports) by re-exporting names from the new home, which may sit
in a higher layer; they hold no code of their own, so they make no layer depend on another.

    python benchmarks/import_layers.py [--json out.json]

Exit status 0 always: the guard is ``tests/unit/test_layers.py``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "huracan"

# Bottom to top. A module belongs to the first layer whose prefix matches its dotted name
# (longest prefix wins). Every import should run down this list.
# The foundation (secrets, config resolvers and strict keys, packaged resources and datasets,
# progress bars) imports nothing else of the package and sits below the store; labels (pure
# functions of prices) sit below the evaluation whose rules read them.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("huracan.secrets", "huracan.config", "huracan.resources",
                    "huracan.datasets", "huracan.progress", "huracan.timeutil", "huracan.io",
                    "huracan.runtime")),
    ("db", ("huracan.db",)),
    ("base", ("huracan.models",)),
    ("data", ("huracan.data", "huracan.alerts")),
    ("labels", ("huracan.labels",)),
    ("evaluation", ("huracan.evaluation",)),
    ("features", ("huracan.features", "huracan.splits")),
    ("tracking", ("huracan.tracking",)),
    ("settings", ("huracan.settings", "huracan.stages")),
    ("rebuild", ("huracan.rebuild",)),
    ("registry", ("huracan.registry",)),
    ("regime", ("huracan.regime",)),
    ("analysis", ("huracan.analysis",)),
    ("sizing", ("huracan.sizing",)),
    ("serving", ("huracan.serving",)),
    ("pipeline", ("huracan.job", "huracan.pipeline", "huracan.tuning", "huracan.pooled")),
    ("paper", ("huracan.paper",)),
    ("orchestration", ("huracan.orchestration",)),
    ("callbacks", ("huracan.callbacks",)),
    ("cli", ("huracan.cli", "huracan.commands")),
    ("apps", ("huracan.train", "huracan.tune", "huracan.sizer", "huracan.nightly",
              "huracan.__main__")),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(mod: str) -> int:
    best, best_len = len(LAYERS) - 1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if mod == "huracan":
        return 0
    return best


def is_alias(tree: ast.Module) -> bool:
    """True for a pure alias module: docstring starting ``Alias:``, then only imports and an
    ``__all__`` assignment (see the module docstring)."""
    body = list(tree.body)
    if not body or not (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and str(body[0].value.value).startswith("Alias:")):
        return False
    for node in body[1:]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__"):
            continue
        return False
    return True


def scan() -> dict:
    files = sorted(ROOT.rglob("*.py"))
    mods = {module_name(f): f for f in files}
    edges: dict[str, set[str]] = defaultdict(set)
    deferred = 0
    funcs: list[tuple[int, str]] = []
    aliases: list[str] = []
    lines_per_layer: dict[str, int] = defaultdict(int)
    for mod, f in mods.items():
        src = f.read_text()
        lines_per_layer[LAYERS[layer_of(mod)][0]] += src.count("\n")
        tree = ast.parse(src)
        if is_alias(tree):
            aliases.append(mod)
            continue
        pkg = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        in_func: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                funcs.append((n, f"{mod}:{node.name}"))
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        in_func.add(id(sub))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            hit = False
            for t in targets:
                if t in mods and t != mod:
                    edges[mod].add(t)
                    hit = True
            if hit and id(node) in in_func:
                deferred += 1
    return {"mods": mods, "edges": edges, "deferred": deferred, "funcs": funcs,
            "lines": lines_per_layer, "aliases": sorted(aliases)}


def sccs(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _is_package_reexport(src: str, dst: str) -> bool:
    # a package's __init__ importing its own submodules, or a submodule importing its package
    return dst.startswith(src + ".") or src.startswith(dst + ".")


def report() -> dict:
    s = scan()
    edges = {k: {d for d in v if not _is_package_reexport(k, d)} for k, v in s["edges"].items()}
    upward = sorted(
        (a, b) for a, bs in edges.items() for b in bs if layer_of(b) > layer_of(a)
    )
    circles = sccs(sorted(s["mods"]), edges)
    funcs = sorted(s["funcs"], reverse=True)
    return {
        "modules": len(s["mods"]),
        "lines_per_layer": {name: s["lines"].get(name, 0) for name, _ in LAYERS},
        "lines_total": sum(s["lines"].values()),
        "imports_inside_functions": s["deferred"],
        "alias_modules": s["aliases"],
        "upward_imports": [f"{a} -> {b}" for a, b in upward],
        "circles": circles,
        "longest_functions": [{"lines": n, "function": name} for n, name in funcs[:10]],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    r = report()
    print(f"modules: {r['modules']}, lines: {r['lines_total']}")
    print("lines per layer (bottom to top):")
    for name, n in r["lines_per_layer"].items():
        print(f"  {name:14s} {n:6d}")
    print(f"imports made inside functions: {r['imports_inside_functions']}")
    print(f"alias modules (left out of the graph): {len(r['alias_modules'])}")
    for m in r["alias_modules"]:
        print(f"  {m}")
    print(f"upward imports: {len(r['upward_imports'])}")
    for e in r["upward_imports"]:
        print(f"  {e}")
    print(f"import circles: {len(r['circles'])}")
    for c in r["circles"]:
        print(f"  ({len(c)}) " + ", ".join(c))
    print("longest functions:")
    for f in r["longest_functions"]:
        print(f"  {f['lines']:4d}  {f['function']}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
