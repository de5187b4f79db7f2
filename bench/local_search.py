"""Build time, index size, open time, memory and p50/p95 query latency of the offline search index.

A synthetic corpus (fixed seed) of realistic-ish papers: Zipf-distributed words from a 50k-word vocabulary (a few
hundred real CS terms, the rest pseudo-words), English stopwords mixed in at about the rate of real abstracts,
titles of 5-14 words, abstracts of 80-220 words, publication dates 2000-2025 (5% unknown). Queries look like
crawler queries: a few words of one paper's title and abstract with connectives ("graph networks for molecule
..."), half of them with an end date; "hit@10" is how often that paper comes back in the top 10.

Each engine runs in two fresh processes: ``build`` (generate, index, save) and ``query`` (open the saved index,
run the queries), so the reported memory is the peak RSS of each phase on its own.

    python bench/local_search.py                          # pasa.tools.local_search over 100k records
    python bench/local_search.py --compare                # + the raw engines compared: fts5, bm25s, tantivy
    python bench/local_search.py --records 20000 --queries 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from pasa.paper import Paper

ENGINES = ("local", "fts5", "bm25s", "tantivy")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TANTIVY_PATH = os.environ.get(
    "TANTIVY_PATH", "/tmp/tantivy_pkg"
)  # where `pip install --target` put it, if not in venv
CS_TERMS = (
    "learning neural network networks model models language graph attention transformer retrieval reinforcement "
    "policy agent agents search reasoning generation training data dataset benchmark evaluation optimization "
    "gradient descent stochastic convolutional recurrent representation representations embedding embeddings "
    "contrastive self-supervised supervised unsupervised semi-supervised adversarial robustness privacy federated "
    "diffusion generative image images video speech audio text question answering translation summarization "
    "dialogue knowledge distillation pruning quantization efficient sparse dense scalable large small pretrained "
    "fine-tuning instruction alignment human feedback reward value function estimation inference bayesian "
    "probabilistic variational causal fairness interpretability explanation detection segmentation classification "
    "regression clustering recommendation ranking query queries document documents paper papers citation scientific "
    "academic multimodal vision visual object tracking pose depth point cloud 3d molecule molecular protein drug "
    "chemistry physics time series forecasting anomaly control robot robotic navigation planning multi-agent game "
    "theory bandit exploration offline online meta-learning few-shot zero-shot continual transfer domain adaptation "
    "memory long context sequence token tokens decoding sampling beam encoder decoder autoregressive masked "
    "pre-training scaling laws compute hardware accelerator gpu kernel compiler distributed parallel communication "
    "theoretical analysis convergence bounds generalization kernel methods spectral hashing index indexing compression"
).split()
STOP = (
    "the of and a to in for we is on with that this by as are an from our be which it at can our using based "
    "these both their such into show also than while more two new over its not".split()
)
CONNECTIVES = ("for", "in", "with", "using", "on", "of", "via", "and")


def make_vocab(rng: random.Random, size: int) -> list[str]:
    """Real CS terms first (the frequent ones), then pronounceable pseudo-words for the long tail."""
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"] + ["tion", "ing", "er", "al", "ic", "ous"]
    words, seen = list(CS_TERMS), set(CS_TERMS)
    while len(words) < size:
        w = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_corpus(n: int, seed: int = 0, vocab_size: int = 50_000) -> list[Paper]:
    """``n`` synthetic papers; deterministic for a seed."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    vocab = np.array(make_vocab(rng, vocab_size))
    ranks = np.arange(1, vocab_size + 1)
    p = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot
    p /= p.sum()
    title_len = np_rng.integers(5, 15, n)
    abstract_len = np_rng.integers(80, 221, n)
    words = vocab[np_rng.choice(vocab_size, size=int(title_len.sum() + abstract_len.sum()), p=p)]
    stop = np.array(STOP)
    stop_mask = np_rng.random(len(words)) < 0.4  # ~40% of a real abstract's tokens are stopwords
    words = np.where(stop_mask, stop[np_rng.integers(0, len(stop), len(words))], words)
    papers, pos = [], 0
    start = np.datetime64("2000-01-01")
    for i in range(n):
        t = " ".join(words[pos : pos + title_len[i]])
        pos += title_len[i]
        a = " ".join(words[pos : pos + abstract_len[i]])
        pos += abstract_len[i]
        day = start + np.timedelta64(int(np_rng.integers(0, 26 * 365)), "D")
        published = None if np_rng.random() < 0.05 else str(day).replace("-", "")
        arxiv_id = f"{(i // 99_999) % 100 + 10:02d}{i % 12 + 1:02d}.{i % 99_999:05d}"
        papers.append(Paper(arxiv_id, t[:1].upper() + t[1:] + ".", a, None, "SearchFrom:bench", published))
    return papers


def make_queries(papers: list[Paper], n: int, seed: int = 1) -> list[tuple[str, str | None, str]]:
    """``(query, end_date, target arxiv id)``: crawler-like queries made from one paper's words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = rng.choice(papers)
        t_words = [w for w in target.title.lower().rstrip(".").split() if w not in STOP]
        a_words = [w for w in target.abstract.split() if w not in STOP]
        words = rng.sample(t_words, min(len(t_words), rng.randint(2, 4))) + rng.sample(a_words, rng.randint(1, 3))
        words.insert(rng.randint(1, len(words) - 1), rng.choice(CONNECTIVES))
        end_date = None
        if rng.random() < 0.5:
            end_date = target.published or "20150101"
        out.append((" ".join(words), end_date, target.arxiv_id))
    return out


def _dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); returns the current RSS in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return (
        _status_mb("VmHWM")
        if os.path.exists("/proc/self/status")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )


# -- raw engines for the comparison (the library implements the winner) -----------------------------------------
class Fts5Engine:
    """SQLite FTS5: records table + external-content FTS5 over title and abstract, bm25(title x2)."""

    name = "fts5"

    @staticmethod
    def build(papers, path):
        import sqlite3

        os.makedirs(path, exist_ok=True)
        con = sqlite3.connect(os.path.join(path, "index.sqlite"))
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE papers(id INTEGER PRIMARY KEY, arxiv_id TEXT, title TEXT, abstract TEXT, published TEXT);"
            "CREATE VIRTUAL TABLE fts USING fts5(title, abstract, content='papers', content_rowid='id',"
            " tokenize='porter unicode61');"
        )
        con.executemany(
            "INSERT INTO papers VALUES (?, ?, ?, ?, ?)",
            ((i + 1, p.arxiv_id, p.title, p.abstract, p.published) for i, p in enumerate(papers)),
        )
        con.execute("INSERT INTO fts(fts) VALUES('rebuild')")
        con.execute("INSERT INTO fts(fts) VALUES('optimize')")
        con.commit()
        con.close()

    def __init__(self, path):

        self.uri = f"file:{os.path.join(path, 'index.sqlite')}?mode=ro"
        self.local = threading.local()

    def search(self, query, k, end_date):
        terms = [w for w in _terms(query)]
        if not terms:
            return []
        match = " OR ".join(f'"{w}"' for w in terms)
        sql = "SELECT p.arxiv_id FROM fts JOIN papers p ON p.id = fts.rowid WHERE fts MATCH ?"
        args = [match]
        if end_date:
            sql += " AND (p.published IS NULL OR p.published <= ?)"
            args.append(end_date)
        sql += " ORDER BY bm25(fts, 2.0, 1.0) LIMIT ?"
        if not hasattr(self.local, "con"):
            import sqlite3

            self.local.con = sqlite3.connect(self.uri, uri=True)  # one connection per thread
        return [r[0] for r in self.local.con.execute(sql, [*args, k])]


class Bm25sEngine:
    """bm25s (numpy backend): title repeated twice + abstract; end date as a score mask."""

    name = "bm25s"

    @staticmethod
    def build(papers, path):
        import bm25s

        corpus = [f"{p.title} {p.title} {p.abstract}" for p in papers]
        tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        retriever.save(path)
        pub = np.array([int(p.published) if p.published else 0 for p in papers], dtype=np.int32)
        np.save(os.path.join(path, "published.npy"), pub)
        with open(os.path.join(path, "ids.json"), "w") as f:
            json.dump([p.arxiv_id for p in papers], f)

    def __init__(self, path):
        import bm25s

        self.r = bm25s.BM25.load(path, mmap=True)
        self.pub = np.load(os.path.join(path, "published.npy"))
        with open(os.path.join(path, "ids.json")) as f:
            self.ids = json.load(f)

    def search(self, query, k, end_date):
        ids = self.r.get_tokens_ids(_terms(query))
        if not ids:
            return []
        scores = self.r.get_scores_from_ids(ids)
        if end_date:
            scores = np.where((self.pub == 0) | (self.pub <= int(end_date)), scores, 0)
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [self.ids[i] for i in top if scores[i] > 0]


class TantivyEngine:
    """tantivy: en_stem title and abstract, title boost 2, published as a fast integer field."""

    name = "tantivy"

    @staticmethod
    def _schema():
        import tantivy

        b = tantivy.SchemaBuilder()
        b.add_text_field("title", stored=False, tokenizer_name="en_stem")
        b.add_text_field("abstract", stored=False, tokenizer_name="en_stem")
        b.add_text_field("arxiv_id", stored=True, tokenizer_name="raw")
        b.add_integer_field("published", indexed=True, fast=True)
        return b.build()

    @classmethod
    def build(cls, papers, path):
        import tantivy

        os.makedirs(path, exist_ok=True)
        index = tantivy.Index(cls._schema(), path=path)
        writer = index.writer(heap_size=200_000_000, num_threads=2)
        for p in papers:
            writer.add_document(
                tantivy.Document(
                    title=p.title,
                    abstract=p.abstract,
                    arxiv_id=p.arxiv_id,
                    published=int(p.published) if p.published else 0,
                )
            )
        writer.commit()
        writer.wait_merging_threads()

    def __init__(self, path):
        import tantivy

        self.tantivy = tantivy
        self.schema = self._schema()
        self.index = tantivy.Index(self.schema, path=path)
        self.index.reload()

    def search(self, query, k, end_date):
        tv = self.tantivy
        terms = _terms(query)
        if not terms:
            return []
        q = self.index.parse_query(" ".join(terms), ["title", "abstract"], field_boosts={"title": 2.0})
        if end_date:
            rng = tv.Query.range_query(self.schema, "published", tv.FieldType.Integer, 0, int(end_date))
            q = tv.Query.boolean_query([(tv.Occur.Must, q), (tv.Occur.Must, rng)])
        searcher = self.index.searcher()
        hits = searcher.search(q, k).hits
        return [searcher.doc(addr)["arxiv_id"][0] for _, addr in hits]


def _terms(query):
    import re

    return [w for w in re.findall(r"[a-z0-9]+", query.lower()) if w not in STOP]


class LocalEngine:
    """The library: pasa.tools.local_search.LocalSearchIndex."""

    name = "local"

    @staticmethod
    def build(papers, path):
        from pasa.tools.local_search import LocalSearchIndex

        LocalSearchIndex.build(papers, path)

    def __init__(self, path):
        from pasa.tools.local_search import LocalSearchIndex

        self.index = LocalSearchIndex.load(path)

    def search(self, query, k, end_date):
        return self.index.search(query, k, end_date)


ENGINE_CLASSES = {e.name: e for e in (LocalEngine, Fts5Engine, Bm25sEngine, TantivyEngine)}


def write_corpus(papers: list[Paper], path: str) -> None:
    """The corpus as a jsonl that ``pasa index --jsonl`` reads."""
    with open(path, "w", encoding="utf-8") as f:
        for p in papers:
            f.write(json.dumps({"arxiv_id": p.arxiv_id, "title": p.title, "abstract": p.abstract,
                                "published": p.published}) + "\n")  # fmt: skip


def run_phase(engine: str, phase: str, path: str, workdir: str, threads: int) -> dict:
    """One phase of one engine in this (fresh) process; memory is the growth of the peak RSS over the phase."""
    if engine == "tantivy" and TANTIVY_PATH not in sys.path:
        sys.path.insert(0, TANTIVY_PATH)
    from pasa.tools.local_search import load_papers_jsonl

    cls = ENGINE_CLASSES[engine]
    if phase == "build":
        papers = list(load_papers_jsonl(os.path.join(workdir, "corpus.jsonl")))
        rss0 = _reset_peak_rss()
        t0 = time.perf_counter()
        cls.build(papers, path)
        return {
            "build_s": time.perf_counter() - t0,
            "size_mb": _dir_size(path) / 2**20,
            "build_rss": _peak_rss_mb() - rss0,
        }
    with open(os.path.join(workdir, "queries.json")) as f:
        qs = json.load(f)
    rss0 = _reset_peak_rss()
    t0 = time.perf_counter()
    eng = cls(path)
    eng.search("warm up query", 10, None)
    open_s = time.perf_counter() - t0
    lat, hits, dated = [], 0, []
    for q, end_date, target in qs:
        t0 = time.perf_counter()
        ids = eng.search(q, 10, end_date)
        lat.append(time.perf_counter() - t0)
        hits += target in ids
        if end_date:
            dated.append(lat[-1])
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: eng.search(item[0], 10, item[1]), qs))
    qps = len(qs) / (time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000
    return {
        "open_s": open_s,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p95_ms": float(np.percentile(lat_ms, 95)),
        "p50_dated_ms": float(np.percentile(np.array(dated) * 1000, 50)) if dated else float("nan"),
        "hit_at_10": hits / len(qs),
        "query_rss": _peak_rss_mb() - rss0,
        "qps_threads": qps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="Synthetic corpus size.")
    parser.add_argument("--queries", type=int, default=300, help="Number of timed queries.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="Also measure the raw engines (fts5, bm25s, tantivy).")
    parser.add_argument("--engines", default=None, help=f"Comma-separated subset of {','.join(ENGINES)}.")
    parser.add_argument("--workdir", default=None, help="Where indexes are written (default: a temporary folder).")
    parser.add_argument("--_phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_engine", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=8, help="Threads of the concurrent-throughput run.")
    parser.add_argument("--_path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._phase:  # child process: one phase of one engine, JSON on stdout
        print(json.dumps(run_phase(args._engine, args._phase, args._path, args.workdir, args.threads)))
        return 0

    engines = args.engines.split(",") if args.engines else (list(ENGINES) if args.compare else ["local"])
    workdir = args.workdir or tempfile.mkdtemp(prefix="pasa-bench-search-")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    papers = make_corpus(args.records, args.seed)
    write_corpus(papers, os.path.join(workdir, "corpus.jsonl"))
    with open(os.path.join(workdir, "queries.json"), "w") as f:
        json.dump(make_queries(papers, args.queries, args.seed + 1), f)
    del papers
    print(f"{args.records} synthetic records ({time.perf_counter() - t0:.0f} s to generate), {args.queries} queries "
          f"(half with an end date), seed {args.seed}, {os.cpu_count()} CPUs")  # fmt: skip
    print(
        f"{'engine':<8} {'build s':>8} {'size MB':>8} {'build RSS':>9} {'open s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p50 dated':>9} {'query RSS':>9} {'hit@10':>6} {'qps':>6}"
    )
    try:
        for engine in engines:
            path = os.path.join(workdir, engine)
            row = {}
            for phase in ("build", "query"):
                cmd = [sys.executable, os.path.abspath(__file__), "--_phase", phase, "--_engine", engine]
                cmd += ["--_path", path, "--workdir", workdir, "--threads", str(args.threads)]
                env = {**os.environ, "PYTHONPATH": REPO_ROOT}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(f"{engine}: {phase} failed:\n{proc.stderr[-2000:]}")
                    break
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                print(
                    f"{engine:<8} {row['build_s']:8.1f} {row['size_mb']:8.1f} "
                    f"{row['build_rss']:+8.0f}M {row['open_s']:7.2f} "
                    f"{row['p50_ms']:7.2f} {row['p95_ms']:7.2f} {row['p50_dated_ms']:9.2f} "
                    f"{row['query_rss']:+8.0f}M {row['hit_at_10']:6.2f} {row['qps_threads']:6.0f}"
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("build RSS / query RSS: growth of peak resident memory while building / opening + querying the index;")
    print(f"qps: queries per second from {args.threads} threads (the agent searches from a thread pool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
