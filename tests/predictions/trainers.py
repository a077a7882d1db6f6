"""Trainer plugins (loaded by dotted path, like any plugin) whose predict loses track of its batches, as a
batching bug would: the built-in classifier trains and predicts, these replay or drop a batch of its output."""

from trainers.image_classifier import ImageClassifierTrainer


class RepeatingBatchTrainer(ImageClassifierTrainer):
    def predict(self, **options):
        batches = list(super().predict(**options))
        yield batches[0]
        yield batches[0]


class DroppingBatchTrainer(ImageClassifierTrainer):
    def predict(self, **options):
        yield from list(super().predict(**options))[:-1]
