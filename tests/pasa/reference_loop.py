"""A sequential reference of the agent loop, for differential tests of the streaming ``PaperAgent``.

Written from the algorithm (DESIGN §1.1) and the released ``paper_agent.py``'s structure (search, then per layer:
sections, one crawler batch, per expanded paper its references in order), one step after the other, no threads.
With ``AgentConfig(released_behaviour=True)`` it is the released loop in the fixed thread order the project
documents (query order, queue order); the individual flags switch each row of docs/released_differences.md.
Failure bookkeeping is not modelled: the worlds used with it never fail.
"""

from __future__ import annotations

from pasa.agent import AgentConfig
from pasa.paper import PaperNode, normalize_arxiv_id, sort_by_score
from pasa.prompts import (
    EXPAND_RE,
    parse_search_queries,
    render_expand_prompt,
    render_search_prompt,
    render_select_prompt,
)
from pasa.tools.sources import published_before


def reference_run(crawler_llm, selector_llm, source, cfg: AgentConfig, user_query: str, end_date=None) -> PaperNode:
    root = PaperNode.root(user_query)
    extra = root.extra
    queue: list[PaperNode] = []

    def touch(arxiv_id: str) -> bool:
        if arxiv_id in extra["touch_ids"]:
            return False
        extra["touch_ids"].append(arxiv_id)
        return True

    def keep(paper) -> bool:
        return paper is not None and (not cfg.filter_by_end_date or published_before(paper, end_date))

    def add(parent, found, depth, tag):
        """Score ``(paper, title shown to the selector, resolved_by, child key)`` in one batch and attach them."""
        prompts = [render_select_prompt(user_query, shown, p.abstract) for p, shown, _, _ in found]
        scores = selector_llm.true_prob(prompts) if prompts else []
        for (p, _, how, key), score in zip(found, scores, strict=True):
            extra["crawler_recall_papers"].append(p.title)
            if score > 0.5:
                extra["recall_papers"].append(p.title)
            node = PaperNode.from_paper(p, depth=depth, source=f"{tag} {p.source}", score=score)
            if how:
                node.extra["resolved_by"] = how
            parent.child.setdefault(key, []).append(node)
            if parent is not root:
                parent.extra["expand"] = "success"
            queue.append(node)

    # search: every query's child list exists before any search returns (the released threads set it on start)
    (reply,) = crawler_llm.generate([render_search_prompt(user_query)])
    queries = parse_search_queries(reply, cfg.query_limit, cfg.keep_empty_queries)
    queries = [q[: cfg.max_query_chars].rstrip() if cfg.max_query_chars else q for q in queries]
    for q in queries:
        root.child[q] = []
    for q in dict.fromkeys(queries):
        found = []
        for arxiv_id in source.search(q, cfg.search_papers, end_date):
            arxiv_id = normalize_arxiv_id(arxiv_id)
            if touch(arxiv_id):
                paper = source.get_by_id(arxiv_id)
                if keep(paper):
                    found.append((paper, paper.title, None, q))
        add(root, found, 0, "Search")

    expand_start = 0
    for depth in range(cfg.expand_layers):
        layer = sort_by_score(queue[expand_start:])
        queue[expand_start:] = layer
        if depth > 0:
            layer = layer[: cfg.expand_papers]
        expand_start = len(queue)
        asked = []
        for node in layer:
            fetch = not isinstance(node.sections, dict) or (not node.sections and cfg.refetch_empty_sections)
            if fetch:
                sections = source.get_sections(node.arxiv_id)
                if sections:
                    node.sections, node.section_ids = sections, None
                elif cfg.keep_failed_sections:
                    node.sections = sections
                if not sections:
                    node.extra["expand"] = "get full paper error"
                    continue
            node.extra["expand"] = "not expand"
            asked.append(node)
        prompts = [render_expand_prompt(user_query, n.title, n.abstract, list(n.sections)) for n in asked]
        replies = crawler_llm.generate(prompts) if prompts else []
        for node, reply in zip(asked, replies, strict=True):
            found = []
            for section in EXPAND_RE.findall(reply):
                section = section.strip()
                if section not in node.sections:
                    continue
                ids = (node.section_ids or {}).get(section) if cfg.resolve_citations_by_id else None
                for i, cited in enumerate(node.sections[section]):
                    paper, how = None, "title"
                    if ids is not None and i < len(ids) and ids[i]:
                        paper, how = source.get_by_id(normalize_arxiv_id(ids[i])), "id"
                    if paper is None:
                        paper, how = source.get_by_title(cited), "title"
                    if paper is None or not touch(normalize_arxiv_id(paper.arxiv_id)) or not keep(paper):
                        continue
                    shown = cited if cfg.selector_sees_cited_title else paper.title
                    found.append((paper, shown, how, section))
            add(node, found, depth + 1, "Expand")  # one selector batch per expanded paper (released)
    return root
