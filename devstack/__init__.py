"""Local services for `make run` and `make test`: the configured ones, or embedded ones under `.data/`.

Production never imports this package; it only stands in for Aurora (writer + streaming reader) and
Redis on a developer's machine or in CI.
"""
