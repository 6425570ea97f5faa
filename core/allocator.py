"""Why this module exists: glibc's default allocator makes large activations slow in this project's machines.

glibc maps every block over its mmap threshold (at most 32 MB; one 1280x720 map of 24 channels is 88 MB) straight
from the kernel and unmaps it when it is freed, so each of a network's hundreds of large activations pays for
faulting in freshly zeroed pages, which is slow in a virtual machine. Inside ``reusing_freed_memory`` blocks come
from the heap and freed ones stay there for the next tensor, so most activations reuse pages already faulted in;
on leaving, the free heap goes back to the system. The measurement that justifies it is a command, not a number
written here: ``python benchmarks/allocator.py`` (one add, with and without reuse) and ``python
benchmarks/inference.py --reuse-memory off|call|keep`` (whole models); the figures are in the README's
*Benchmarks*. This is the one place that tunes the allocator; a paper's file never does.

glibc only: elsewhere (macOS, musl) every function here is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from contextlib import contextmanager

# glibc mallopt parameters (malloc.h) and the defaults ``reusing_freed_memory`` restores
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX, _DEFAULT_ARENA_MAX = 128 * 1024, 65536, 0  # 0: glibc's own count


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # glibc only (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def reuse_mode() -> str:
    """``DEBLUR_REUSE_MEMORY``: "call" (the default), "keep" or "off" (see ``reusing_freed_memory``)."""
    mode = os.environ.get("DEBLUR_REUSE_MEMORY", "call").strip().lower()
    if mode not in ("call", "keep", "off"):
        raise ValueError(f"DEBLUR_REUSE_MEMORY={mode!r}: expected call, keep or off")
    return mode


_reuse_lock = threading.Lock()
_reusers = 0  # callers inside ``reusing_freed_memory`` now (app requests run concurrently)


@contextmanager
def reusing_freed_memory():
    """Within: freed large blocks stay in the process heap for the next tensor. glibc only; a no-op elsewhere.
    ``core.inference.restore`` runs inside it, and so does every app request.

    Inside, blocks come from the heap (``M_MMAP_MAX`` 0, one arena) and freed ones stay there (``M_TRIM_THRESHOLD``
    1 GiB). The price is fragmentation while the run lasts: a higher peak of resident memory.

    ``DEBLUR_REUSE_MEMORY`` chooses what happens when the last concurrent caller leaves:
    - "call" (default): glibc's defaults come back and the free heap is returned to the system (``malloc_trim``):
      an idle process holds its weights, not the last run's activations; the next run faults its pages in again.
    - "keep": the heap keeps its free memory for the next call (faster for a batch of same-size images; resident
      memory stays at the largest run's); ``release_memory()`` returns it.
    - "off": glibc's defaults throughout.
    (Setting these parameters ends glibc's dynamic mmap threshold for the process: it stays where it had grown
    to, at most 32 MB.)
    """
    global _reusers
    libc, mode = _libc(), reuse_mode()
    if libc is None or mode == "off":
        yield
        return
    with _reuse_lock:
        if _reusers == 0:
            libc.mallopt(_M_ARENA_MAX, 1)  # arenas made later (new threads) share the main heap and its free blocks
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        _reusers += 1
    try:
        yield
    finally:
        with _reuse_lock:
            _reusers -= 1
            if _reusers == 0 and mode == "call":
                libc.mallopt(_M_ARENA_MAX, _DEFAULT_ARENA_MAX)
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def release_memory() -> None:
    """Return the heap's free memory to the system (glibc ``malloc_trim``); the next run faults its pages in again."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def trimming(fn):
    """``fn``, then the heap's free pages returned (``release_memory``). Tiles that reuse freed memory would
    otherwise leave a tiled run holding every page any tile touched; each tile then faults its pages in again,
    as a whole run does (``python benchmarks/inference.py --sizes 4000x6000`` measures the peak)."""

    def trimmed(*args, **kwargs):
        result = fn(*args, **kwargs)
        release_memory()
        return result

    return trimmed
