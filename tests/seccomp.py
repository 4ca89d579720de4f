"""The system call filter of a systemd unit, applied to a command here (libseccomp through ctypes): what the
unit's SystemCallFilter= and SystemCallErrorNumber= lines let a process do, without systemd as PID 1.

    python tests/seccomp.py UNIT -- COMMAND ARGS...

The groups (@system-service, ...) are expanded as `systemd-analyze syscall-filter` lists them. The lines are read
in order, as systemd does: the first is an allow list (or a deny list, with ~), and each later one adds to the
allowed calls or takes from them. A call outside the list kills the process (SIGSYS), or fails with the unit's
SystemCallErrorNumber."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000


def groups() -> dict[str, list[str]]:
    """Each group systemd knows and what it lists (calls and other groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = found.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return found


def expand(names: list[str], known: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name.startswith("@"):
            todo.extend(known[name])
        else:
            calls.add(name)
    return calls


def unit_filter(unit: Path) -> tuple[set[str], int | None]:
    """The calls the unit allows (it must give an allow list first), and the errno of the others (None: killed)."""
    known = groups()
    allowed: set[str] | None = None
    error: int | None = None
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallErrorNumber":
            error = getattr(errno, value.strip())
        if key != "SystemCallFilter":
            continue
        deny = value.startswith("~")
        calls = expand(value.lstrip("~").split(), known)
        if allowed is None:
            assert not deny, "a deny list first: not what this helper reads"
            allowed = calls
        elif deny:
            allowed -= calls
        else:
            allowed |= calls
    assert allowed is not None, f"{unit} has no SystemCallFilter="
    return allowed, error


def apply(allowed: set[str], error: int | None) -> None:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    ctx = ctypes.c_void_p(lib.seccomp_init(ctypes.c_uint32(_KILL_PROCESS if error is None else _ERRNO | error)))
    for name in sorted(allowed):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # a call of another architecture, or one this libseccomp does not know
            continue
        if lib.seccomp_rule_add(ctx, ctypes.c_uint32(_ALLOW), number, 0) != 0:
            raise OSError(f"seccomp_rule_add({name}) failed")
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed")


if __name__ == "__main__":
    unit, dash, *command = sys.argv[1:]
    assert dash == "--" and command, __doc__
    apply(*unit_filter(Path(unit)))
    os.execvp(command[0], command)
