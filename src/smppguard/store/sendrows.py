"""The send rows after a mark, read as the history's keys and times by a process of its own.

Why a process: a roll forward during a burst reads a million rows or more. In a thread of the daemon each row
takes the GIL back from the loop (sqlite3 gives it up around every step), so the read crawls (18 s for 1M rows
while the loop relays 30,000 messages a second) and every hand-over of the GIL slows the loop too. A process
holds no GIL of the daemon's: it reads on the other core, and the daemon takes the result in one read of a file.

The child runs without `site` (python -S: the package's folder is on its PYTHONPATH, as for the commit process)
and imports only sqlite3, array, struct and the store's connection (db.py, as the commit process does). It is
started from the upkeep's thread, so it inherits that thread's nice value. Its output (a temporary file): the
last row's id and the count, 8 bytes each, then the keys as int64 and the times as float64, in row order.
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
#: The last send row's id, and the sends (number, time) in a range of rows: the daemon's own reads use them too.
LAST_SEND_ROW = "SELECT COALESCE(MAX(rowid), 0) FROM send_history"
SENDS_BETWEEN = "SELECT number, sent_at FROM send_history WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
#: How long the child may take per million rows (and at least) before the daemon gives it up.
TIMEOUT_S = 60.0


def read(path: str, after: int, out: object) -> int:
    """Write the send rows after row `after` of the store at `path` to the binary file `out`; how many."""
    from .db import read_only

    db = read_only(path)
    try:
        db.execute("BEGIN")  # the last row and the rows up to it in one read transaction
        last = max(after, db.execute(LAST_SEND_ROW).fetchone()[0])
        keys, times = array.array("q"), array.array("d")
        add_key, add_time = keys.append, times.append
        for number, sent_at in db.execute(SENDS_BETWEEN, (after, last)):
            add_key(number)
            add_time(sent_at)
        db.execute("COMMIT")
    finally:
        db.close()
    if sys.byteorder != "little":  # pragma: no cover - the file is little-endian wherever it is read
        keys.byteswap()
        times.byteswap()
    out.write(_HEAD.pack(last, len(keys)))  # type: ignore[attr-defined]
    out.write(keys.tobytes())  # type: ignore[attr-defined]
    out.write(times.tobytes())  # type: ignore[attr-defined]
    return len(keys)


def send_arrays(path: str, after: int, rows_hint: int = 0) -> tuple[int, np.ndarray, np.ndarray]:
    """(the last row's id, keys, times) of the send rows after `after`, read by a child process. OSError: the
    child failed or took too long (its error in the message); the caller then reads them itself."""
    import subprocess
    import tempfile

    import numpy as np

    from .committer import child_env

    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run([sys.executable, "-S", "-m", __name__, path, str(after)], stdout=out,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=child_env(),
                                  timeout=TIMEOUT_S * max(1.0, rows_hint / 1e6), check=False)
        except subprocess.TimeoutExpired:
            raise OSError("reading the send rows in a child process took too long") from None
        if done.returncode != 0:
            raise OSError(f"reading the send rows in a child process failed ({done.returncode}): "
                          f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        out.seek(0)
        last, count = _HEAD.unpack(out.read(_HEAD.size))
        keys = np.fromfile(out, dtype="<i8", count=count)
        times = np.fromfile(out, dtype="<f8", count=count)
    if len(keys) != count or len(times) != count:
        raise OSError(f"the child process wrote {len(keys)} of {count} send rows")
    return last, keys.astype(np.int64, copy=False), times.astype(np.float64, copy=False)


def main() -> None:
    path, after = sys.argv[1], int(sys.argv[2])
    try:
        read(path, after, sys.stdout.buffer)
    except (sqlite3.Error, OverflowError, TypeError, OSError) as e:
        print(f"smppguard: reading the send rows: {e}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
