"""Front desk and staff (issue 5): the pure functional core of attendance, leave, the rotation queue, calls, visits,
complaints, discipline and KPIs. Nothing in this package does I/O, reads a clock or makes ids; see
docs/staff-policy.md for every default and every decided ambiguity."""
