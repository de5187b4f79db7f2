"""Throughput, memory and disk of ``pasa build-db`` on the real unarXive sample repeated to >= 10k papers.

The 49 papers of ``../shared/data/unarxive_sample`` (real full text and bibliographies, ~220 KB per paper, the
size of an average unarXive record) are written ``--copies`` times with fresh ids and titles (so nothing is
deduplicated away) into ``--files`` input files; then ``build_database`` runs in a fresh process per worker count,
and the bench reports papers/s per stage, the peak RSS of the main process and of the worker processes, and the
size of every output. It also prints the citation-title extractor's scores on the hand-read fixture and a
projection to the full corpus (~1.9 million papers).

``--assembly_memory N`` measures what the assembly stage keeps per paper (the zip's central directory, the id and
title-key sets) by writing N tiny entries: the part of the memory that grows with the corpus.

    python bench/build_db.py                         # 205 copies = 10,045 papers, workers 1 and 2
    python bench/build_db.py --copies 41 --workers 1 # 2,009 papers, quick
    python bench/build_db.py --assembly_memory 500000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO_ROOT, "..", "shared", "data", "unarxive_sample", "unarXive_data_sample.tar.gz")
FULL_CORPUS = 1_900_000  # unarXive 2022: papers


def _peak_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def make_inputs(folder: str, copies: int, files: int) -> tuple[int, int]:
    """The sample, ``copies`` times, fresh ids/titles per copy, spread over ``files`` jsonl files."""
    tmp = tempfile.mkdtemp()
    with tarfile.open(SAMPLE) as tar:
        tar.extractall(tmp, filter="data")
    src = os.path.join(tmp, "unarXive_data_sample", "arXiv_src_2212_086.jsonl")
    templates = []
    for line in open(src, encoding="utf-8"):
        record = json.loads(line)
        record["paper_id"] = record["metadata"]["id"] = "@@ID@@"
        record["metadata"]["title"] = record["metadata"]["title"] + " @@COPY@@"
        templates.append(json.dumps(record, ensure_ascii=False))
    shutil.rmtree(tmp)
    os.makedirs(folder, exist_ok=True)
    outs = [open(os.path.join(folder, f"part_{i:03d}.jsonl"), "w", encoding="utf-8") for i in range(files)]
    n = 0
    for c in range(copies):
        for t in templates:
            line = t.replace("@@ID@@", f"{5000 + c // 100:04d}.{(c % 100) * 100 + n % 100:05d}")
            line = line.replace("@@COPY@@", f"copy {_words(c)}")  # letters: the title key must differ per copy
            outs[n % files].write(line + "\n")
            n += 1
    for f in outs:
        f.close()
    return n, _size(folder)


def _words(c: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    c += 1
    while c:
        c, r = divmod(c - 1, 26)
        out = letters[r] + out
    return out


def phase_build(args) -> dict:
    from pasa.build_db import build_database

    t0 = time.perf_counter()
    result = build_database([args.inputs], args.out, workers=args.workers)
    seconds = time.perf_counter() - t0
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = args.out
    return {
        "workers": args.workers,
        "papers": result.counts["papers_written"],
        "seconds": seconds,
        "cpu_seconds": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,  # all processes
        "timings": result.timings,
        "main_peak_mb": _peak_mb(),
        "worker_peak_mb": _peak_mb(resource.RUSAGE_CHILDREN),
        "zip_mb": _size(os.path.join(out, "paper_db.zip")) / 2**20,
        "id2paper_mb": _size(os.path.join(out, "id2paper.json")) / 2**20,
        "search_index_mb": _size(os.path.join(out, "search_index")) / 2**20,
        "shards_mb": _size(os.path.join(out, ".build")) / 2**20,
        "counts": dict(result.counts),
    }


def phase_assembly_memory(args) -> dict:
    """RSS growth of the assembly's per-paper state (zip directory + id set + key dict) over N tiny entries."""
    import zipfile

    def rss() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    path = os.path.join(args.out, "mem.zip")
    os.makedirs(args.out, exist_ok=True)
    before = rss()
    seen, owner = set(), {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(args.assembly_memory):
            arxiv_id, key = (
                f"{2000 + i // 100000:04d}.{i % 100000:05d}",
                f"asyntheticpapertitleofaboutsixtyletterslong{i:x}",
            )
            seen.add(arxiv_id)
            owner[key] = arxiv_id
            zf.writestr(key, "{}")
        grown = rss() - before
    return {
        "entries": args.assembly_memory,
        "rss_growth_mb": grown,
        "bytes_per_paper": grown * 2**20 / args.assembly_memory,
    }


def _run(phase: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase] + [f"--{k}={v}" for k, v in kw.items()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def extractor_scores() -> dict:
    from pasa.tools.ar5iv import parse_metadata
    from pasa.tools.citations import extract_title, score_titles

    path = os.path.join(REPO_ROOT, "tests", "fixtures", "unarxive", "bib_titles.jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    out = {}
    for split in ("dev", "heldout", "heldout2", "all"):
        part = [r for r in rows if split == "all" or r["split"] == split]
        out[split] = score_titles([(extract_title(r["raw"]), r["title"]) for r in part])
        out[f"{split}_released_split"] = score_titles([(parse_metadata([r["raw"]]).title, r["title"]) for r in part])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=205, help="times the 49-paper sample is repeated")
    parser.add_argument("--files", type=int, default=8, help="input files the papers are spread over")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    parser.add_argument("--assembly_memory", type=int, default=0)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, REPO_ROOT)
        if args.phase == "build":
            args.workers = int(args.workers)
            print(json.dumps(phase_build(args)))
        else:
            print(json.dumps(phase_assembly_memory(args)))
        return
    sys.path.insert(0, REPO_ROOT)
    tmp = tempfile.mkdtemp(prefix="bench-build-db-")
    try:
        if args.assembly_memory:
            print(json.dumps(_run("assembly", out=tmp, assembly_memory=args.assembly_memory), indent=1))
            return
        print("extractor (hand-read unarXive strings):")
        for name, s in extractor_scores().items():
            print(f"  {name:<22} n={s['n']:<4} EM {s['exact_match']:.3f}  titled: EM {s['exact_match_titled']:.3f} "
                  f"F1 {s['token_f1_titled']:.3f}  no-title acc {s['no_title_acc']:.3f}")  # fmt: skip
        if not os.path.isfile(SAMPLE):
            print(f"no unarXive sample at {SAMPLE}; build bench skipped")
            return
        inputs = os.path.join(tmp, "in")
        t0 = time.perf_counter()
        n, size = make_inputs(inputs, args.copies, args.files)
        print(f"inputs: {n} papers in {args.files} files, {size / 2**20:.0f} MiB ({time.perf_counter() - t0:.0f} s)")
        for workers in [int(w) for w in args.workers.split(",")]:
            out = os.path.join(tmp, f"out{workers}")
            r = _run("build", inputs=inputs, out=out, workers=workers)
            t = r["timings"]
            print(json.dumps({k: v for k, v in r.items() if k != "counts"}))
            print(
                f"workers {workers}: {r['papers']} papers in {r['seconds']:.1f} s = {r['papers'] / r['seconds']:.0f} "
                f"papers/s (convert {r['papers'] / t['convert']:.0f}/s, assemble {r['papers'] / t['assemble']:.0f}/s,"
                f" search index {r['papers'] / max(t['search_index'], 1e-9):.0f}/s); peak RSS main "
                f"{r['main_peak_mb']:.0f} MiB, workers {r['worker_peak_mb']:.0f} MiB; zip {r['zip_mb']:.1f} MiB, "
                f"id2paper {r['id2paper_mb']:.2f} MiB, search index {r['search_index_mb']:.1f} MiB, "
                f"shards {r['shards_mb']:.1f} MiB"
            )
            print(f"  CPU time, all processes: {r['cpu_seconds']:.1f} s = {r['papers'] / r['cpu_seconds']:.0f} papers per "
                  f"CPU-second (wall is longer when other jobs share the cores)")  # fmt: skip
            # projection from CPU time, which (unlike wall time) does not depend on what else shares the cores
            cpu_h = r["cpu_seconds"] / r["papers"] * FULL_CORPUS / 3600
            tail = (t["assemble"] + t["search_index"]) / r["seconds"]  # single-process share of the wall time
            disk = (r["zip_mb"] + r["id2paper_mb"] + r["search_index_mb"]) / r["papers"] * FULL_CORPUS / 1024
            print(
                f"  projection to {FULL_CORPUS:,} papers: {cpu_h:.1f} CPU-hours in all; with W free cores about "
                f"{cpu_h * (1 - tail):.1f}/W h converting + {cpu_h * tail:.1f} h assembling and indexing; output "
                f"{disk:.1f} GiB (+ shards {r['shards_mb'] / r['papers'] * FULL_CORPUS / 1024:.1f} GiB until "
                f"--keep_work false)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
