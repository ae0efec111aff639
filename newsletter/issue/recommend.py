"""The "For you" pick (#11): rank an issue's papers by how close their title + abstract are to a reader's
interests (keywords and seed papers), with the terms that matched as the reason.

TF-IDF over words and word pairs (scikit-learn, as arxiv-sanity does), fitted once per issue on the issue's
papers plus an optional background of recent papers from the store (a steadier IDF than ~50 documents give).
A reader's profile is the normalised mean of their seed papers' vectors plus their keywords' vector, normalised;
a paper's score is its cosine similarity with the profile. Every reader of a batch is scored in a few sparse
matrix products (`Ranker.rank`), so a pick costs well under a millisecond per reader (bench/render.py).
Seed papers that are in the issue are never picked (the reader has them already).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import IssueItem, Paper
from newsletter.records import Issue, IssuePaper

REASON_TERMS = 3  # terms shown as the reason of a pick
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})(?:v\d+)?")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Seed:
    """A paper the reader liked: an arXiv id (its text then comes from the store) and/or a title and abstract."""

    arxiv_id: str | None = None
    title: str = ""
    abstract: str = ""

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract}".strip()

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("arxiv_id", self.arxiv_id), ("title", self.title), ("abstract", self.abstract)) if v}

    @classmethod
    def of(cls, raw: Mapping[str, str] | str) -> Seed:
        if isinstance(raw, str):
            return cls(arxiv_id=arxiv_id(raw))
        return cls(arxiv_id(raw.get("arxiv_id") or "") or None, raw.get("title") or "", raw.get("abstract") or "")


@dataclass(frozen=True)
class Interests:
    keywords: str = ""
    seeds: tuple[Seed, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keywords.strip() or self.seeds)

    @classmethod
    def of(cls, keywords: str | None, seeds: Iterable[Mapping[str, str] | str] | None) -> Interests:
        return cls(keywords or "", tuple(Seed.of(s) for s in seeds or ()))


class Doc(Protocol):
    """What ranking needs of a paper (an `IssuePaper` qualifies)."""

    paper_id: int
    arxiv_id: str | None
    title: str
    abstract: str


@dataclass(frozen=True)
class StoredDoc:
    paper_id: int
    arxiv_id: str | None
    title: str
    abstract: str


@dataclass(frozen=True)
class Pick:
    paper_id: int
    arxiv_id: str | None
    title: str
    score: float
    terms: tuple[str, ...]

    @property
    def reason(self) -> str:
        return ", ".join(self.terms)


def arxiv_id(raw: str) -> str | None:
    """'2401.01234' out of '2401.01234v2', 'arXiv:2401.01234', an abs/pdf URL or a DOI 10.48550/arXiv.2401.01234."""
    m = _ARXIV_ID.search(raw or "")
    return m.group(1) if m else None


def paper_text(title: str | None, abstract: str | None) -> str:
    return _WS.sub(" ", f"{title or ''} {abstract or ''}").strip()


class Ranker:
    """TF-IDF over one issue's papers; `rank()` scores many readers at once."""

    def __init__(
        self,
        papers: Sequence[Doc],
        background: Sequence[str] = (),
        seed_texts: Mapping[str, str] | None = None,
    ) -> None:
        self.papers = list(papers)
        texts = [paper_text(p.title, p.abstract) for p in self.papers]
        corpus = texts + [t for t in background if t]
        self.vectorizer = TfidfVectorizer(
            stop_words="english",
            ngram_range=(1, 2),
            sublinear_tf=True,
            max_df=0.5 if len(corpus) >= 20 else 1.0,  # words in half the papers say nothing about a reader
        )
        if any(t.strip() for t in corpus):
            try:
                self.vectorizer.fit(corpus)
            except ValueError:  # only stop words (or nothing) left: nothing can match
                self.vectorizer = None
        else:
            self.vectorizer = None
        self.features = self.vectorizer.get_feature_names_out() if self.vectorizer else np.array([])
        # The hot path vectorises by hand (same result as vectorizer.transform: sublinear tf x idf, L2 rows):
        # sklearn's transform costs ~5 ms a call in validation alone, a batch of 50 readers 0.1 ms each.
        self._analyze = self.vectorizer.build_analyzer() if self.vectorizer else None
        self._vocab = self.vectorizer.vocabulary_ if self.vectorizer else {}
        self._idf = self.vectorizer.idf_.astype(np.float64) if self.vectorizer else np.array([])
        self._words = [frozenset(f.split()) for f in self.features]
        self.matrix = self._vectorize(texts)
        # Dense (terms x papers, float32: a few MB for a day): a sparse-times-dense product scores a batch fastest.
        self.matrix_t = self.matrix.T.astype(np.float32).toarray()
        self.index = {p.arxiv_id: i for i, p in enumerate(self.papers) if p.arxiv_id}
        self.seed_texts = dict(seed_texts or {})
        self._seed_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, L2-normalised weights) of one text."""
        counts: dict[int, int] = {}
        vocab = self._vocab
        for term in self._analyze(text) if self._analyze and text else ():
            j = vocab.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        idx = np.fromiter(counts, dtype=np.int32, count=len(counts))
        data = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self._idf[idx]
        norm = float(np.sqrt(data @ data)) if len(data) else 0.0
        return idx, (data / norm if norm else data)

    def _vectorize(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return _rows_csr([self._row(t) for t in texts], len(self.features))

    def _seed_key_text(self, seed: Seed) -> tuple[str, str] | None:
        """A cache key and the text of a seed; None when there is no text for it anywhere."""
        if seed.arxiv_id:
            if seed.arxiv_id in self.index:
                i = self.index[seed.arxiv_id]
                return f"id:{seed.arxiv_id}", paper_text(self.papers[i].title, self.papers[i].abstract)
            if self.seed_texts.get(seed.arxiv_id):
                return f"id:{seed.arxiv_id}", self.seed_texts[seed.arxiv_id]
        return (f"t:{seed.text}", seed.text) if seed.text else None

    def _seed(self, key: str, text: str) -> tuple[np.ndarray, np.ndarray]:
        row = self._seed_cache.get(key)
        if row is None:
            row = self._seed_cache[key] = self._row(text)
        return row

    def profiles(self, readers: Sequence[Interests]) -> sparse.csr_matrix:
        """One L2-normalised row per reader (all zero for a reader whose interests share no term with the issue)."""
        n, n_feat = len(readers), len(self.features)
        if not n_feat or not readers:
            return sparse.csr_matrix((n, n_feat), dtype=np.float64)
        parts, weights, owners = [], [], []
        for i, r in enumerate(readers):
            seeds = [self._seed(*kt) for s in r.seeds if (kt := self._seed_key_text(s))]
            for row in seeds:  # the seed mean
                parts.append(row)
                weights.append(1.0 / len(seeds))
                owners.append(i)
        seed_part = _l2(_csr(parts, weights, owners, n, n_feat))
        kw_part = _rows_csr([self._row(r.keywords) for r in readers], n_feat)
        return _l2((seed_part + kw_part).tocsr())

    def rank(
        self,
        readers: Sequence[Interests],
        top: int,
        allowed: Sequence[np.ndarray | None] | None = None,
    ) -> list[list[Pick]]:
        """Best first, at most `top` papers with a score above zero, for each reader. `allowed[i]`: a boolean mask
        over the papers reader i may be offered (their variant's papers), None for all."""
        if not readers or not self.papers or top <= 0:
            return [[] for _ in readers]
        prof = self.profiles(readers)
        scores = np.asarray(prof @ self.matrix_t, dtype=np.float64)
        if allowed is not None:  # only the papers of each reader's variant
            everything = np.ones(len(self.papers), dtype=bool)
            scores[~np.stack([everything if a is None else a for a in allowed])] = 0.0
        for i, r in enumerate(readers):  # never offer a reader their own seed papers
            own = [self.index[s.arxiv_id] for s in r.seeds if s.arxiv_id in self.index]
            if own:
                scores[i, own] = 0.0
        # Best first; ties by issue order (stable sort on the negated scores): deterministic.
        best = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        keep = np.take_along_axis(scores, best, axis=1) > 0
        rows, ranks = np.nonzero(keep)  # row-major: each reader's picks, best first
        pairs = [(int(i), int(best[i, k])) for i, k in zip(rows.tolist(), ranks.tolist(), strict=True)]
        terms = self._terms(prof, pairs)
        out: list[list[Pick]] = [[] for _ in readers]
        for (i, j), t in zip(pairs, terms, strict=True):
            p = self.papers[j]
            out[i].append(Pick(p.paper_id, p.arxiv_id, p.title, round(float(scores[i, j]), 4), t))
        return out

    def _terms(self, prof: sparse.csr_matrix, pairs: list[tuple[int, int]]) -> list[tuple[str, ...]]:
        """For each (reader, paper): the terms contributing most to the score, pairs before their own words."""
        if not pairs:
            return []
        rows = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
        cols = np.fromiter((j for _, j in pairs), dtype=np.int64, count=len(pairs))
        contrib = prof[rows].multiply(self.matrix[cols]).tocsr()  # one row per pair: term-wise products
        contrib.eliminate_zeros()
        contrib.sort_indices()
        owner = np.repeat(np.arange(len(pairs), dtype=np.float64), np.diff(contrib.indptr))
        # One sort for all pairs: by pair, then contribution (largest first; each is at most 1), then term (a
        # stable sort keeps the ascending term order of equal contributions: deterministic).
        order = np.argsort(owner * 2.0 - contrib.data, kind="stable")
        ranked = contrib.indices[order]
        starts, counts = contrib.indptr[:-1], np.diff(contrib.indptr)
        return [
            self._distinct(ranked[a : a + min(c, 4 * REASON_TERMS)].tolist())
            for a, c in zip(starts.tolist(), counts.tolist(), strict=True)
        ]

    def _distinct(self, ranked: list[int]) -> tuple[str, ...]:
        """Up to REASON_TERMS terms, a word left out when a chosen pair already says it ("gaussian splatting",
        not also "splatting"), and a word replaced by the pair that contains it."""
        words, chosen, used = self._words, [], set()
        for j in ranked:
            w = words[j]
            if len(w) == 1:
                if w <= used:  # a word some chosen term already contains
                    continue
            elif w in (words[c] for c in chosen):
                continue
            else:
                chosen = [c for c in chosen if not words[c] <= w]
            chosen.append(j)
            used |= w
            if len(chosen) == REASON_TERMS:
                break
        return tuple(str(self.features[j]) for j in chosen)


def _csr(
    rows: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float], owners: Sequence[int], n: int, m: int
) -> sparse.csr_matrix:
    """An n x m matrix: row owners[k] += weights[k] * rows[k] (rows given as (indices, data))."""
    if not rows:
        return sparse.csr_matrix((n, m), dtype=np.float64)
    lengths = [len(r[0]) for r in rows]
    idx = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([r[1] * w for r, w in zip(rows, weights, strict=True)])
    owner = np.repeat(np.asarray(owners, dtype=np.int64), lengths)
    return sparse.csr_matrix((data, (owner, idx)), shape=(n, m))  # duplicates are summed


def _rows_csr(rows: Sequence[tuple[np.ndarray, np.ndarray]], m: int) -> sparse.csr_matrix:
    """One matrix row per (indices, data), built directly (no duplicates to sum)."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
    if not indptr[-1]:
        return sparse.csr_matrix((len(rows), m), dtype=np.float64)
    idx = np.concatenate([r[0] for r in rows])
    data = np.concatenate([r[1] for r in rows])
    return sparse.csr_matrix((data, idx, indptr), shape=(len(rows), m))


def _l2(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows scaled to unit length (zero rows stay zero); sklearn's normalize() without its validation cost."""
    m = m.tocsr()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    m.data /= np.repeat(norms, np.diff(m.indptr))
    return m


def _distinct_terms(ranked: Iterable[str]) -> tuple[str, ...]:
    """`Ranker._distinct` over term strings (kept for tests and callers holding terms, not indices)."""
    chosen: list[str] = []
    for term in ranked:
        words = set(term.split())
        if any(words <= set(c.split()) for c in chosen):
            continue
        chosen = [c for c in chosen if not set(c.split()) <= words]
        chosen.append(str(term))
        if len(chosen) == REASON_TERMS:
            break
    return tuple(chosen)


# ---- from the store --------------------------------------------------------------------------------------


def issue_papers(issue: Issue) -> list[IssuePaper]:
    """Every paper the issue features (highlights, then sections), each once, in issue order."""
    seen: set[int] = set()
    out = []
    for p in [h.paper for h in issue.highlights] + [p for s in issue.sections for p in s.papers]:
        if p.paper_id not in seen:
            seen.add(p.paper_id)
            out.append(p)
    return out


def stored_issue_docs(session: Session, issue_id: int) -> list[StoredDoc]:
    """The papers a stored issue features, highlights first then in issue order (what senders rank)."""
    rows = session.execute(
        select(Paper.id, Paper.arxiv_id, Paper.title, Paper.abstract)
        .join(IssueItem, IssueItem.paper_id == Paper.id)
        .where(IssueItem.issue_id == issue_id)
        .order_by((IssueItem.role != "highlight"), IssueItem.position, Paper.id)
    )
    seen: set[int] = set()
    out = []
    for pid, aid, title, abstract in rows:
        if pid not in seen:
            seen.add(pid)
            out.append(StoredDoc(pid, aid, title or "", abstract or ""))
    return out


def seed_texts(session: Session, ids: Iterable[str], chunk: int = 500) -> dict[str, str]:
    """Title + abstract of the seed papers the store has, by arXiv id."""
    ids = sorted({i for i in ids if i})
    out: dict[str, str] = {}
    for k in range(0, len(ids), chunk):
        rows = session.execute(
            select(Paper.arxiv_id, Paper.title, Paper.abstract).where(Paper.arxiv_id.in_(ids[k : k + chunk]))
        )
        out.update({a: paper_text(t, ab) for a, t, ab in rows})
    return out


def ranker_for(session: Session, issue: Issue, readers: Iterable[Interests] = ()) -> Ranker:
    """A Ranker over the issue's papers, knowing the store's text of the readers' seed papers."""
    ids = {s.arxiv_id for r in readers for s in r.seeds if s.arxiv_id and not (s.title or s.abstract)}
    return Ranker(issue_papers(issue), seed_texts=seed_texts(session, ids))
