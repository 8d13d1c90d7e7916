"""Cases: residents' requests routed to departments, each stage with an SLA clock (issue #17)."""
