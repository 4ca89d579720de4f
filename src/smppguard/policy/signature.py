"""Rule `signature`: a commercial message carries its sender's registered signature, 【公司名】.

China requires every commercial SMS to carry the signature registered for the account that sends it, at the start
or the end of the text; carriers drop or penalise a mismatch, and repeated mismatches get a sender's whole traffic
blocked. The signatures of each account (system_id), optionally of one of its source addresses, are registered
with `smppguard signature add` (store/signatures.py); they live in the Index (`Index.signatures`), so this rule
reads memory only.

The text is judged decoded (GSM, UCS2...), and a concatenated message as a whole: with `where = "start"` as soon
as its first part is seen (nothing of it has been forwarded yet), otherwise once every part has arrived (the parts
before the last have then gone out: only the last is refused, as with the content rule's required text).
Signatures are compared after NFKC normalisation (full-width Latin letters equal half-width ones) and without the
spaces just inside the brackets.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, choice, common, get

NAME = "signature"
WHERE = ("start", "end", "either")
#: 【】 is what the carriers ask for; [] is accepted by some (add it to `brackets` where yours does).
FULL_WIDTH = "【】"
UNREGISTERED = ("refuse", "pass")
SHOWN = 40  # characters of a signature found that a refusal's reason shows (no registered one is longer)


@dataclass(frozen=True)
class Settings(Common):
    where: str = "start"
    brackets: tuple[str, ...] = (FULL_WIDTH,)
    unregistered: str = "refuse"  # an account with no signature registered: "refuse" or "pass"


def _brackets(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and len(v) == 2 for v in value):
        raise ValueError(f"expected a list of bracket pairs such as [\"【】\", \"[]\"], got {value!r}")
    return tuple(value)


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="signature refused", enabled=False,
               classes=("marketing", "confirmation", "notification"),
               extra=frozenset({"where", "brackets", "unregistered"}))
    return Settings(**vars(c), where=get(NAME, raw, "where", "start", choice(*WHERE)),
                    brackets=get(NAME, raw, "brackets", [FULL_WIDTH], _brackets),
                    unregistered=get(NAME, raw, "unregistered", "refuse", choice(*UNREGISTERED)))


def normal(signature: str) -> str:
    """A signature as compared: NFKC, without surrounding spaces or the brackets (【ACME】 and ACME are one)."""
    text = unicodedata.normalize("NFKC", signature).strip()
    for pair in (FULL_WIDTH, "[]", "〔〕"):  # after NFKC: full-width ［ ］ are [ ] by then
        if len(text) > 2 and text[0] == pair[0] and text[-1] == pair[1]:
            text = text[1:-1].strip()
            break
    return text


def found(text: str, where: str, brackets: tuple[str, ...]) -> list[str]:
    """The bracketed signatures `text` carries where `where` says (each as `normal` gives it), start first."""
    text = unicodedata.normalize("NFKC", text).strip()  # full-width ［ ］ are [ ] then, as in `normal`
    out = []
    for opening, closing in brackets:
        if where in ("start", "either") and text.startswith(opening):
            end = text.find(closing, 1)
            if end > 1:
                out.append(normal(text[1:end]))
        if where in ("end", "either") and text.endswith(closing):
            start = text.rfind(opening, 0, len(text) - 1)
            if start >= 0 and start < len(text) - 2:
                out.append(normal(text[start + 1:-1]))
    return out


def _judged_now(sub: Submission, where: str) -> bool:
    """Whether the text at hand can be judged: the whole message, or (for the start) a first part."""
    if not sub.partial:
        return True
    return where == "start" and sub.concat is not None and sub.concat[2] == 1


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    text = sub.text
    if text is None:  # binary content carries no signature to judge
        return None
    registered = index.signed(sub.account, sub.sender)
    if not registered:
        if s.unregistered == "pass":
            return None
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: account {sub.account} has no signature "
                                                      "registered")
    seen = found(text, s.where, s.brackets)
    if any(sig in registered for sig in seen):
        return None
    if not _judged_now(sub, s.where):  # the signature may be in a part not seen yet
        return None
    if seen:
        # as found, cut short: a bracket pair may enclose half the text, and the reason goes to the audit log
        shown = ", ".join(f"【{sig[:SHOWN]}{'…' if len(sig) > SHOWN else ''}】" for sig in seen)
        return Verdict(Action.REJECT, NAME, s.status,
                       f"{s.reason}: {shown} is not registered for account {sub.account}")
    place = {"start": "at the start", "end": "at the end", "either": "at the start or the end"}[s.where]
    return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: no signature {place} of the text")


# judged again as each part of a concatenated message joins the text (policy.judge_text)
RULE = Rule(NAME, parse_settings, check, reads_text=True)
