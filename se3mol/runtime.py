"""Process-wide settings that make CPU inference faster, applied by the commands that need them, and a
counter of the subnormal floats a computation makes (:class:`SubnormalCounter`), which many CPUs handle ~100x
slower than normal ones.

PyTorch on the CPU allocates every intermediate tensor with the C library's ``malloc``. glibc serves blocks
above a *dynamic* threshold (128 KiB at start) with ``mmap`` and gives them back with ``munmap`` when they are
freed, so a model evaluated thousands of times on tensors of a few hundred KiB to a few MiB (the conformer
sampler's edge features) pays page faults and page zeroing on every operation. Raising the threshold happens on
its own once large blocks have been freed, so a process that had first loaded QM9 sampled faster than a fresh
``se3mol conformers``. In fresh processes the fix takes 10 samples of a QM9 molecule from 0.98 to 0.54 s and 30
from 1.83 to 1.36 s (float32, two threads: ``benchmarks/speed/results/allocator.md``,
``benchmarks/speed/allocator.py``).
:func:`keep_freed_memory` fixes the thresholds
instead of leaving them to the process's history (Intel's and PyTorch's CPU performance guides reach for
jemalloc or tcmalloc for the same reason; this needs nothing installed).
"""

from __future__ import annotations

import ctypes
import sys
from collections import Counter
from typing import Any

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks up to this come from the heap and are reused
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory at the top of the heap kept, not returned to the system


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Let glibc's ``malloc`` reuse freed blocks up to ``mmap_threshold`` bytes and keep up to
    ``trim_threshold`` bytes of freed memory, instead of mapping and unmapping them on every tensor.

    Costs at most ``trim_threshold`` of memory held after a peak. Returns whether the settings were applied:
    ``False`` off Linux, or with a C library without ``mallopt`` (musl's ignores it and says so).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) & bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                 int(trim_threshold)))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says (processor, else architecture)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_hardware(device: str = "cpu", processes: int = 1) -> str:
    """What a computation ran on, for a model card: the GPU's name on CUDA, else the CPU's; torch threads (per
    process), processes when more than one, and torch's version."""
    import torch

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    many = f" x {processes} processes" if processes > 1 else ""
    return f"{name}, {torch.get_num_threads()} threads{many}, torch {torch.__version__}"


class SubnormalCounter:
    """Counts, per PyTorch operator, the subnormal floats (nonzero, below ``torch.finfo(dtype).tiny``) in the
    outputs of every operator run inside it, forward and backward alike.

    Many CPUs compute with subnormal operands ~100x slower than with normal ones, so a layer fed a few percent of
    them can dominate a training step. se3mol's layers make none where they can (:func:`se3mol.nn.layers.exp_neg`);
    this is how the tests and ``benchmarks/speed/subnormals.py`` hold them to it. Uninitialised buffers
    (``empty`` and its kin) are skipped: their contents are whatever memory held.

    >>> import torch
    >>> with SubnormalCounter() as c:
    ...     _ = torch.exp(torch.tensor([-100.0, 0.0]))
    >>> c.subnormal["aten.exp.default"], c.total["aten.exp.default"]
    (1, 2)
    """

    _SKIP = ("empty", "new_empty", "empty_strided", "new_empty_strided", "empty_like")

    def __init__(self) -> None:
        self.subnormal: Counter[str] = Counter()  # operator -> subnormal values in its outputs
        self.total: Counter[str] = Counter()  # operator -> floating-point values in its outputs
        self._mode: Any = None

    def __enter__(self) -> SubnormalCounter:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                name = str(func)
                if name.split(".")[1] in SubnormalCounter._SKIP:
                    return out
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.layout == torch.strided:
                        a = t.detach().abs()
                        counter.total[name] += t.numel()
                        counter.subnormal[name] += int(((a > 0) & (a < torch.finfo(t.dtype).tiny)).sum())
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    def fraction(self) -> float:
        """Subnormal values over all floating-point values counted (0 when nothing was counted)."""
        total = sum(self.total.values())
        return sum(self.subnormal.values()) / total if total else 0.0

    def worst(self, k: int = 5) -> list[tuple[str, int, int]]:
        """The ``k`` operators with the most subnormal outputs: ``(operator, subnormal, total)``."""
        return [(op, n, self.total[op]) for op, n in self.subnormal.most_common(k) if n]
