"""Background jobs: one detached process per experiment, a queue with a slot limit, and the
bookkeeping that tells live jobs from dead ones."""
