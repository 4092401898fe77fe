"""销控 (unit sales control): the pure functional core of the unit decider (rules.md §6, SALE-01…SALE-19)."""
