"""`smppguard report ACCOUNT`: the console's account report without the daemon, as a table, JSON, CSV or one HTML
page with its charts drawn, from a store seeded as the proxy writes it (audit rows, send history)."""

from __future__ import annotations

import csv
import io
import json
import time

from cli_helpers import as_json, sql

from smppguard.store.db import connect

DAY = 86400.0


def seed(db_path) -> float:
    """acme: 4 sends over two days, 2 blacklist refusals (one folded row of 2), 1 content refusal, 3 holds; other:
    one refusal. A complaint against a number acme sent to."""
    now = time.time()
    db = connect(db_path)
    db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)",
                   [(8613800000001, "acme", now - 2 * DAY), (8613800000002, "acme", now - 2 * DAY),
                    (8613800000003, "acme", now - 60), (8613800000004, "acme", now - 30),
                    (8613800000009, "acme", now - 20 * DAY)])  # outside --since 7d
    rows = [(now - DAY, "acme", "blacklist", "reject", 0x45, 2), (now - 50, "acme", "content", "reject", 0x45, 1),
            (now - 40, "acme", "quiet_hours", "hold", 0, 3), (now - 40, "other", "optout", "reject", 0x45, 1)]
    for at, account, rule, action, status, count in rows:
        db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, count) "
                   "VALUES (?, ?, 'ACME', '+86138****0001', ?, ?, ?, 'why', ?)", (at, account, rule, action, status,
                                                                                   count))
    db.execute("INSERT INTO blacklist (number, source, reason, added_at) VALUES (8613800000003, 'complaint', '', ?)",
               (now - 10,))
    db.close()
    return now


def test_report_json_counts_the_period(cli, db_path):
    seed(db_path)
    r = as_json(cli("report", "acme", "--since", "7d", "--json"))
    assert r["totals"] == {"sent": 4, "held": 3, "refused": 3}
    assert r["refused_by_rule"] == {"blacklist": 2, "content": 1}
    assert r["complaints"] == 1 and r["refusal_rate"] == round(3 / 7, 4)
    assert r["since"].endswith("Z") and r["until"].endswith("Z")
    assert len(r["days"]) == 8 and sum(d["sent"] for d in r["days"]) == 4


def test_report_table_and_csv(cli, db_path):
    seed(db_path)
    table = cli("report", "acme", "--since", "7d")
    assert table.exit_code == 0, table.output
    assert "sent 4, held 3, refused 3 (42.9%); opt-outs learned 0, complaints 1" in table.stdout
    assert "refused by rule: blacklist 2, content 1" in table.stdout
    out = cli("report", "acme", "--since", "7d", "--csv")
    days = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sum(int(d["refused"]) for d in days) == 3 and list(days[0]) == ["day", "sent", "held", "refused"]
    assert cli("report", "acme", "--json", "--csv").exit_code == 2


def test_report_html_is_one_page_with_its_charts_drawn(cli, db_path, tmp_path):
    seed(db_path)
    page = tmp_path / "acme.html"
    out = cli("report", "acme", "--since", "7d", "--html", str(page))
    assert out.exit_code == 0 and out.stdout.strip() == f"wrote {page}"
    html = page.read_text()
    assert '<meta name="viewport"' in html and "http" not in html.split("<style>")[0].replace("http-equiv", "")
    assert 'data-chart="days"' in html and 'data-chart="rules"' in html
    assert html.count('class="bar-refused"') == 2 and html.count('class="bar-held"') == 1
    assert html.count('class="bar-sent"') == 2  # two days with sends
    assert html.count('class="bar-rule"') == 2
    assert "<script" not in html and "src=" not in html  # nothing to fetch


def test_report_escapes_what_the_store_holds(cli, db_path, tmp_path):
    db = connect(db_path)
    db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason) VALUES "
               "(?, '<b>x', '', '', '<script>alert(1)</script>', 'reject', 69, '')", (time.time(),))
    db.close()
    page = tmp_path / "x.html"
    assert cli("report", "<b>x", "--html", str(page)).exit_code == 0
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x" not in html and "&lt;b&gt;x" in html
    assert json.loads(cli("report", "<b>x", "--json").stdout)["refused_by_rule"] == {
        "<script>alert(1)</script>": 1}
    assert sql(db_path, "SELECT COUNT(*) FROM audit") == [(1,)]
