"""This code against another git revision: the same scenario on both, in alternating rounds, and their ratios.

``smppguard bench --against REV`` builds REV once in a scratch virtualenv of its own (`build`: the revision's
files from ``git archive``, ``python -m venv``, ``pip install``), kept under ~/.cache/smppguard/bench-against/
by commit hash so that the next run against it starts at once. Each side's daemon is then started as a child
process (``smppguard run`` of that installation), and everything else is this code's: the sink SMSC, the
load generator, the clock. So an older revision that knows none of today's benchmark options runs the very same
scenario: it needs only ``smppguard run``, ``simulate --sink`` (this code's) and ``blacklist import``. A table
of the config that the revision rejects as unknown (``[metrics]`` before it existed) is left out of its config,
and the run says so.

Rounds alternate the order, as ``--policy compare`` does: old then new, new then old, and so on, so that a steady
drift in the host's speed favours neither side; each round starts each side's daemon afresh on a new store. The
figures are per round and side, and the medians of each side with their ratio (new / old; for the rate and the
CPU per message the median of the rounds' own ratios, two passes run back to back).

Scenarios:

- default (``--lists 0``): the shipped rules, a new recipient per message; per side and round: the daemon's
  start-up, its memory at idle on an empty store (the daemon and its children, the store's commit process, after
  IDLE_S), then N submit_sm over B binds × window W: the rate, the daemon's CPU per message (its children's
  included) and its peak memory during the pass (sampled every SAMPLE_S);
- lists (``--lists M``): M numbers imported from a two-column CSV (``number,reason``: ``+86139…,carrier list``)
  with the revision's own ``blacklist import`` into a new store (timed), the daemon's first start after the
  import, N submit_sm to new recipients as above, then a restart (SIGTERM, the daemon saves what it owes; launch
  to accepting binds again) and its memory RESTART_SETTLE_S after it accepts binds.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from .load import WARMUP, Numbers, run_loop, run_pass
from .procs import (
    BenchError,
    child_pids,
    own_rss_kb,
    pss_kb,
    report,
    rig,
    rss_kb,
    start_proxy,
    start_sink,
    stop_child,
    tail,
)
from .proxy import POLICY_TOML, check_sizes

#: Where the revisions are built, one folder a commit hash (venv/, src/, and `ready` once it is complete).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smppguard" / "bench-against"
IDLE_S = 2.0  # after start-up, before the idle memory is read
RESTART_SETTLE_S = 2.0  # after the restart, before its memory is read
SAMPLE_S = 0.05  # how often the peak memory is sampled during a pass
ROUNDS = 3
CSV_REASON = "carrier list"
#: The numbers imported in the lists scenario: other Chinese mobiles than the recipients (86138...).
LIST_PREFIX = 86139


class Side(NamedTuple):
    """One of the two installations: "old" (the revision) or "new" (this code), and its Python."""

    name: str
    label: str
    python: str


def _git(repo: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, **kw)


def repository() -> Path:
    """The git checkout this code runs from (an editable install), or else the current folder's."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        done = _git(where, "rev-parse", "--show-toplevel", text=True)
        if done.returncode == 0:
            return Path(done.stdout.strip())
    raise BenchError("--against needs a git checkout of smppguard: run it from one (or install it editable)")


def resolve(rev: str, repo: Path) -> str:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", text=True)
    if done.returncode != 0:
        raise BenchError(f"no such revision in {repo}: {rev!r}")
    return done.stdout.strip()


def build(rev: str, *, repo: Path | None = None, cache: Path = CACHE,
          say: Callable[[str], None] = lambda s: None) -> Side:
    """The revision installed in a virtualenv of its own: built now, or found built by an earlier run (the same
    commit hash). The folder is marked `ready` last: a run stopped halfway leaves nothing a later run would take
    for a build."""
    repo = repo or repository()
    commit = resolve(rev, repo)
    home = cache / commit
    side = Side("old", f"{rev} ({commit[:10]})" if not commit.startswith(rev) else commit[:10],
                str(home / "venv" / "bin" / "python"))
    if (home / "ready").exists():
        say(f"{side.label}: built before, in {home}")
        return side
    if home.exists():  # a build that never finished
        shutil.rmtree(home)
    home.mkdir(parents=True)
    started = time.monotonic()
    say(f"{side.label}: building in {home} (git archive, python -m venv, pip install)")
    (home / "src").mkdir()
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", commit], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert archive.stdout is not None
    with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
        tar.extractall(home / "src", filter="data")
    if archive.wait() != 0:
        raise BenchError(f"git archive {commit} failed")
    for step in ([sys.executable, "-m", "venv", str(home / "venv")],
                 [side.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(home / "src")]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"building {side.label} failed: {' '.join(step[:5])} ...:\n{done.stderr[-2000:]}")
    (home / "ready").write_text(f"{commit}\n")  # last: a build stopped halfway is built again next time
    say(f"{side.label}: built in {time.monotonic() - started:.0f} s")
    return side


def compile_this_code(say: Callable[[str], None] = lambda s: None) -> None:
    """This code's modules compiled to bytecode, as `pip install` left the revision's. Otherwise an editable
    install run with PYTHONDONTWRITEBYTECODE (or from a tree it may not write) compiles every module from source
    at each start of its daemon: 0.2 s of its start-up and some of its memory that the revision does not spend."""
    import compileall

    import smppguard

    folder = Path(smppguard.__file__).parent
    if not compileall.compile_dir(str(folder), quiet=1):
        say(f"this code's modules in {folder} could not all be compiled: its start-ups include compiling them")


# --- the config each side takes ---------------------------------------------------------------------------

_UNKNOWN_TABLE = re.compile(r"(\w[\w.]*): unknown table")


def config_for(python: str, path: Path) -> list[str]:
    """Check the config at `path` with that installation's ``check-config``; leave out each table it rejects as
    unknown (a table that revision does not have yet). Returns the tables left out; BenchError on any other
    complaint."""
    dropped: list[str] = []
    while True:
        done = subprocess.run([python, "-m", "smppguard", "check-config", "--config", str(path)],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return dropped
        m = _UNKNOWN_TABLE.search(done.stderr + done.stdout)
        if not m or m.group(1) in dropped:
            raise BenchError(f"{python}: the benchmark's config is not accepted:\n{done.stderr or done.stdout}")
        dropped.append(m.group(1))
        path.write_text(_without_table(path.read_text(), m.group(1)))


def _without_table(text: str, table: str) -> str:
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        head = re.match(r"\s*\[+\s*([\w.]+)\s*\]+", line)
        if head:
            skipping = head.group(1) == table or head.group(1).startswith(table + ".")
        if not skipping:
            out.append(line)
    return "".join(out)


# --- measuring one side ------------------------------------------------------------------------------------

class PeakRss:
    """Samples a process's memory and its children's (the commit process) in a thread until stopped: the peak
    of the daemon alone, of its children together, and of both at one instant, as RSS and as PSS."""

    def __init__(self, pid: int, every: float = SAMPLE_S):
        self.pid, self.every = pid, every
        self.daemon_kb = self.children_kb = self.total_kb = self.pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        own = own_rss_kb(self.pid)
        kids = sum(rss_kb(c) for c in child_pids(self.pid))
        self.daemon_kb = max(self.daemon_kb, own)
        self.children_kb = max(self.children_kb, kids)
        self.total_kb = max(self.total_kb, own + kids)
        self.pss_kb = max(self.pss_kb, _pss(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "PeakRss":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _pss(pid: int) -> int:
    return pss_kb(pid) + sum(pss_kb(c) for c in child_pids(pid))


def _memory(pid: int) -> dict[str, int]:
    own = own_rss_kb(pid)
    kids = sum(rss_kb(c) for c in child_pids(pid))
    return {"daemon_kb": own, "children_kb": kids, "total_kb": own + kids, "pss_kb": _pss(pid)}


def _launch(side: Side, r: Any, timeout: float) -> tuple[subprocess.Popen, float]:
    launched = time.monotonic()
    proc = r.start(start_proxy(r.dir, r.proxy, timeout, python=side.python))
    return proc, time.monotonic() - launched


def _load(r: Any, pid: int, messages: int, binds: int, window: int, warmup: int) -> dict[str, Any]:
    with PeakRss(pid) as peak:
        p = run_loop(run_pass(r.proxy, messages, binds, window, warmup, Numbers(), True, pid=pid))
    if p["errors"]:
        raise BenchError(f"{p['errors']:,} of {messages:,} submit_sm were not answered OK")
    return {"rate": p["rate"], "cpu_us_per_msg": p["cpu_seconds"] / messages * 1e6, "p99_us": p["p99_us"],
            "peak_daemon_kb": peak.daemon_kb, "peak_children_kb": peak.children_kb, "peak_total_kb": peak.total_kb,
            "peak_pss_kb": peak.pss_kb}


def _rig(side: Side, window: int) -> Any:
    return rig(f"against-{side.name}", window, POLICY_TOML["full"])


def default_round(side: Side, messages: int, binds: int, window: int, warmup: int) -> dict[str, Any]:
    """The default config on an empty store: start-up, idle memory, then the load."""
    with _rig(side, window) as r:
        dropped = config_for(side.python, r.dir / "proxy.toml")
        r.start(start_sink(r.dir, r.sink))
        proxy, startup = _launch(side, r, 60.0)
        time.sleep(IDLE_S)
        idle = _memory(proxy.pid)
        result = {"startup_s": startup, "idle_daemon_kb": idle["daemon_kb"], "idle_children_kb": idle["children_kb"],
                  "idle_total_kb": idle["total_kb"], "idle_pss_kb": idle["pss_kb"], "dropped": dropped,
                  "started": time.monotonic()}
        result.update(_load(r, proxy.pid, messages, binds, window, warmup))
        return result


def write_csv(path: Path, count: int, seed: int = 11) -> None:
    """`count` distinct numbers +86139xxxxxxxx, in random order, as a two-column CSV with a header."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if count > 10 ** 8 // 2:
        raise ValueError("at most 50,000,000 numbers")
    numbers = np.unique(rng.integers(0, 10 ** 8, count + count // 5 + 1000))
    while len(numbers) < count:  # pragma: no cover - a draw 20% larger than asked is enough but for bad luck
        numbers = np.unique(np.concatenate([numbers, rng.integers(0, 10 ** 8, count)]))
    numbers = rng.permutation(numbers[rng.permutation(len(numbers))[:count]]) + LIST_PREFIX * 10 ** 8
    with open(path, "w") as f:
        f.write("number,reason\n")
        for start in range(0, count, 1_000_000):
            f.write("".join(f"+{n},{CSV_REASON}\n" for n in numbers[start:start + 1_000_000].tolist()))


def _import(side: Side, r: Any, csv: Path, count: int) -> float:
    started = time.monotonic()
    done = subprocess.run([side.python, "-m", "smppguard", "blacklist", "import", str(csv), "--source", "carrier",
                           "--silent", "--config", str(r.dir / "proxy.toml")], capture_output=True, text=True,
                          cwd=r.dir, env={k: v for k, v in os.environ.items() if k != "SMPPGUARD_CONFIG"})
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"{side.label}: blacklist import failed ({done.returncode}):\n{done.stderr[-2000:]}")
    m = re.search(r"imported ([\d,]+)", done.stdout + done.stderr)
    if m and int(m.group(1).replace(",", "")) != count:
        raise BenchError(f"{side.label}: imported {m.group(1)} of {count:,} numbers")
    return seconds


def lists_round(side: Side, csv: Path, count: int, messages: int, binds: int, window: int,
                warmup: int) -> dict[str, Any]:
    """Import, first start, the load to new recipients, a restart."""
    timeout = 60.0 + count / 10_000
    with _rig(side, window) as r:
        dropped = config_for(side.python, r.dir / "proxy.toml")
        result: dict[str, Any] = {"dropped": dropped, "started": time.monotonic()}
        result["import_s"] = _import(side, r, csv, count)
        r.start(start_sink(r.dir, r.sink))
        proxy, result["first_start_s"] = _launch(side, r, timeout)
        result["first_start_total_kb"] = rss_kb(proxy.pid)
        result.update(_load(r, proxy.pid, messages, binds, window, warmup))
        stopping = time.monotonic()
        r.children.remove(proxy)
        stop_child(proxy)  # SIGTERM: it saves what it owes
        result["stop_s"] = time.monotonic() - stopping
        if proxy.returncode not in (0, -15):
            raise BenchError(f"{side.label}: the daemon exited with {proxy.returncode}:\n{tail(r.dir / 'proxy.log')}")
        proxy, result["restart_s"] = _launch(side, r, timeout)
        time.sleep(RESTART_SETTLE_S)
        after = _memory(proxy.pid)
        result.update({"restart_daemon_kb": after["daemon_kb"], "restart_children_kb": after["children_kb"],
                       "restart_total_kb": after["total_kb"]})
        return result


# --- the run ------------------------------------------------------------------------------------------------

#: What each scenario reports, in order: (key, label, divisor: kB to MB).
FIGURES = {
    "default": [("rate", "rate (submit_sm/s)", 1),
                ("cpu_us_per_msg", "CPU per message (µs)", 1),
                ("peak_total_kb", "peak RSS, daemon + children (MB)", 1024),
                ("peak_daemon_kb", "peak RSS, daemon (MB)", 1024),
                ("peak_children_kb", "peak RSS, commit process (MB)", 1024),
                ("peak_pss_kb", "peak PSS, daemon + children (MB)", 1024),
                ("idle_total_kb", "idle RSS, daemon + children (MB)", 1024),
                ("idle_daemon_kb", "idle RSS, daemon (MB)", 1024),
                ("idle_children_kb", "idle RSS, commit process (MB)", 1024),
                ("idle_pss_kb", "idle PSS, daemon + children (MB)", 1024),
                ("startup_s", "start-up, empty store (s)", 1),
                ("p99_us", "latency p99 under load (µs)", 1)],
    "lists": [("import_s", "import (s)", 1),
              ("first_start_s", "first start after the import (s)", 1),
              ("first_start_total_kb", "RSS after the first start, daemon + children (MB)", 1024),
              ("rate", "rate, new recipients (submit_sm/s)", 1),
              ("cpu_us_per_msg", "CPU per message (µs)", 1),
              ("peak_total_kb", "peak RSS under load, daemon + children (MB)", 1024),
              ("p99_us", "latency p99 under load (µs)", 1),
              ("stop_s", "stop after the burst (s)", 1),
              ("restart_s", "restart after the burst (s)", 1),
              ("restart_total_kb", "RSS after the restart, daemon + children (MB)", 1024),
              ("restart_daemon_kb", "RSS after the restart, daemon (MB)", 1024)],
}
#: Figures whose ratio is the median of the rounds' ratios (two passes back to back), not a ratio of medians.
PAIRED = ("rate", "cpu_us_per_msg")


def run_against(rev: str, messages: int = 200_000, binds: int = 4, window: int = 10, *, lists: int = 0,
                rounds: int = ROUNDS, warmup: int = WARMUP, cache: Path = CACHE, repo: Path | None = None,
                say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Build `rev` (or find it built), then `rounds` rounds of the scenario (lists: `lists` numbers imported;
    0: the default one) on it and on this code, in alternating order; the figures of each and their ratios."""
    check_sizes(messages, binds, window)
    if rounds < 1 or lists < 0:
        raise ValueError("rounds must be at least 1, lists at least 0")
    old = build(rev, repo=repo, cache=cache, say=say)
    compile_this_code(say)
    new = Side("new", "this code", sys.executable)
    scenario = "lists" if lists else "default"
    passes: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="smppguard-against-") as tmp:
        csv = Path(tmp) / "numbers.csv"
        if lists:
            say(f"writing {lists:,} numbers to a two-column CSV")
            write_csv(csv, lists)
        for k in range(rounds):
            figures: dict[str, dict] = {}
            for side in ((old, new) if k % 2 == 0 else (new, old)):
                say(f"round {k + 1} of {rounds}: {side.name} ({side.label})")
                if lists:
                    figures[side.name] = lists_round(side, csv, lists, messages, binds, window, warmup)
                else:
                    figures[side.name] = default_round(side, messages, binds, window, warmup)
            passes.append(figures)
    return {"scenario": scenario, "revision": rev, "old": old.label, "new": new.label, "messages": messages,
            "binds": binds, "window": window, "lists": lists, "warmup": warmup,
            "dropped": passes[0]["old"]["dropped"], "rounds": passes, **summary(scenario, passes),
            "load_average": list(os.getloadavg())}


def summary(scenario: str, passes: list[dict[str, dict]]) -> dict[str, Any]:
    """The median of each figure on each side, and new / old: for PAIRED figures the median of the rounds'
    ratios, for the others the ratio of the medians; None where the old side has none (0)."""
    out: dict[str, Any] = {"median": {"old": {}, "new": {}}, "ratio": {}}
    for key, *_ in FIGURES[scenario]:
        olds = [p["old"][key] for p in passes]
        news = [p["new"][key] for p in passes]
        out["median"]["old"][key] = statistics.median(olds)
        out["median"]["new"][key] = statistics.median(news)
        if 0 in olds:  # a process the old revision does not have (the commit process): no ratio
            out["ratio"][key] = None
        elif key in PAIRED:
            out["ratio"][key] = statistics.median(n / o for o, n in zip(olds, news, strict=True))
        else:
            out["ratio"][key] = statistics.median(news) / statistics.median(olds)
    return out


def format_against(r: dict[str, Any]) -> str:
    figures = FIGURES[r["scenario"]]
    what = (f"{r['lists']:,} numbers imported from a two-column CSV, then {r['messages']:,} submit_sm to new "
            f"recipients, then a restart" if r["scenario"] == "lists" else
            f"the default config, an empty store, {r['messages']:,} submit_sm")
    n = len(r["rounds"])
    lines = [f"smppguard bench --against {r['revision']}: old = {r['old']}, new = {r['new']}",
             f"{what}; {r['binds']} binds × window {r['window']} (warm-up {r['warmup']:,} excluded); {n} round"
             f"{'s' if n > 1 else ''}, the order alternating (old first in odd rounds)", ""]
    if r["dropped"]:
        lines += [f"left out of the old revision's config (unknown there): {', '.join(r['dropped'])}", ""]
    width = max(len(label) for _k, label, _d in figures) + 2
    head = "".join(f"{f'{s} {k + 1}':>10}" for k in range(n) for s in ("old", "new"))
    lines.append(f"{'per round':{width}}{head}")
    for key, label, div in figures:
        cells = "".join(f"{_fmt(p[s][key] / div):>10}" for p in r["rounds"] for s in ("old", "new"))
        lines.append(f"{label:{width}}{cells}")
    lines += ["", f"{'medians':{width}}{'old':>10}{'new':>10}{'new / old':>11}"]
    for key, label, div in figures:
        o, nw = r["median"]["old"][key] / div, r["median"]["new"][key] / div
        ratio = r["ratio"][key]
        lines.append(f"{label:{width}}{_fmt(o):>10}{_fmt(nw):>10}{'-' if ratio is None else f'{ratio:.2f}':>11}")
    lines += ["", "new / old of the rate and the CPU per message: the median of the rounds' ratios; of the others, "
              "the ratio of the medians",
              f"load average at the end {' '.join(f'{x:.2f}' for x in r['load_average'])} (on {os.cpu_count()} "
              "cores; other work skews the rates)"]
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def run_command(rev: str, messages: int, binds: int, window: int, lists: int, rounds: int, as_json: bool) -> int:
    """`smppguard bench --against REV`: measure, print the figures (or what went wrong), return the exit status."""
    return report(lambda: run_against(rev, messages, binds, window, lists=lists, rounds=rounds), format_against,
                  as_json)
