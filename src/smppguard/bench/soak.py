"""The refusal soak: a sender that keeps resending to the same recipients after the frequency cap refused them.

`run_soak(refusals, recipients)` (``smppguard bench --soak 2500000 --recipients 50000``): as a legacy sender or a
script in a loop does. It reports what the refusals cost the store (its growth on disk), and checks that the audit
log counts every refusal the sender got, per recipient and in `stats`.
"""

from __future__ import annotations

from typing import Any

from .load import RECIPIENT_PREFIX, Numbers, run_loop, run_pass
from .procs import met, rig, start_proxy, start_sink, store_bytes

# --- the soak: refusals, again and again ----------------------------------------------------------------------

#: What the soak's proxy screens: the frequency cap at 1, so that every message to a recipient after its first is
#: refused; recipients kept in full in the audit log, so its counts can be checked recipient by recipient.
SOAK_TOML = ('[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\n\n'
             '[rules.quiet_hours]\nenabled = false\n\n[rules.frequency]\nmax = 1\nmin_interval = "0s"\n\n'
             '[audit]\nrecipient = "full"\n')
#: 2.5 million refusals over 50,000 recipients may grow the store by this much at most.
TARGET_SOAK_MB_PER_MILLION = 20.0


def run_soak(refusals: int = 2_500_000, recipients: int = 50_000, binds: int = 4, window: int = 10) -> dict[str, Any]:
    """A sender that resends to `recipients` numbers until `refusals` messages have been refused (the frequency
    cap is 1: each recipient's first message is accepted, every later one refused). Returns what the store grew
    by, and whether the audit log and `stats` count every refusal the sender received."""
    import sqlite3

    from ..store import audit

    if refusals < 0 or recipients < 1 or binds < 1 or window < 1:
        raise ValueError("recipients, binds and window must be at least 1, refusals at least 0")
    total = refusals + recipients
    with rig("soak", window, SOAK_TOML) as r:
        db = r.db
        r.start(start_sink(r.dir, r.sink))
        proxy = r.start(start_proxy(r.dir, r.proxy))
        before = store_bytes(db)
        result = run_loop(run_pass(r.proxy, total, binds, window, 0, Numbers(), True, proxy.pid, cycle=recipients))
        r.stop()  # SIGTERM: the proxy saves what it owes before it exits
        after = store_bytes(db)
        conn = sqlite3.connect(db)
        try:
            rows, counted = conn.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM audit "
                                         "WHERE rule = 'frequency'").fetchone()
            per_recipient = dict(conn.execute("SELECT recipient, SUM(count) FROM audit WHERE rule = 'frequency' "
                                              "GROUP BY recipient"))
            in_stats = sum(r["count"] for r in audit.stats(conn) if r["action"] == "reject")
            audit_bytes = audit.size(conn)
        finally:
            conn.close()
    # recipient r got the messages i (i % recipients == r) of 0 .. total-1, and one of them was accepted
    expected = {f"+{RECIPIENT_PREFIX.decode()}{r:08d}": (total - r - 1) // recipients for r in range(recipients)}
    expected = {k: v for k, v in expected.items() if v}
    return {"refusals": refusals, "recipients": recipients, "binds": binds, "window": window,
            "messages": total, "seconds": result["seconds"], "rate": result["rate"],
            "refusals_received": result["errors"], "store_growth_bytes": after - before,
            "audit_bytes": audit_bytes, "audit_rows": rows, "audit_count": counted,
            "audit_matches_per_recipient": per_recipient == expected, "stats_refusals": in_stats,
            "proxy_cpu_us_per_msg": result["cpu_seconds"] / total * 1e6 if total else 0.0,
            "proxy_rss_kb": result["rss_kb"],
            "target_growth_mb": TARGET_SOAK_MB_PER_MILLION * refusals / 1e6}


def format_soak(r: dict[str, Any]) -> str:
    growth_mb = r["store_growth_bytes"] / 1e6
    per_million = growth_mb / (r["refusals"] / 1e6) if r["refusals"] else 0.0
    return "\n".join([
        f"smppguard bench --soak: {r['refusals']:,} refusals over {r['recipients']:,} recipients "
        f"({r['binds']} binds, window {r['window']}; frequency cap 1, so every message after a recipient's first "
        "is refused)",
        "",
        f"submit_sm sent            {r['messages']:,} in {r['seconds']:.1f} s ({r['rate']:,.0f}/s; "
        f"proxy CPU {r['proxy_cpu_us_per_msg']:.1f} µs each)",
        f"refusals received         {r['refusals_received']:,}",
        f"store growth              {growth_mb:.1f} MB, {per_million:.1f} MB per million refusals "
        f"(target <= {TARGET_SOAK_MB_PER_MILLION:.0f} MB per million, {r['target_growth_mb']:.1f} MB for this run: "
        f"{met(growth_mb <= r['target_growth_mb'])})",
        f"audit log                 {r['audit_rows']:,} rows, {r['audit_bytes'] / 1e6:.1f} MB, counting "
        f"{r['audit_count']:,} refusals",
        "per recipient             every count = the refusals it got: "
        f"{'yes' if r['audit_matches_per_recipient'] else 'NO'}",
        f"stats                     {r['stats_refusals']:,} refusals = received: "
        f"{'yes' if r['stats_refusals'] == r['refusals_received'] else 'NO'}",
        f"proxy RSS at the end      {r['proxy_rss_kb'] * 1024 / 1e6:.0f} MB",
    ])

