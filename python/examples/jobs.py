import multiprocessing as mp, shset

def worker(s, n):
    for i in range(n):
        s.add(f"job-{i}")
    return len(s)

if __name__ == "__main__":
    s = shset.Set()                      # a new shared set (str keys)
    with mp.get_context("spawn").Pool(4) as pool:
        pool.starmap(worker, [(s, 1000)] * 4)
    snap = s.copy()                      # atomic: a new shared set, one state of s
    print(len(s), "job-7" in s, sorted(s.snapshot())[:3])
