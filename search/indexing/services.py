"""Writing a project's documents to Elasticsearch: bulk indexing of changed rows, deletes, and the full reindex
into a new index swapped in behind the alias in one atomic alias update (zero downtime).

Each project has an alias (elasticsearch_documents.alias_name). While a full reindex fills a new index, that index
also carries the "building" alias, and every change is written to both: the reindex itself only *creates*
documents, so it never overwrites a newer version a change wrote first. A delete is the one change a create can
undo (deleting what the new index does not hold yet is a no-op): after writing each batch, the reindex drops the
batch's ids whose datarows are gone by then.
"""

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from datasets.selectors import field_catalog_types
from search.engines.elasticsearch_documents import (
    EVALUATION_PATH,
    INDEX_SETTINGS,
    alias_name,
    building_alias_name,
    datarow_document,
    evaluation_mapping,
    index_mapping,
    metadata_properties,
)
from search.engines.elasticsearch_engine import client_for_tenant
from search.indexing.documents import datarow_batches, datarows_by_id, existing_datarow_ids

logger = logging.getLogger(__name__)

# Answers worth retrying later: the cluster is busy or (partly) down.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class SearchIndexUnavailable(Exception):
    """Elasticsearch refused for now (429 / 5xx, whole request or some bulk items): the task retries with backoff."""


class SearchIndexingFailed(Exception):
    """Elasticsearch refused documents for good (a mapping conflict, a bad document): retrying will not help."""


@dataclass(frozen=True)
class IndexTargets:
    alias: str
    indices: list[str]  # the alias's index, and the one a running reindex is building


def _answer(response) -> dict:
    return response.body if hasattr(response, "body") else response


def _call(request: Callable[[], object]) -> dict:
    """Run one request; statuses worth retrying become SearchIndexUnavailable."""
    try:
        return _answer(request())
    except ApiError as error:
        if error.meta.status in RETRYABLE_STATUSES:
            raise SearchIndexUnavailable(f"Elasticsearch answered {error.meta.status}") from error
        raise


def _aliased_indices(client: Elasticsearch, name: str) -> list[str]:
    try:
        return sorted(_call(lambda: client.indices.get_alias(name=name)))
    except NotFoundError:
        return []


def create_index(client: Elasticsearch, *, index: str, catalog: dict[str, str], aliases: dict) -> str:
    _call(
        lambda: client.indices.create(
            index=index, settings=INDEX_SETTINGS, mappings=index_mapping(catalog), aliases=aliases
        )
    )
    return index


def _first_index(client: Elasticsearch, *, alias: str, catalog: dict[str, str]) -> list[str]:
    """The project's first index. Its name is fixed, so two tasks racing to create it make one index, not two
    behind the alias (which would answer every search twice)."""
    try:
        create_index(client, index=f"{alias}-initial", catalog=catalog, aliases={alias: {}})
    except ApiError as error:
        if error.meta.status != 400 or "resource_already_exists" not in str(error):
            raise
    return _aliased_indices(client, alias)


def index_targets(
    client: Elasticsearch, *, tenant_schema: str, project_id: int, catalog: dict[str, str]
) -> IndexTargets:
    """The indices a change goes to, creating the project's first index if there is none, with the catalog's
    metadata fields added to their mappings (new paths from an import; existing fields never change), and the
    evaluation matches' field for an index made before it existed."""
    alias = alias_name(tenant_schema, project_id)
    indices = _aliased_indices(client, alias)
    if not indices:
        indices = _first_index(client, alias=alias, catalog=catalog)
    else:
        for index in indices:
            _call(
                lambda index=index: client.indices.put_mapping(
                    index=index,
                    properties={
                        "metadata": {"type": "object", "properties": metadata_properties(catalog)},
                        EVALUATION_PATH: evaluation_mapping(),
                    },
                )
            )
    building = [index for index in _aliased_indices(client, building_alias_name(alias)) if index not in indices]
    return IndexTargets(alias, indices + building)


def bulk_write(client: Elasticsearch, operations: list[dict], *, ignore_statuses: Iterable[int] = ()) -> int:
    """Send bulk operations (action line, then the document for index / create); raise unless every item
    succeeded or failed with a status in `ignore_statuses`. Returns the items written."""
    if not operations:
        return 0
    answer = _call(lambda: client.bulk(operations=operations, refresh=False))
    ignored, retry, failed, written = set(ignore_statuses), [], [], 0
    for item in answer["items"]:
        ((action, result),) = item.items()
        status = result.get("status", 200)
        if status < 300 or (action == "delete" and status == 404):
            written += 1
        elif status in RETRYABLE_STATUSES:
            retry.append(result)
        elif status not in ignored:
            failed.append(result)
    if failed:
        raise SearchIndexingFailed(f"{len(failed)} documents refused, e.g. {failed[0]}")
    if retry:
        raise SearchIndexUnavailable(f"{len(retry)} documents not written for now, e.g. {retry[0]}")
    return written


def _index_operations(indices: list[str], documents: list[dict], action: str = "index") -> list[dict]:
    operations = []
    for index in indices:
        for document in documents:
            operations += [{action: {"_index": index, "_id": str(document["id"])}}, document]
    return operations


def _delete_operations(indices: list[str], datarow_ids: Iterable[int]) -> list[dict]:
    return [{"delete": {"_index": index, "_id": str(row_id)}} for index in indices for row_id in datarow_ids]


def index_datarows(*, tenant_schema: str, project_id: int, datarow_ids: list[int], using: str) -> dict:
    """Index the project's datarows among the ids as they are now; remove the ids that are not (any more)."""
    client = client_for_tenant(tenant_schema)
    catalog = field_catalog_types(project_id=project_id, using=using)
    rows = datarows_by_id(project_id=project_id, datarow_ids=datarow_ids, using=using)
    targets = index_targets(client, tenant_schema=tenant_schema, project_id=project_id, catalog=catalog)
    documents = [datarow_document(row, catalog) for row in rows]
    found = {row["id"] for row in rows}
    gone = sorted(set(datarow_ids) - found)
    operations = _index_operations(targets.indices, documents)
    operations += _delete_operations(targets.indices, gone)
    bulk_write(client, operations)
    return {"indexed": len(documents), "deleted": len(gone)}


def index_dataset(*, tenant_schema: str, project_id: int, dataset_id: int, since: datetime | None, using: str) -> int:
    """Index the dataset's datarows updated at or after `since` (all without it), batch by batch."""
    return _index_batches(
        tenant_schema=tenant_schema, project_id=project_id, using=using, dataset_id=dataset_id, since=since
    )


def index_slice_members(*, tenant_schema: str, project_id: int, slice_id: int, using: str) -> int:
    """Index a stored slice's members again, batch by batch: their documents' `slice_ids` gained the slice."""
    return _index_batches(tenant_schema=tenant_schema, project_id=project_id, using=using, slice_id=slice_id)


def _index_batches(*, tenant_schema: str, project_id: int, using: str, **filters) -> int:
    client = client_for_tenant(tenant_schema)
    catalog = field_catalog_types(project_id=project_id, using=using)
    targets = index_targets(client, tenant_schema=tenant_schema, project_id=project_id, catalog=catalog)
    indexed = 0
    for rows in datarow_batches(project_id=project_id, using=using, batch_size=settings.SEARCH_INDEX_BATCH, **filters):
        indexed += len(rows)
        bulk_write(client, _index_operations(targets.indices, [datarow_document(row, catalog) for row in rows]))
    return indexed


def delete_dataset_documents(*, tenant_schema: str, project_id: int, dataset_id: int) -> int:
    client = client_for_tenant(tenant_schema)
    alias = alias_name(tenant_schema, project_id)
    indices = _aliased_indices(client, alias) + _aliased_indices(client, building_alias_name(alias))
    deleted = 0
    for index in dict.fromkeys(indices):
        answer = _call(
            lambda index=index: client.delete_by_query(
                index=index, query={"term": {"dataset_id": dataset_id}}, conflicts="proceed", refresh=True
            )
        )
        deleted += answer.get("deleted", 0)
    return deleted


def reindex_project(
    *, tenant_schema: str, project_id: int, using: str, progress: Callable[[int], None] = lambda indexed: None
) -> dict:
    """Build a new index of every datarow of the project, then point the alias at it in one atomic alias update
    and drop the old index. Searches keep using the old index until the swap; changes made meanwhile reach both."""
    client = client_for_tenant(tenant_schema)
    alias = alias_name(tenant_schema, project_id)
    building = building_alias_name(alias)
    for leftover in _aliased_indices(client, building):  # a reindex that died half-way
        _call(lambda leftover=leftover: client.indices.delete(index=leftover))
    catalog = field_catalog_types(project_id=project_id, using=using)
    index = create_index(
        client,
        index=f"{alias}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}",
        catalog=catalog,
        aliases={building: {}},
    )
    indexed = 0
    for rows in datarow_batches(project_id=project_id, using=using, batch_size=settings.SEARCH_INDEX_BATCH):
        # create, not index: a change written meanwhile is newer than this read; keep it (409 is that case).
        bulk_write(
            client,
            _index_operations([index], [datarow_document(row, catalog) for row in rows], "create"),
            ignore_statuses=(409,),
        )
        # A datarow deleted since this batch was read may have had its delete written before the create above put
        # its document back; one deleted from now on has its delete written after, which finds the document.
        ids = [row["id"] for row in rows]
        gone = sorted(set(ids) - existing_datarow_ids(datarow_ids=ids, using=using))
        if gone:
            bulk_write(client, _delete_operations([index], gone))
        indexed += len(rows) - len(gone)
        progress(indexed)
    old = _aliased_indices(client, alias)
    actions = [{"remove": {"index": name, "alias": alias}} for name in old]
    actions += [{"add": {"index": index, "alias": alias}}, {"remove": {"index": index, "alias": building}}]
    _call(lambda: client.indices.update_aliases(actions=actions))
    for name in old:
        _call(lambda name=name: client.indices.delete(index=name))
    logger.info("search index %s now behind %s (%d datarows; replaced %s)", index, alias, indexed, old)
    return {"index": index, "indexed": indexed, "replaced": old}
