"""Leased slots in Redis: at most `limit` holders of a key at once, across every process.

A slot is a member of a sorted set scored with the time its lease ends; taking one first drops the lapsed ones, so a
process that died holding a slot frees it when its lease ends instead of leaking it. The check and the take are one
Lua script, so two processes cannot both take the last slot. Every holder of a key takes the same lease, so the
key itself lives as long as its newest lease.
"""

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from mlops.redis_pool import redis_client

logger = logging.getLogger(__name__)
# The token of a slot taken while Redis could not be asked: the share is not enforced then, rather than every
# search and websocket failing with Redis (statement timeouts still bound the work).
UNCOUNTED = ""

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def slot_acquire(*, key: str, limit: int, lease_seconds: float) -> str | None:
    """A token for a slot of `key`, or None when `limit` live leases hold them all (UNCOUNTED when Redis is down)."""
    now = time.time()
    token = secrets.token_hex(8)
    try:
        taken = redis_client().eval(
            _ACQUIRE, 1, f"mlops:slots:{key}", now, now + lease_seconds, limit, token, int(lease_seconds * 1000)
        )
    except redis.RedisError as error:
        logger.warning("slots of %s not counted: Redis unavailable (%s)", key, error)
        return UNCOUNTED
    return token if taken else None


def slot_release(*, key: str, token: str) -> None:
    if token == UNCOUNTED:
        return
    try:
        redis_client().zrem(f"mlops:slots:{key}", token)
    except redis.RedisError as error:  # the lease ends the slot instead
        logger.warning("slot of %s not released: Redis unavailable (%s)", key, error)


@contextmanager
def slot_held(*, key: str, limit: int, lease_seconds: float, refused) -> Iterator[None]:
    """Hold a slot of `key` for the block; with none free, raise `refused()`."""
    token = slot_acquire(key=key, limit=limit, lease_seconds=lease_seconds)
    if token is None:
        raise refused()
    try:
        yield
    finally:
        slot_release(key=key, token=token)
