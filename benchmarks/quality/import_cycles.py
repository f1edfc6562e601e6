"""Import cycles among se3mol's modules, from the source alone (no import is executed).

    python -m benchmarks.quality.import_cycles            # module-level imports only
    python -m benchmarks.quality.import_cycles --all      # also imports inside functions

Prints each strongly connected group of modules that import one another (directly or around a loop) and
their number. Until import-linter checks the layering in ``make lint``, this is how the count is measured.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from benchmarks._results import ROOT


def module_graph(package: Path, inside_functions: bool) -> dict[str, set[str]]:
    mods: dict[str, Path] = {}
    for p in package.rglob("*.py"):
        name = ".".join(p.relative_to(package.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if inside_functions else tree.body
        out: set[str] = set()
        for n in nodes:
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == package.name:
                out.add(n.module)
                out.update(f"{n.module}.{a.name}" for a in n.names)
            elif isinstance(n, ast.Import):
                out.update(a.name for a in n.names if a.name.split(".")[0] == package.name)
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="count imports inside functions too")
    ap.add_argument("--package", type=Path, default=ROOT / "se3mol")
    args = ap.parse_args()
    found = cycles(module_graph(args.package, args.all))
    for group in found:
        print(f"{len(group)} modules: {', '.join(group)}")
    print(f"import cycles ({'all imports' if args.all else 'module-level imports'}): {len(found)}")


if __name__ == "__main__":
    main()
