"""A lookup whose module takes 0.4 s to import in a worker, for test_mp.py.

A spawn or forkserver worker imports the module of its lookup before the
lookup starts: this one makes that start-up slow, on purpose.
"""

import multiprocessing
import time

if multiprocessing.parent_process() is not None:  # in a worker, not in the tests
    time.sleep(0.4)


def answer(pet_name, output, delay):
    """The post's lookup, without its line: wait `delay` seconds, then put the answer."""
    time.sleep(delay)
    output.put(f"pet name: {pet_name}")
