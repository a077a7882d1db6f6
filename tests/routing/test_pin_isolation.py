"""The writer pin belongs to one request's context: a write in one thread or asyncio task pins no other."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections, router

from mlops import db_routing
from projects.models import Project
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import project_make


def _write_project(name: str) -> None:
    with tenant_scope(TENANT_A):
        project_make(name=name)


def _next_read_answered_by_replica() -> bool:
    with tenant_scope(TENANT_A):
        alias = router.db_for_read(Project)
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            return cursor.fetchone()[0]


def test_a_write_in_one_thread_does_not_pin_another(replica_pair):
    wrote = threading.Event()
    other_has_read = threading.Event()
    answered_by_replica: dict[str, bool] = {}

    def writing_request():
        try:
            with db_routing.reader_allowed():
                _write_project("threaded")
                wrote.set()
                other_has_read.wait(timeout=10)
                answered_by_replica["writing"] = _next_read_answered_by_replica()
        finally:
            connections.close_all()

    def reading_request():
        try:
            wrote.wait(timeout=10)
            with db_routing.reader_allowed():
                answered_by_replica["reading"] = _next_read_answered_by_replica()
            other_has_read.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writing_request), threading.Thread(target=reading_request)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert answered_by_replica == {"writing": False, "reading": True}


def test_a_write_in_one_asyncio_task_does_not_pin_another_on_the_same_thread(replica_pair):
    """As under ASGI: requests are asyncio tasks whose sync code runs on one shared thread, one call at a time."""
    shared_thread = ThreadPoolExecutor(max_workers=1)

    def on_shared_thread(function, *args):
        return sync_to_async(function, thread_sensitive=False, executor=shared_thread)(*args)

    async def writing_request(wrote: asyncio.Event, other_has_read: asyncio.Event) -> bool:
        await on_shared_thread(db_routing.allow_reader)
        await on_shared_thread(_write_project, "async")
        wrote.set()
        await other_has_read.wait()
        return await on_shared_thread(_next_read_answered_by_replica)

    async def reading_request(wrote: asyncio.Event, other_has_read: asyncio.Event) -> bool:
        await on_shared_thread(db_routing.allow_reader)
        await wrote.wait()
        answered_by_replica = await on_shared_thread(_next_read_answered_by_replica)
        other_has_read.set()
        return answered_by_replica

    async def both() -> list[bool]:
        wrote, other_has_read = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(writing_request(wrote, other_has_read), reading_request(wrote, other_has_read))

    try:
        assert asyncio.run(both()) == [False, True]
    finally:
        shared_thread.submit(connections.close_all).result()
        shared_thread.shutdown()
