"""What the benchmarks read of this host's processes: ``/proc/PID/stat`` (Linux)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

TICK = os.sysconf("SC_CLK_TCK")


class ProcessTimes(NamedTuple):
    """A process's parent and name, and its CPU seconds so far: its own (user, system)
    and its waited-for children's (``stat(5)``'s utime, stime, cutime, cstime)."""

    parent: int
    name: str
    user: float
    system: float
    children_user: float
    children_system: float

    @property
    def own(self) -> float:
        """Its own CPU seconds (user + system)."""
        return self.user + self.system


def process_times(pid: int) -> ProcessTimes | None:
    """Process ``pid``'s times (also of one that has exited and not been waited for
    yet), or ``None`` if there is no such process."""
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
    fields = rest.split()  # from the state, the 3rd field of stat(5)
    user, system, children_user, children_system = (int(t) / TICK for t in fields[11:15])
    return ProcessTimes(int(fields[1]), name, user, system, children_user, children_system)


def all_processes() -> dict[int, ProcessTimes]:
    """Every process of the host, by pid (those that end meanwhile left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        times = process_times(int(entry.name)) if entry.name.isdigit() else None
        if times is not None:
            found[int(entry.name)] = times
    return found
