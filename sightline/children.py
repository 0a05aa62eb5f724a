"""Child processes that do not outlive the process that started them.

``sightline up`` starts its workers and the embedded Redis in sessions of their own
(so a terminal's Ctrl-C reaches only ``up``, which stops them in order). If ``up``
itself is killed (SIGKILL, OOM), nothing would stop them: they would hold the data
dir and keep working without a supervisor. On Linux each asks the kernel for a
SIGTERM when its parent dies (``PR_SET_PDEATHSIG``): a graceful stop for both.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that does that (``None`` off Linux).

    libc is loaded here, in the parent: between fork and exec the child only makes the
    one ``prctl`` call, taking no lock another thread of the parent might have held.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return die_with_parent
