"""Load-cell shelves: controller protocols, the per-bin signal pipeline, counting and faults."""
