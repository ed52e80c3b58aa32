"""Child processes ttpscope starts itself (detection workers, serve's job children, the guarded EVTX parser)."""

from __future__ import annotations

import signal


def die_with_parent() -> None:
    """Linux: the kernel kills the calling child when its parent dies, even by SIGKILL (a job killed over its
    time budget takes its workers with it). Not inherited across fork: each child calls it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
