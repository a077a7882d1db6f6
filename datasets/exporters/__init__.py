"""Exports: datarows with their labels and predictions, streamed to a file in keyset batches.

An export reads any datarow queryset (a dataset, a filtered list, a slice, an id range) batch by batch,
so memory stays flat however many rows it holds; formats write each batch as it comes. The exporters
know nothing of jobs or HTTP.
"""
