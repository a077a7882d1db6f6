"""One Redis connection pool per process and server for Django's cache.

Django keeps a cache client per thread (and per async context), each with its own connection pool; under the ASGI
server every request runs in a new thread, so every request opened a new Redis connection. redis-py's pools are
thread-safe and reset themselves in a forked child, so one per URL and options serves the whole process.
"""

import threading

import redis
from django.conf import settings


class ProcessConnectionPool(redis.ConnectionPool):
    _pools: dict[tuple, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.ConnectionPool:
        key = (url, tuple(sorted(kwargs.items())))
        with cls._lock:
            if key not in cls._pools:
                cls._pools[key] = super().from_url(url, **kwargs)
            return cls._pools[key]


def redis_client() -> redis.Redis:
    """A client on the cache's per-process pool (and its short timeouts), for what Django's cache API cannot say."""
    return redis.Redis(
        connection_pool=ProcessConnectionPool.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    )
