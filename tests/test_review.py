"""The review's figures and thresholds, without a proxy: minutes counted, a window summed, thresholds passed."""

from __future__ import annotations

from types import SimpleNamespace

from smppguard.review import MINUTE, Minute, Tally, figures, over

CFG = SimpleNamespace(min_sent=100, new_share=0.9, refused_share=0.5, optouts_per_1000=10.0, low_credit_share=0.3,
                      rate_factor=10.0, complaints_per_1000=1.0)
NOW = 1_800_000_000.0


def tally(first: float, minutes: dict[int, Minute]) -> Tally:
    return Tally({int(NOW // MINUTE) - ago: m for ago, m in minutes.items()}, first)


def test_figures_sum_the_window_and_leave_older_minutes_to_the_usual_rate():
    t = tally(NOW - 7 * 3600, {0: Minute(sent=100, new=95, low_credit=40, optouts=2, complaints=1),
                               30: Minute(sent=100, new=85, refused={"blacklist": 50, "optout": 150}),
                               120: Minute(sent=50)})  # two hours ago: outside a 1 h window
    f = figures(t, NOW, 3600.0)
    assert (f["sent"], f["refused"], f["refused_by_rule"]) == (200, 200, {"blacklist": 50, "optout": 150})
    assert (f["new_share"], f["refused_share"], f["optouts_per_1000"], f["low_credit_share"]) == (0.9, 0.5, 10.0, 0.2)
    assert f["usual_per_window"] == round(50 * 3600 / (6 * 3600), 1)  # 50 in the 6 h before the window
    assert f["rate_vs_usual"] == 24.0  # 200 against 8.33 a window
    why = over(f, CFG)
    assert (f["complaints"], f["complaints_per_1000"]) == (1, 5.0)
    assert [w.split()[0] for w in why] == ["new", "refused", "opt-out", "complaints", "rate"]


def test_no_judgement_below_min_sent_and_no_usual_rate_before_six_hours():
    young = tally(NOW - 3600, {0: Minute(sent=99, new=99)})
    f = figures(young, NOW, 3600.0)
    assert "rate_vs_usual" not in f
    assert over(f, CFG) == []
    young.minutes[int(NOW // MINUTE)].sent += 1
    assert over(figures(young, NOW, 3600.0), CFG) != []


def test_a_threshold_of_zero_is_off():
    f = figures(tally(NOW - 3600, {0: Minute(sent=200, new=200)}), NOW, 3600.0)
    assert over(f, SimpleNamespace(**{**vars(CFG), "new_share": 0.0})) == []


def test_metrics_carry_each_accounts_figures_and_trips():
    from smppguard.metrics import _review_families

    review = SimpleNamespace(tripped={"acme": 2}, last={"acme": {"sent": 220, "new_share": 0.93}})
    replies = SimpleNamespace(sent_by_kind={"optout": 3}, skipped={"help": 1})
    got = {(f.name, tuple(s.labels.values()), s.value) for f in _review_families(review, replies) for s in f.samples}
    assert got == {("smppguard_review_tripped", ("acme",), 2), ("smppguard_review_figure", ("acme", "sent"), 220),
                   ("smppguard_review_figure", ("acme", "new_share"), 0.93),
                   ("smppguard_replies", ("sent", "optout"), 3), ("smppguard_replies", ("not_sent", "help"), 1)}
