#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Shared atomic values: 2 processes x 100 threads, exact final values.

Every thread adds 1 to a shared counter 1,000 times (`counter += 1` is one
atomic fetch_add), counts into one of 10 slots of a shared array, and once
increments a number kept as text in a shared byte string (a read-modify-
write made atomic by compare_exchange).  Nothing is lost, whatever the start
method (fork, spawn or forkserver): the values live in memfds that
multiprocessing passes to the workers.

    PYTHONPATH=build/python python3 examples/atomic_values.py
"""
import multiprocessing as mp
import threading

import shset

PROCESSES, THREADS, ROUNDS = 2, 100, 1000


def thread_body(t, counter, label, slots):
    for i in range(ROUNDS):
        counter += 1
        slots.fetch_add((t + i) % len(slots), 1)
    while True:  # label = str(int(label) + 1), atomically
        old = label.load()
        if label.compare_exchange(old, b"%d" % (int(old) + 1)):
            break


def process_body(counter, label, slots):
    threads = [threading.Thread(target=thread_body, args=(t, counter, label, slots))
               for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    counter = shset.Int(0)
    label = shset.Bytes(b"0", capacity=16)
    slots = shset.IntArray(10)
    procs = [mp.Process(target=process_body, args=(counter, label, slots))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("counter:", counter.value)
    print("label:  ", label.value)
    print("slots:  ", slots.tolist())
