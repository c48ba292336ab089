"""Drain a core job (a generator yielding Progress) as a worker would, without Qt."""

from __future__ import annotations


def drain(job) -> tuple[list, object]:
    """The job's progress steps, then its return value."""
    steps = []
    while True:
        try:
            steps.append(next(job))
        except StopIteration as done:
            return steps, done.value
