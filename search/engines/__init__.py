"""Engines that run a validated query (search.ql.validation.ValidQuery): PostgreSQL and Elasticsearch. The reference
evaluator that defines the semantics in plain Python is the tests' oracle (tests/search/reference.py)."""
