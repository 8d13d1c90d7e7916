"""Cases (诉求): residents' requests routed to the responsible department, each stage with an SLA clock (issue #17).

Not a service yet (no service.py): its pure parts come first — the working-day calendar, the KPIs, the
likely-duplicate rule, the lifecycle state
machine and the catalogue of case types."""
