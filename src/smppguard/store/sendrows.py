"""The send rows after a mark, read as the history's keys and times by a process of its own.

Why a process: a roll forward during a burst reads a million rows or more. In a thread of the daemon each row
takes the GIL back from the loop (sqlite3 gives it up around every step), so the read crawls (18 s for 1M rows
while the loop relays 30,000 messages a second) and every hand-over of the GIL slows the loop too. A process
holds no GIL of the daemon's: it reads on the other core, and the daemon takes the result in one read of a file.

The child runs without `site` (python -S: the package's folder is on its PYTHONPATH, as for the commit process)
and imports only sqlite3, array, struct and the store's connection (db.py, as the commit process does). It is
started from the upkeep's thread, so it inherits that thread's nice value. Its output (a temporary file): the
last row's id and the count, 8 bytes each, then the numbers as int64 and the times as float64, in row order.
With `--accounts` (history keyed by account too: `[rules.frequency] scope = "account"`) the accounts follow: how
many, 8 bytes, then each one's name (its length, 4 bytes, and UTF-8), then each row's account as an int32 index
into those names; the daemon makes the keys with one scope id an account (snapshot.scoped_arrays).
Anything it cannot do (a number past int64, a store it cannot read) ends it with an error, and the caller reads
in its own thread instead.
"""

from __future__ import annotations

import array
import sqlite3
import struct
import sys

TYPE_CHECKING = False  # not typing's: the child would load typing for it
if TYPE_CHECKING:
    import numpy as np

_HEAD = struct.Struct("<qq")
_COUNT = struct.Struct("<q")
_NAME = struct.Struct("<I")
#: The last send row's id, and the sends (number, time) in a range of rows: the daemon's own reads use them too.
LAST_SEND_ROW = "SELECT COALESCE(MAX(rowid), 0) FROM send_history"
SENDS_BETWEEN = "SELECT number, sent_at FROM send_history WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
ACCOUNT_SENDS_BETWEEN = ("SELECT number, sent_at, account FROM send_history WHERE rowid > ? AND rowid <= ? "
                         "ORDER BY rowid")
#: How long the child may take per million rows (and at least) before the daemon gives it up.
TIMEOUT_S = 60.0


class Sends:
    """The send rows after a mark: the last row's id, and each row's number and time (and with accounts, the
    accounts' names and each row's index into them). Not a NamedTuple: the child would load typing for it."""

    __slots__ = ("last", "numbers", "times", "accounts", "which")

    def __init__(self, last: int, numbers: np.ndarray, times: np.ndarray, accounts: list[str] | None = None,
                 which: np.ndarray | None = None):
        self.last, self.numbers, self.times = last, numbers, times  # int64, float64
        self.accounts, self.which = accounts, which  # int32


def read(path: str, after: int, out: object, accounts: bool = False) -> int:
    """Write the send rows after row `after` of the store at `path` to the binary file `out`; how many."""
    from .db import read_only

    db = read_only(path)
    try:
        db.execute("BEGIN")  # the last row and the rows up to it in one read transaction
        last = max(after, db.execute(LAST_SEND_ROW).fetchone()[0])
        keys, times, which = array.array("q"), array.array("d"), array.array("i")
        add_key, add_time = keys.append, times.append
        if accounts:
            names: dict[str, int] = {}
            add_which, code = which.append, names.setdefault
            for number, sent_at, account in db.execute(ACCOUNT_SENDS_BETWEEN, (after, last)):
                add_key(number)
                add_time(sent_at)
                add_which(code(account, len(names)))
        else:
            for number, sent_at in db.execute(SENDS_BETWEEN, (after, last)):
                add_key(number)
                add_time(sent_at)
        db.execute("COMMIT")
    finally:
        db.close()
    if sys.byteorder != "little":  # pragma: no cover - the file is little-endian wherever it is read
        keys.byteswap()
        times.byteswap()
        which.byteswap()
    write = out.write  # type: ignore[attr-defined]
    write(_HEAD.pack(last, len(keys)))
    write(keys.tobytes())
    write(times.tobytes())
    if accounts:
        write(_COUNT.pack(len(names)))
        for name in names:  # in the order of their indexes
            data = name.encode()
            write(_NAME.pack(len(data)) + data)
        write(which.tobytes())
    return len(keys)


def parse(data: object, accounts: bool = False) -> Sends:
    """What `read` wrote, from a binary file positioned at its start. OSError: it ends early."""
    import numpy as np

    last, count = _HEAD.unpack(_exactly(data, _HEAD.size))
    # in place: the buffers are bytearrays, and little-endian, as the daemon's int64 and float64 are
    numbers = np.frombuffer(_exactly(data, 8 * count), dtype="<i8").astype(np.int64, copy=False)
    times = np.frombuffer(_exactly(data, 8 * count), dtype="<f8").astype(np.float64, copy=False)
    if not accounts:
        return Sends(last, numbers, times)
    (n,) = _COUNT.unpack(_exactly(data, _COUNT.size))
    names = []
    for _ in range(n):
        (size,) = _NAME.unpack(_exactly(data, _NAME.size))
        names.append(_exactly(data, size).decode())
    which = np.frombuffer(_exactly(data, 4 * count), dtype="<i4").astype(np.int32, copy=False)
    return Sends(last, numbers, times, names, which)


def _exactly(data: object, size: int) -> bytearray:
    """The next `size` bytes of `data`, read into a buffer of their own (an array over it is writable)."""
    chunk = bytearray(size)
    got = data.readinto(chunk)  # type: ignore[attr-defined]
    if got != size:
        raise OSError(f"the send rows end early ({got} of {size} bytes)")
    return chunk


def send_arrays(path: str, after: int, rows_hint: int = 0, accounts: bool = False) -> Sends:
    """The send rows after `after` (and with `accounts`, each row's account), read by a child process. OSError:
    the child failed or took too long (its error in the message); the caller then reads them itself."""
    import subprocess
    import tempfile

    from .committer import child_env

    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run([sys.executable, "-S", "-m", __name__, path, str(after)]
                                  + (["--accounts"] if accounts else []), stdout=out,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=child_env(),
                                  timeout=TIMEOUT_S * max(1.0, rows_hint / 1e6), check=False)
        except subprocess.TimeoutExpired:
            raise OSError("reading the send rows in a child process took too long") from None
        if done.returncode != 0:
            raise OSError(f"reading the send rows in a child process failed ({done.returncode}): "
                          f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        out.seek(0)
        return parse(out, accounts)


def read_here(path: str, after: int, accounts: bool = False) -> Sends:
    """What the child would give, read in this thread (holding the GIL a row at a time)."""
    import io

    out = io.BytesIO()
    read(path, after, out, accounts)
    out.seek(0)
    return parse(out, accounts)


def main() -> None:
    path, after, accounts = sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["--accounts"]
    try:
        read(path, after, sys.stdout.buffer, accounts)
    except (sqlite3.Error, OverflowError, TypeError, OSError) as e:
        print(f"smppguard: reading the send rows: {e}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
