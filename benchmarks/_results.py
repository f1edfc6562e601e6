"""The one writer of benchmark results: ``STEM.json`` and ``STEM.md`` side by side, each written atomically.

Every script of the suite ends with ``write_result``. The JSON holds the title, the exact command, the date,
the machine (CPU, cores, torch and its threads, Python, load) and the script's data; the Markdown repeats the
title, command, machine and date above the script's table(s). Per-molecule lists (named by ``per_molecule``
paths such as ``"results.*.molecules"``) are split off into ``per_molecule/STEM.json.gz`` beside the summary:
git keeps the summaries, and only those per-molecule files that another script reads to recompute a committed
figure (see ``.gitignore``). ``read_result`` puts the two back together.

>>> md_table(["model", "MAE"], [["egnn", "1.0"]])
['| model | MAE |', '| --- | --- |', '| egnn | 1.0 |']
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: ``python -m benchmarks.TOPIC.SCRIPT`` runs from here."""


def results_dir(script: str) -> Path:
    """The ``results/`` folder beside a script (pass its ``__file__``)."""
    return Path(script).resolve().parent / "results"


def invocation() -> str:
    """The command that started this process, as ``python -m benchmarks.TOPIC.SCRIPT ARGS``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    prog = f"python -m {spec.name}" if spec is not None and spec.name else f"python {sys.argv[0]}"
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def machine() -> dict[str, Any]:
    """CPU model, cores, torch version and threads, Python, RDKit (when loaded) and the 1-minute load average."""
    from se3mol.runtime import cpu_name

    info: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    rdkit = sys.modules.get("rdkit")
    if rdkit is not None:
        info["rdkit"] = rdkit.__version__
    info["load_average"] = round(os.getloadavg()[0], 2)
    return info


def describe_machine(m: dict[str, Any] | str) -> str:
    if isinstance(m, str):
        return m
    parts = [f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"]
    if "torch" in m:
        parts.append(f"torch {m['torch']} ({m.get('torch_threads', '?')} threads)")
    parts.append(f"Python {m.get('python', '?')}")
    if "rdkit" in m:
        parts.append(f"RDKit {m['rdkit']}")
    if "load_average" in m:
        parts.append(f"load {m['load_average']}")
    return ", ".join(parts)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _pop(obj: Any, keys: list[str]) -> Any:
    """Remove the value at ``keys`` (``*`` = every list item) from ``obj``; return it nested as it was."""
    head, *rest = keys
    if head == "*":
        if not isinstance(obj, list):
            return None
        parts = [_pop(x, rest) for x in obj]
        return parts if any(p is not None for p in parts) else None
    if not isinstance(obj, dict) or head not in obj:
        return None
    if not rest:
        return {head: obj.pop(head)}
    part = _pop(obj[head], rest)
    return None if part is None else {head: part}


def _merge(into: Any, part: Any) -> None:
    if isinstance(part, list):
        for a, b in zip(into, part, strict=True):
            if b is not None:
                _merge(a, b)
    elif isinstance(part, dict):
        for k, v in part.items():
            if k in into and isinstance(v, dict | list):
                _merge(into[k], v)
            else:
                into[k] = v


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def per_molecule_path(stem: Path) -> Path:
    return Path(stem).parent / "per_molecule" / f"{Path(stem).name}.json.gz"


def write_result(stem: str | Path, title: str, data: dict[str, Any], lines: Iterable[str] = (), *,
                 command: str | None = None, per_molecule: Sequence[str] = ()) -> Path:
    """Write ``STEM.json`` and ``STEM.md`` (``STEM`` keeps any dot in its name); return the JSON's path.

    ``data`` is the script's result; ``command``, ``date`` and ``machine`` are added unless it has them (a
    joined report keeps its parts'). ``lines`` is the Markdown below the header: tables (``md_table``) and
    notes. ``per_molecule`` names dotted paths in ``data`` (``*``: every item of a list) moved to
    ``per_molecule/STEM.json.gz``.
    """
    stem = Path(stem)
    report = {"title": title, "command": command or invocation(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(), **copy.deepcopy(data)}
    details: dict[str, Any] = {}
    for path in per_molecule:
        part = _pop(report, path.split("."))
        if part is not None:
            _merge(details, part)
    if details:
        _atomic_write(per_molecule_path(stem), gzip.compress(json.dumps(details).encode(), 9, mtime=0))
    json_path = stem.with_name(stem.name + ".json")
    _atomic_write(json_path, (json.dumps(report, indent=1) + "\n").encode())
    header = [f"# {title}", "", f"`{report['command']}`", "",
              f"Measured {report['date']} on {describe_machine(report['machine'])}.", ""]
    _atomic_write(stem.with_name(stem.name + ".md"), ("\n".join([*header, *lines]).rstrip("\n") + "\n").encode())
    print(f"wrote {json_path} and .md", file=sys.stderr)
    return json_path


def read_result(path: str | Path) -> dict[str, Any]:
    """A result JSON with its per-molecule lists put back, when ``per_molecule/STEM.json.gz`` is there."""
    path = Path(path)
    report = json.loads(path.read_text())
    details = per_molecule_path(path.with_suffix(""))
    if details.exists():
        _merge(report, json.loads(gzip.decompress(details.read_bytes())))
    return report
