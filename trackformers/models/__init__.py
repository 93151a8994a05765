"""Models: the hit encoder (:mod:`.encoder`) and the per-hit heads with their losses (:mod:`.tasks`)."""
