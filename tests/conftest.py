import hashlib
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

# No per-example deadline: it is a timing assertion, which a busy host (two test processes, a mutation run)
# fails now and then. A property test that hangs still fails on pytest-timeout.
settings.register_profile("smppguard", deadline=None)
settings.load_profile("smppguard")


def pytest_make_parametrize_id(config, val, argname):
    """Test ids in plain ASCII. An id is also a command-line argument (`pytest 'file::test[id]'`, and mutmut
    passes ids back that way), and pytest escapes non-ASCII and control characters in ids, which it then
    cannot find again. Such a string or bytes value gets a short stable digest instead."""
    if isinstance(val, str) and not (val.isascii() and val.isprintable()):
        return f"{argname}-{hashlib.sha1(val.encode()).hexdigest()[:8]}"
    if isinstance(val, bytes) and not (val.isascii() and val.decode().isprintable()):
        return f"{argname}-{hashlib.sha1(val).hexdigest()[:8]}"
    return None


def pytest_sessionstart(session):
    """Under mutmut, each mutant's tests run in a process forked from one that has run the code already: what a
    functools cache kept there (numbers._plan, a zone's offsets) would answer for the mutant, which then never
    runs and "survives". The caches of smppguard's functions start empty."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    for name, module in list(sys.modules.items()):
        if name == "smppguard" or name.startswith("smppguard."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def pytest_collection_modifyitems(session, config, items):
    """Tests marked `waits` (most of their time is a wait on the wall clock: a quiet minute's end) go first, so that
    with two test processes the rest runs beside them instead of after them."""
    items.sort(key=lambda item: item.get_closest_marker("waits") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _process_throttles_start_empty():
    """The log throttles a module or class shares across the process (the protocol log, the bind gate's, the
    other-account requests') start each test empty: a line an earlier test logged in this process must neither
    hide this test's line nor add "(1 more like it ...)" to it. mutmut runs every test in one process."""
    from smppguard.proxy.bridge import Bridge
    from smppguard.session import session

    for throttle in (session._protocol_log, Bridge._gate_log, Bridge._owner_log):
        throttle._seen.clear()
    yield
