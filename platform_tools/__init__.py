"""Tools that look at the whole platform: the supervisor behind `make run`, the `linli` CLI, the contract
documents, the broker's definitions and users, the dead-letter queues. They may import services; nothing in
``services/`` imports them (tests/unit/test_imports.py)."""
