"""Score a mutmut run, one line per package or module given, and list what is left to look at.

Run by scripts/mutate inside .mutation/. For each name it writes
    <name>.results      every mutant and its status
    <name>.survivors    the survivors still to kill or to judge
    <name>.equivalent   survivors judged equivalent here, with the reason
and prints mutants, killed, survived, equivalent and the share killed of the mutants that are not equivalent.

With a sample drawn (`--sample N`, kept in <name>.sample), the line also estimates the share over the whole
package: the mutants not run yet are assumed killed at the sample's rate, with a 95% interval (Wilson's). mutmut
runs the mutants with the fastest tests first, so what is left after a stopped run is the slow tail, not a random
part: a random sample of that tail, added to what was run, estimates the whole without the many hours the tail
of proxy/ and store/ takes.

The one class judged equivalent here is a change of case inside a string of SQL: SQLite reads its keywords and
identifiers in any case, so `select` for `SELECT` is the same statement. A literal inside the SQL ('optout') is
not: a mutant that changes the case of one is kept as a survivor.
"""

from __future__ import annotations

import io
import math
import random
import re
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

# A string is SQL when it has a keyword in capitals, as this code base writes them (English has "from" and "in").
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|VALUES|FROM|WHERE|RETURNING|SET|CASE|"
                 r"WHEN|THEN|ELSE|END|AND|OR|NOT|IN|IS|NULL|EXISTS|ON CONFLICT|ORDER BY|GROUP BY|HAVING|LIMIT|"
                 r"JOIN|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|ATTACH|VACUUM|INTO|DISTINCT|COALESCE|COUNT|MAX|MIN)\b")
SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")


def strings(line: str) -> list[str]:
    """The string literals on one line of source (a line of a longer statement is read as far as it goes)."""
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if token.type == tokenize.STRING:
                found.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def sql_case_only(diff: str) -> bool:
    """True when the mutant's only change is the case of SQL keywords or names in one string literal."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = [line[1:] for line in body if line.startswith("-")]
    added = [line[1:] for line in body if line.startswith("+")]
    if len(removed) != 1 or len(added) != 1:
        return False
    before, after = strings(removed[0]), strings(added[0])
    if len(before) != len(after):
        return False
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    if len(changed) != 1:
        return False
    a, b = changed[0]
    return (a.lower() == b.lower() and SQL.search(a) is not None
            and SQL_LITERAL.findall(a) == SQL_LITERAL.findall(b)
            and removed[0].replace(a, b, 1) == added[0])


def mutants(name: str) -> Iterator[tuple[str, int | None, Path]]:
    """(mutant, exit code or None when not run yet, source path) of every mutant of package or module `name`."""
    from mutmut.__main__ import SourceFileMutationData, walk_mutatable_files  # mutmut==3.8.1 ([mutation] extra)

    prefix = f"smppguard.{name}."
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for key, code in data.exit_code_by_key.items():
            if key.startswith(prefix):
                yield key, code, data.path


def score(name: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    results, survivors, equivalent = [], [], []
    for key, code, path in mutants(name):
        status = status_by_exit_code[code]
        results.append(f"{key}: {status}")
        if status in ("killed", "timeout"):
            continue
        if status == "survived" and sql_case_only(_diff(get_diff_for_mutant, key, path)):
            equivalent.append(f"{key}: equivalent (the case of SQL)")
        else:
            survivors.append(f"{key}: {status}")
    for suffix, lines in (("results", results), ("survivors", survivors), ("equivalent", equivalent)):
        with open(f"{name}.{suffix}", "w") as out:
            out.writelines(line + "\n" for line in sorted(lines))
    total, judged = len(results), len(equivalent)
    killed = sum(line.endswith((": killed", ": timeout")) for line in results)
    survived = sum(line.endswith(": survived") for line in survivors)
    other = total - killed - survived - judged
    share = 100 * killed / (total - judged) if total > judged else 0.0
    return (f"{name:<8} {total:5d} mutants, {killed:5d} killed, {survived:4d} survived, {judged:4d} equivalent"
            + (f", {other} not run or not tested" if other else "") + f": {share:.1f}% killed"
            + estimate(name, results, equivalent))


def estimate(name: str, results: list[str], equivalent: list[str]) -> str:
    """The whole package's share killed, the mutants not run counted at the rate of the sample drawn from them."""
    path = Path(f"{name}.sample")
    if not path.exists():
        return ""
    sampled = set(path.read_text().split())
    status = {line.partition(": ")[0]: line.partition(": ")[2] for line in results}
    judged = {line.partition(": ")[0] for line in equivalent}
    run = [status[key] for key in sampled if key in status and status[key] != "not checked" and key not in judged]
    if not run:
        return ""
    hits = sum(s in ("killed", "timeout") for s in run)
    left = sum(s == "not checked" for s in status.values())
    killed = sum(s in ("killed", "timeout") for s in status.values())
    counted = len(status) - len(judged)
    low, high = wilson(hits, len(run))
    at = [100 * (killed + rate * left) / counted for rate in (hits / len(run), low, high)]
    return (f"; sample of {len(run)} of the mutants not run: {100 * hits / len(run):.0f}% killed, so the whole "
            f"package about {at[0]:.1f}% (95%: {at[1]:.1f}-{at[2]:.1f}%)")


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def draw(name: str, size: int) -> list[str]:
    """`size` mutants of `name` not run yet, at random, added to <name>.sample; printed for mutmut run with the
    survivors of the sample drawn before (tests may have been added since: run again, they count as they end)."""
    path = Path(f"{name}.sample")
    sampled = set(path.read_text().split()) if path.exists() else set()
    pending, again = [], []
    for key, code, _source in mutants(name):
        if key in sampled:
            again += [key] if code in (0, 33) else []  # survived, or no tests
        elif code is None:
            pending.append(key)
    chosen = random.sample(sorted(pending), min(size, len(pending)))
    path.write_text("".join(f"{key}\n" for key in sorted(sampled | set(chosen))))
    return sorted(again) + chosen


def _diff(get_diff_for_mutant, key: str, path) -> str:
    """The mutant's diff; none (so not judged equivalent) when its function is no longer in the copy, as after a
    run stopped while it was writing the mutants."""
    try:
        return get_diff_for_mutant(key, path=path)
    except FileNotFoundError:
        return ""


if __name__ == "__main__":
    if sys.argv[1] == "--sample":
        print(" ".join(draw(sys.argv[3], int(sys.argv[2]))))
    else:
        for name in sys.argv[1:]:
            print(score(name))
