"""Size, build time, open time, memory and lookup latency of the title index at arXiv scale (synthetic).

arXiv has about 2.7 million papers; the metadata snapshot gives each a title and an abstract. This bench makes
that many synthetic records (fixed seed: titles of 4-16 words from a 30k-word Zipf vocabulary, abstracts of
``--abstract_chars`` characters, unique new-style ids), builds ``pasa.tools.title_index`` from them in one process,
then opens it in a fresh process and times ``get_by_title`` for titles that exist (hits, in random order, so the
page cache is not warmed in insertion order) and for titles that do not (misses, the common case for cited
references outside arXiv).

With ``--compare`` it also measures the obvious alternative: a Python dict ``title_key -> id`` pickled to disk and
loaded whole at start (no abstracts: a dict with abstracts would not fit a laptop's memory).

    python bench/title_index.py                                  # 2.7M records, ~1 KB abstracts
    python bench/title_index.py --records 200000 --compare       # quick
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vocab(rng: random.Random, n: int = 30_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 11))) for _ in range(n)]


def make_records(n: int, abstract_chars: int, seed: int = 0):
    """Deterministic synthetic snapshot records (``MetadataRecord``)."""
    from pasa.tools.title_index import MetadataRecord

    rng = random.Random(seed)
    text_rng = random.Random(seed + 1)  # abstracts draw from their own stream: titles do not depend on their length
    vocab = _vocab(rng)
    weights = [1 / (i + 1) for i in range(len(vocab))]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    filler = " ".join(rng.choices(vocab, cum_weights=cum, k=400))
    for i in range(n):
        words = rng.choices(vocab, cum_weights=cum, k=rng.randint(4, 16))
        title = " ".join(words).capitalize() + f" {i:x}"  # the hex tail keeps keys (mostly) unique, like real titles
        year, num = 7 + i // 300_000, i % 300_000
        arxiv_id = f"{year:02d}{(i % 12) + 1:02d}.{num:05d}"
        start = text_rng.randrange(0, max(1, len(filler) - abstract_chars))
        yield MetadataRecord(arxiv_id, title, filler[start : start + abstract_chars], "20200101", "cs.LG")


def sample_titles(n: int, k: int, seed: int = 1) -> list[str]:
    """``k`` titles of the corpus (regenerated: the generator is deterministic), in random order."""
    wanted = set(random.Random(seed).sample(range(n), k))
    titles = [r.title for i, r in enumerate(make_records(n, 0)) if i in wanted]
    random.Random(seed).shuffle(titles)
    return titles


def phase_build(args) -> dict:
    from pasa.tools.title_index import build_title_index

    t0 = time.perf_counter()
    manifest = build_title_index(make_records(args.records, args.abstract_chars), args.dir)
    seconds = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(args.dir, f)) for f in os.listdir(args.dir))
    return {"build_s": seconds, "size_mb": size / 2**20, "build_peak_mb": _peak_mb(), "keys": manifest["title_keys"]}


def phase_query(args) -> dict:
    from pasa.tools.title_index import TitleIndex

    hits = sample_titles(args.records, args.lookups)
    misses = [f"A study of nothing in particular number {i}" for i in range(args.lookups)]
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = TitleIndex(args.dir)
    index.get_by_title("warm up the connection")
    open_s = time.perf_counter() - t0
    out = {"open_s": open_s}
    for name, titles in (("hit", hits), ("miss", misses)):
        times = []
        found = 0
        for title in titles:
            t = time.perf_counter()
            found += index.get_by_title(title) is not None
            times.append(time.perf_counter() - t)
        times.sort()
        out[f"{name}_p50_us"] = times[len(times) // 2] * 1e6
        out[f"{name}_p95_us"] = times[int(len(times) * 0.95)] * 1e6
        out[f"{name}_found"] = found / len(titles)
    out["query_rss_mb"] = _rss_mb() - rss0
    return out


def phase_dict(args) -> dict:
    """The alternative: a pickled dict of title key -> id, loaded whole."""
    from pasa.paper import title_key

    path = os.path.join(args.dir, "titles.pickle")
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        pickle.dump({title_key(r.title): r.arxiv_id for r in make_records(args.records, 0)}, f, protocol=5)
    build_s = time.perf_counter() - t0
    hits = sample_titles(args.records, args.lookups)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        table = pickle.load(f)
    open_s = time.perf_counter() - t0
    times = []
    for title in hits:
        t = time.perf_counter()
        table.get(title_key(title))
        times.append(time.perf_counter() - t)
    times.sort()
    return {"dict_build_s": build_s, "dict_size_mb": os.path.getsize(path) / 2**20, "dict_open_s": open_s,
            "dict_rss_mb": _rss_mb() - rss0, "dict_hit_p50_us": times[len(times) // 2] * 1e6}  # fmt: skip


def _run_phase(phase: str, args) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--dir", args.dir, "--records", str(args.records),
           "--abstract_chars", str(args.abstract_chars), "--lookups", str(args.lookups)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_700_000)
    parser.add_argument("--abstract_chars", type=int, default=1000, help="arXiv abstracts average ~1,000 chars")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--compare", action="store_true", help="also measure a pickled in-memory dict")
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, REPO_ROOT)
        result = {"build": phase_build, "query": phase_query, "dict": phase_dict}[args.phase](args)
        print(json.dumps(result))
        return
    tmp = tempfile.mkdtemp(prefix="bench-title-index-")
    try:
        args.dir = os.path.join(tmp, "title_index")
        row = {"records": args.records, "abstract_chars": args.abstract_chars}
        row.update(_run_phase("build", args))
        row.update(_run_phase("query", args))
        if args.compare:
            args.dir = tmp
            row.update(_run_phase("dict", args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, indent=1))


if __name__ == "__main__":
    main()
