"""The released local paper database: a zip of JSON files named by ``title_key(title)`` + ``id2paper.json``.

Layout (``data/paper_database/``): ``cs_paper_2nd.zip`` holds one JSON object per paper, named by the
letters-only lower-case title, with at least ``title``, ``abstract`` and ``sections`` (section name -> cited
titles); ``id2paper.json`` maps an arXiv id to a title. ``build_paper_db`` writes the same format from records,
so tests and the offline index can make small databases.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import zipfile
from collections.abc import Iterable

from pasa.io import make_temp_file
from pasa.paper import Paper, normalize_arxiv_id, title_key

logger = logging.getLogger(__name__)

SOURCE_NAME = "SearchFrom:local_paper_db"  # released source tag of papers found in the local DB


def parse_db_record(arxiv_id: str, data: dict) -> Paper:
    """[pure] One zip entry -> Paper. Raises ``KeyError`` naming the field when ``title`` is missing."""
    if "title" not in data:
        raise KeyError(f"paper DB record for {arxiv_id!r} has no 'title'")
    sections = data.get("sections")
    published = data.get("published") or data.get("published_time") or data.get("date")
    return Paper(
        arxiv_id=arxiv_id,
        title=data["title"].replace("\n", " "),
        abstract=data.get("abstract", "") or "",
        sections=sections if isinstance(sections, dict) else None,
        source=SOURCE_NAME,
        published=str(published).replace("-", "")[:8] if published else None,
        # beyond the released format (`pasa build-db`): cited arXiv ids parallel to ``sections``
        section_ids=data["section_ids"] if isinstance(data.get("section_ids"), dict) and sections else None,
    )


class PaperDBError(ValueError):
    """The paper database files are missing or damaged."""


class PaperDB:
    """Read-only access to the released database; thread-safe."""

    def __init__(self, zip_path: str, id2paper_path: str):
        try:  # a missing, truncated or foreign file is one line naming it (the runner prints it), not a traceback
            with open(id2paper_path, encoding="utf-8") as f:
                self.id2title: dict[str, str] = json.load(f)
            if not isinstance(self.id2title, dict):
                raise ValueError(f"expected a JSON object (arXiv id -> title), got {type(self.id2title).__name__}")
        except (OSError, ValueError) as err:
            raise PaperDBError(f"--id2paper {id2paper_path}: {err}") from err
        try:
            self.zip = zipfile.ZipFile(zip_path, "r")
        except (OSError, zipfile.BadZipFile) as err:
            raise PaperDBError(f"--paper_db {zip_path}: not a readable zip ({err})") from err
        self.names = set(self.zip.namelist())
        self.key2id = {title_key(t): i for i, t in self.id2title.items()}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.id2title)

    def _read(self, key: str) -> dict | None:
        if key not in self.names:
            return None
        with self._lock, self.zip.open(key) as f:
            raw = f.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            logger.warning("paper DB entry %r is not valid JSON: %s", key, err)
            return None

    def get_by_id(self, arxiv_id: str) -> Paper | None:
        arxiv_id = normalize_arxiv_id(arxiv_id)
        title = self.id2title.get(arxiv_id)
        if title is None:
            return None
        data = self._read(title_key(title))
        if data is None:
            return None
        try:
            return parse_db_record(arxiv_id, data)
        except KeyError as err:
            logger.warning("%s", err)
            return None

    def get_by_title(self, title: str) -> Paper | None:
        arxiv_id = self.key2id.get(title_key(title))
        return self.get_by_id(arxiv_id) if arxiv_id else None

    def iter_papers(self) -> Iterable[Paper]:
        for arxiv_id in self.id2title:
            paper = self.get_by_id(arxiv_id)
            if paper is not None:
                yield paper


def build_paper_db(papers: Iterable[Paper], zip_path: str, id2paper_path: str) -> int:
    """Write papers in the released format (atomically). Returns the number written."""
    id2title: dict[str, str] = {}
    os.makedirs(os.path.dirname(os.path.abspath(zip_path)), exist_ok=True)
    fd, tmp_zip = make_temp_file(os.path.dirname(os.path.abspath(zip_path)), suffix=".zip.tmp")  # umask, not 0600
    os.close(fd)
    with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in papers:
            record = {"title": p.title, "abstract": p.abstract, "sections": p.sections or {}}
            if p.published:
                record["published"] = p.published
            zf.writestr(title_key(p.title), json.dumps(record, ensure_ascii=False))
            id2title[normalize_arxiv_id(p.arxiv_id)] = p.title
    os.replace(tmp_zip, zip_path)
    from pasa.io import write_json_atomic

    write_json_atomic(id2paper_path, id2title)
    return len(id2title)
