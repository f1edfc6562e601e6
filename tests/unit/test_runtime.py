"""se3mol.runtime: the C library's allocator settings."""

from __future__ import annotations

import platform
import sys

import pytest

from se3mol import runtime


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt's thresholds are glibc's")
def test_keep_freed_memory_is_applied_on_glibc_and_can_be_repeated():
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True


def test_keep_freed_memory_does_nothing_off_linux_or_without_mallopt(monkeypatch):
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    assert runtime.keep_freed_memory() is False
