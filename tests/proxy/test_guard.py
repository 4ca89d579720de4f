from smppguard.policy import load_policy
from smppguard.policy.model import ALLOW, Index
from smppguard.proxy.guard import CONCAT_TTL_S, ConcatEntry, Guard


def test_guard_forgets_concatenated_messages_whose_parts_never_came():
    guard = Guard(load_policy(), Index())
    guard.remember_concat(("a", "S", "1", 7, 3), ConcatEntry(ALLOW, None, 100.0 + CONCAT_TTL_S), 100.0)
    assert guard.maybe_concat(("a", "S", "1", 7, 3), 150.0) is not None
    later = 100.0 + CONCAT_TTL_S + 61
    guard.remember_concat(("a", "S", "2", 8, 2), ConcatEntry(ALLOW, None, later + CONCAT_TTL_S), later)
    assert list(guard.concat) == [("a", "S", "2", 8, 2)]  # the stale one went in the sweep, unasked for
