"""Rule `content`: sensitive words or patterns on the decoded text, and text every message must carry.

`forbidden`: regular expressions that refuse a message (sensitive words). `required`: at least one must match
(MIIT: every marketing message must say how to refuse, e.g. "回T退订|reply STOP"). Binary content (no text)
is not judged. Matching is case-insensitive.
A concatenated message is judged as its parts arrive (the bridge joins their text): a forbidden word refuses
the part it completes and every later one; the required text is looked for once the text is whole, since it
usually ends the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, common, get, patterns

NAME = "content"


@dataclass(frozen=True)
class Settings(Common):
    forbidden: tuple = ()
    required: tuple = ()


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="content refused",
               extra=frozenset({"forbidden", "required"}))
    return Settings(**vars(c), forbidden=get(NAME, raw, "forbidden", [], patterns),
                    required=get(NAME, raw, "required", [], patterns))


def inactive(s: Settings) -> bool:
    """Nothing to look for: decide() leaves the rule out."""
    return not (s.forbidden or s.required)


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    text = sub.text
    if text is None or not (s.forbidden or s.required):
        return None
    for p in s.forbidden:
        m = p.search(text)
        if m:
            return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: contains {m.group(0)!r}")
    if s.required and not sub.partial and not any(p.search(text) for p in s.required):
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: no opt-out instruction")
    return None


# judged again as each part of a concatenated message joins the text (policy.judge_text)
RULE = Rule(NAME, parse_settings, check, reads_text=True, inactive=inactive)
