"""``flanet bench``: the speed harness (workers, interleaved rounds, end-to-end and authors' rows)."""
