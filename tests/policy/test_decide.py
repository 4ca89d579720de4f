"""decide(): the rules in RULES order, first opinion wins, a rule is skipped for classes it does not cover;
explain() shows every rule's view; make_submission() normalises and classifies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, DAY, HOUR, MINUTE, at, sub

from smppguard.policy import ALLOW, RULE_NAMES, RULES, Action, Index, decide, explain, load_policy, make_submission
from smppguard.policy.model import GLOBAL, Submission, scoped
from smppguard.smpp.status import Status
from smppguard.store.changelog import Change
from smppguard.store.index import apply_change

NOON = at(2025, 6, 13, 12)  # allowed by the quiet hours
NIGHT = at(2025, 6, 13, 23)
CLASSES = [{"name": "transactional", "system_id": ["bank-*"]}]
POLICY = load_policy({"preset": "cn-marketing"}, {"content": {"required": ["回T退订"]}}, CLASSES)
GOOD_TEXT = "周末大促，回T退订"


def listed(*lists: str, number: int = CN_MOBILE, now: float = NOON) -> Index:
    """An Index where `number` is on each named list (or has failed each named check)."""
    index = Index()
    if "consent" not in lists:
        index.consent[scoped(number, GLOBAL)] = "confirmed"
    if "dead" in lists:
        index.dead[number] = now + DAY
    if "blacklist" in lists:
        index.blacklist.add(number)
    if "optout" in lists:
        apply_change(index, Change("optout", "add", number, "sender", "ACME", at=now - DAY), now, POLICY)
    if "frequency" in lists:
        index.record_send(number, now - HOUR)
    if "quiet" in lists:
        index.tz[number] = "America/New_York"  # noon in Shanghai is midnight there
    return index


def refused(v, rule: str) -> bool:
    """The verdict refuses, and names `rule`: a rule's name alone would also match its ALLOW (the grace)."""
    return v.action is Action.REJECT and v.rule == rule and v.status != 0


def test_decide_rules_order():
    assert RULE_NAMES == ("invalid", "dead", "blacklist", "optout", "credit", "consent", "content", "signature",
                          "review", "frequency", "quiet_hours")
    assert tuple(rule.name for rule, _ in POLICY.rules) == RULE_NAMES == tuple(r.name for r in RULES)


@pytest.mark.parametrize("lists, text, expected", [
    ((), GOOD_TEXT, None),
    (("dead", "blacklist", "optout", "consent", "frequency", "quiet"), "赌博", "dead"),
    (("blacklist", "optout", "consent", "frequency", "quiet"), "赌博", "blacklist"),
    (("blacklist", "optout"), GOOD_TEXT, "blacklist"),
    (("optout", "consent", "frequency", "quiet"), "赌博", "optout"),
    (("consent", "frequency", "quiet"), "sale", "consent"),
    (("frequency", "quiet"), "sale", "content"),
    (("frequency", "quiet"), GOOD_TEXT, "frequency"),
    (("quiet",), GOOD_TEXT, "quiet_hours"),
])
def test_decide_first_rule_with_an_opinion_wins(lists, text, expected):
    v = decide(sub(CN_MOBILE, text=text), listed(*lists), NOON, POLICY)
    assert v.rule == (expected or "") and v.allowed is (expected is None) and bool(v.status) is (expected is not None)


def test_decide_blacklisted_invalid_number_is_invalid():
    s = make_submission(POLICY, "1380013800", 0, "ACME", "acme", text=GOOD_TEXT)  # ten digits: not a number
    assert s.recipient is None
    index = listed("blacklist", "optout", number=861380013800)  # what the digits would be with +86
    v = decide(s, index, NOON, POLICY)
    assert v.action is Action.REJECT and v.rule == "invalid" and v.status == Status.RINVDSTADR


def test_decide_blacklisted_and_opted_out_is_blacklist():
    s = make_submission(POLICY, "13800138000", 0, "ACME", "acme", text=GOOD_TEXT)
    v = decide(s, listed("blacklist", "optout"), NOON, POLICY)
    assert v.rule == "blacklist" and v.status == Status.RSUBMITFAIL


@pytest.mark.parametrize("account, expected", [("bank-otp", None), ("acme", "blacklist")])
def test_decide_transactional_reaches_a_blacklisted_number(account, expected):
    s = make_submission(POLICY, "13800138000", 0, "BANK", account, text="您的验证码是 1234")
    assert s.traffic_class == ("transactional" if expected is None else "marketing")
    v = decide(s, listed("blacklist", "optout", "consent", "frequency"), NIGHT, POLICY)
    assert v.rule == (expected or "") and v.allowed is (expected is None) and bool(v.status) is (expected is not None)


def test_decide_transactional_still_refused_when_invalid_or_dead():
    s = make_submission(POLICY, "13800138000", 0, "BANK", "bank-otp")
    assert refused(decide(s, listed("dead"), NOON, POLICY), "dead")
    bad = make_submission(POLICY, "12345", 0, "BANK", "bank-otp")
    assert refused(decide(bad, Index(), NOON, POLICY), "invalid")


def test_decide_quiet_hours_hold():
    v = decide(sub(CN_MOBILE, text=GOOD_TEXT), listed(), NIGHT, POLICY)
    assert v.action is Action.HOLD and v.until == at(2025, 6, 14, 9)


def test_decide_opt_out_confirmation_grace():
    t = at(2025, 6, 13, 21)  # quiet hours do not apply to the confirmation class
    index = listed()
    apply_change(index, Change("optout", "add", CN_MOBILE, "sender", "ACME", at=t), t, POLICY)
    confirmation = make_submission(POLICY, "13800138000", 0, "ACME", "acme", text="您已退订成功，回复Y恢复")
    assert confirmation.traffic_class == "confirmation"
    v = decide(confirmation, index, t + 4 * MINUTE, POLICY)
    assert v.allowed and v.rule == "optout" and v.mark is not None
    index.grace_used.add(v.mark)
    assert refused(decide(confirmation, index, t + 4 * MINUTE, POLICY), "optout")
    fresh = listed()
    apply_change(fresh, Change("optout", "add", CN_MOBILE, "sender", "ACME", at=t), t, POLICY)
    marketing = make_submission(POLICY, "13800138000", 0, "ACME", "acme", text=GOOD_TEXT)
    assert refused(decide(marketing, fresh, t + MINUTE, POLICY), "optout")  # no grace for marketing
    assert refused(decide(confirmation, fresh, t + 6 * MINUTE, POLICY), "optout")  # nor after five minutes
    other = make_submission(POLICY, "13800138000", 0, "OTHER", "acme", text="您已退订成功")
    # another signature was never opted out of, so no grace: its "confirmation" gets the marketing rules
    # (here: content requires an opt-out instruction)
    assert refused(decide(other, fresh, t + MINUTE, POLICY), "content")


def test_decide_disabled_rule_is_skipped():
    policy = load_policy(rules={"blacklist": {"enabled": False}})
    assert decide(sub(CN_MOBILE), Index(blacklist={CN_MOBILE}), NOON, policy) is ALLOW


def test_decide_star_class():
    policy = load_policy(rules={"blacklist": {"classes": ["*"]}})
    v = decide(sub(CN_MOBILE, traffic_class="transactional"), Index(blacklist={CN_MOBILE}), NOON, policy)
    assert v.rule == "blacklist"


def test_explain_lists_every_rule():
    s = sub(CN_MOBILE, text="sale")
    out = explain(s, listed("blacklist", "quiet"), NOON, load_policy(class_rules=CLASSES))
    assert [name for name, _, _ in out] == list(RULE_NAMES)
    by_name = {name: (why, v) for name, why, v in out}
    assert by_name["consent"] == ("disabled", None)  # off by default
    assert by_name["invalid"] == ("applies", None)
    assert by_name["blacklist"][0] == "applies" and by_name["blacklist"][1].rule == "blacklist"
    assert by_name["quiet_hours"][1].action is Action.HOLD  # every rule is asked, not only the first
    tx = explain(sub(CN_MOBILE, traffic_class="transactional"), Index(), NOON, POLICY)
    assert dict((n, why) for n, why, _ in tx)["blacklist"] == "not for class transactional"


def test_make_submission_fields():
    s = make_submission(POLICY, "008613800138000", 0, "ACME", "acme", "CMT", "hi", (7, 2, 1))
    assert (s.recipient, s.address, s.sender, s.account, s.service_type, s.text, s.concat) == (
        CN_MOBILE, "008613800138000", "ACME", "acme", "CMT", "hi", (7, 2, 1))
    assert s.traffic_class == "marketing"
    # every field, as the keyword constructor sets them (make_submission sets the slots one by one)
    located = make_submission(POLICY, "8613800138000", 1, "ACME", "acme", "CMT", "hi", (7, 2, 1))
    assert located == Submission(CN_MOBILE, "8613800138000", "ACME", "acme", "marketing", "CMT", "hi", (7, 2, 1),
                                 ("Asia/Shanghai",), True, 1)


def test_policy_settings_lookup_and_needs_text():
    assert POLICY.settings("frequency").max == 4
    with pytest.raises(KeyError):
        POLICY.settings("nope")
    assert POLICY.needs_text
    assert not load_policy({"confirmation_patterns": []}).needs_text
    assert load_policy({"confirmation_patterns": []}, {"content": {"forbidden": ["x"]}}).needs_text
    assert not load_policy({"confirmation_patterns": []}, {"content": {"forbidden": ["x"], "enabled": False}}
                           ).needs_text


@pytest.mark.parametrize("policy, recent_optout, decoded", [
    (load_policy(), False, False),  # only the confirmation patterns read text, and no opt-out is recent
    (load_policy(), True, True),  # a recent opt-out: the text may be the one confirmation
    (load_policy({}, {"content": {"forbidden": ["casino"]}}), False, True),
    (load_policy({}, {}, [{"name": "otp", "patterns": ["code"]}]), False, True),
    (load_policy({"confirmation_patterns": []}), True, False),
])
def test_make_submission_decodes_the_text_only_when_a_rule_reads_it(policy, recent_optout, decoded):
    index = Index()
    if recent_optout:
        apply_change(index, Change("optout", "add", CN_MOBILE, "sender", "ACME", at=NOON - MINUTE), NOON, POLICY)
    calls = []

    def text_of():
        calls.append(1)
        return "You are unsubscribed"

    s = make_submission(policy, "+8613800138000", 1, "ACME", "acme", index=index, text_of=text_of)
    assert len(calls) == (1 if decoded else 0)
    assert s.text == ("You are unsubscribed" if decoded else None)
    if recent_optout and decoded:
        assert s.traffic_class == "confirmation"


def test_content_rule_with_nothing_to_look_for_is_left_out_of_decide():
    idle = load_policy()
    assert "content" not in {check.__module__.rsplit(".", 1)[1] for check, _s in idle.checks_for("marketing")}
    busy = load_policy({}, {"content": {"required": ["STOP"]}})
    assert "content" in {check.__module__.rsplit(".", 1)[1] for check, _s in busy.checks_for("marketing")}
    assert dict((n, v) for n, _why, v in explain(sub(text="hi"), Index(), NOON, idle))["content"] is None


# --- invariant: decide() is explain()'s first opinion, and never raises -------------------------------------------

LISTS = ("dead", "blacklist", "optout", "consent", "frequency", "quiet")


@settings(max_examples=200, deadline=None)
@given(lists=st.sets(st.sampled_from(LISTS)), cls=st.sampled_from(["marketing", "transactional", "confirmation"]),
       text=st.one_of(st.none(), st.sampled_from([GOOD_TEXT, "sale", "赌博 回T退订", "您已退订成功"])),
       recipient=st.sampled_from([CN_MOBILE, None]),
       now=st.floats(at(2025, 1, 1), at(2026, 1, 1)))
def test_decide_agrees_with_explain(lists, cls, text, recipient, now):
    index = listed(*lists, now=now)
    s = sub(recipient, traffic_class=cls, text=text, address="13800")
    v = decide(s, index, now, POLICY)
    opinions = [verdict for _, why, verdict in explain(s, index, now, POLICY) if verdict is not None]
    assert v == (opinions[0] if opinions else ALLOW)
    if recipient is None:
        assert v.rule == "invalid"
    if v.action in (Action.HOLD, Action.SCHEDULE):
        assert v.until is not None and v.until > now


def carries(text: str, number: int) -> bool:
    """`text` holds 7 or more digits in a row of `number` (its national part, or the whole)."""
    digits = str(number)
    return any(digits[i:i + 7] in text for i in range(len(digits) - 6))


def test_no_rule_puts_the_recipient_into_its_reason():
    """A reason goes into the audit log and the log as it is, where the recipient is kept as [audit] recipient
    says (masked by default): no rule's reason may carry the number."""
    policy = load_policy({"preset": "cn-marketing", "default_region": "CN"},
                         {"content": {"required": ["回T退订"], "forbidden": ["赌博"]}, "credit": {"enabled": True},
                          "consent": {"enabled": True}, "quiet_hours": {"action": "reject"},
                          "signature": {"enabled": True}}, CLASSES)
    index = listed("dead", "blacklist", "optout", "consent", "frequency", "quiet")
    index.low_credit[CN_MOBILE] = 10
    index.reviews["acme"] = (NOON, "held")
    reasons = {}
    for name, why, v in explain(sub(CN_MOBILE, text="赌博"), index, NOON, policy):
        assert why == "applies", name
        if v is not None:
            reasons[name] = v.reason
    for ton, address in ((0, "1380013800"), (1, "13800138000"), (0, "+86 138 0013 800x")):
        v = decide(make_submission(policy, address, ton, "ACME", "acme"), Index(), NOON, policy)
        assert v.rule == "invalid" and v.status == Status.RINVDSTADR
        reasons[f"invalid {address}"] = v.reason
    assert {name.split()[0] for name in reasons} == set(RULE_NAMES)  # every rule had its say
    for name, reason in reasons.items():
        assert not carries(reason, CN_MOBILE) and "1380013800" not in reason, (name, reason)
