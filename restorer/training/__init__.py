"""Training: ``restorer train`` and ``restorer dataset build``.

- A preset's engine picks its trainer in :data:`restorer.training.registry.TRAINERS` (engine -> trainer
  and its ``--stage`` names). A trainer for a new engine is one module (as :mod:`.anchors` is) that ends
  with ``TRAINER = Trainer(...)``, mapping each stage to how it runs and exports, plus one entry there.
- A new stage of an existing engine is one more entry in that trainer's ``TRAINER`` (tiny's: :mod:`.tiny`)
  and its name in ``TRAINERS``.
- Every trainer shares :mod:`.cache` (feature caches keyed by the dataset), :mod:`.augment` (views),
  :mod:`.loop` (the step loop and schedule), :mod:`.checkpoints` (save, resume, early stopping),
  :mod:`.log` (``log.csv`` and ``loss.png``) and :mod:`.export`.
- Datasets: :mod:`.dataset` (building, splits, reading).
"""
