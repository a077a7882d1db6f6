"""Engines that run a validated query (search.ql.validation.ValidQuery): PostgreSQL, and the reference evaluator
that defines the semantics in plain Python for the tests."""
