"""Cases (诉求): residents' requests routed to the responsible department, with SLA clocks and satisfaction."""
