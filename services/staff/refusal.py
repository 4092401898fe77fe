"""The answer of a check that says no: the rule that refuses, why, and the evidence it looked at."""

from __future__ import annotations

from dataclasses import dataclass

INPUT_RULE = "INPUT"  # the request itself is malformed
ROLE_RULE = "§12"  # the authorization matrix (rules.md §12.1) does not allow the actor's role


@dataclass(frozen=True)
class Refusal:
    rule_id: str  # e.g. "ATT-05", or INPUT_RULE / ROLE_RULE
    reason: str
    evidence: tuple[str, ...] = ()
