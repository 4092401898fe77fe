"""Customer ownership, channel 报备 and commissions: the pure functional core (rules.md §5 OWN, §7 COM).

Modules, one job each:

- ``customers``: customer identity per project (phone normalisation, customer key, masking, analytics hash).
- ``months``: calendar-month arithmetic for the 3-month ownership period (OWN-05).
- ``policy``: ``OwnershipPolicy``, the per-office settings with documented defaults.
- ``events`` / ``facts`` / ``state``: what the decider reads, what it answers, what it remembers.
- ``channel``: the pure 报备 judge (OWN-10…16): which reports are valid and which one wins.
- ``domain``: ``decide`` over one customer's stream; ``evolve``: ``evolve`` / ``fold`` (re-exported by ``domain``).
- ``ledger``: ``commission_ledger`` per deal (COM-01…05); ``performance``: monthly 业绩 and achievement (COM-06).

Nothing here does I/O, reads a clock or makes ids. See docs/ownership-policy.md.
"""
