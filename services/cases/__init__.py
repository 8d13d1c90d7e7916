"""Cases (诉求): residents' requests routed to the responsible department (接诉即办)."""
