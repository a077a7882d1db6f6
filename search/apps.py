from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"

    def ready(self) -> None:
        # Datasets sit below search: they announce their changes (datasets.signals) and the hand-off indexes them.
        from datasets import signals
        from search import indexing

        for signal, handoff in (
            (signals.datarows_changed, indexing.datarows_changed),
            (signals.datarows_deleted, indexing.datarows_deleted),
            (signals.dataset_changed, indexing.dataset_changed),
            (signals.dataset_deleted, indexing.dataset_deleted),
        ):
            signal.connect(_forward(handoff), weak=False, dispatch_uid=f"search.indexing.{handoff.__name__}")


def _forward(handoff):
    def receive(*, sender, signal, **arguments) -> None:
        handoff(**arguments)

    return receive
