"""One consistent view for a whole export, however long it runs.

Every read of an export runs in one REPEATABLE READ, READ ONLY transaction on the writer, in a thread of its own:
Django's connections belong to a thread, so the job's progress and cancel writes, made on the caller's connection,
stay outside that transaction and are seen at once. The file then holds the datarows, labels, predictions and
classes as they were when the export began, whatever imports, label edits and deletes commit meanwhile (before,
each batch read the latest data: an export racing an import could hold part of it). The thread reads at most
READ_AHEAD items ahead, so memory stays flat, and its reads overlap the writing of the file.
"""

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from django.db import connections, transaction

from mlops.db_routing import WRITER

READ_AHEAD = 2
T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


@contextmanager
def snapshot_reads(produce: Callable[[], Iterator[T]]) -> Iterator[Iterator[T]]:
    """The items of `produce()`, which runs in the snapshot transaction on the caller's tenant; an error there is
    raised here. Leaving the block (a cancel, say) stops the reads and ends the transaction."""
    tenant = connections[WRITER].tenant
    items: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            connections[WRITER].set_tenant(tenant)
            with transaction.atomic(using=WRITER), connections[WRITER].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                for item in produce():
                    if not hand_over(item):
                        return
            hand_over(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
            hand_over(_Failed(error))
        finally:
            connections.close_all()  # this thread's own connections

    def received() -> Iterator[T]:
        while (item := items.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    reader = threading.Thread(target=read, name="export-snapshot", daemon=True)
    reader.start()
    try:
        yield received()
    finally:
        stop.set()
        reader.join()
