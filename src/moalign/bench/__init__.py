"""The benchmark suite: timings that the ``moalign bench`` command prints (not timed tests)."""
