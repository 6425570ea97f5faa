"""One file per paper; importing this package registers every variant (one import line per paper)."""

from core.models import fcn, gradientnet, lmfn, maxim, reblur, sp  # noqa: F401
