"""Code and project links in an abstract or an arXiv comment, normalised, precision first.

"Code" is a repository or model on a code host (GitHub, GitLab, Hugging Face, Bitbucket, Zenodo); a
dataset, a venue page or the arXiv page is not. "Project" is a *.github.io page, or any other page that
the text calls a project page / website. The host lists are data: data/link_hosts.toml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel

from newsletter.registry.loader import load


class _Hosts(BaseModel):
    code_hosts: list[str]
    not_code_paths: list[str]
    project_suffixes: list[str]
    never_project: list[str]
    project_cues: list[str]
    data_cues: list[str]
    venue_cues: list[str]
    code_cues: list[str]
    not_code_repo_prefixes: list[str]


HOSTS = load(_Hosts, "link_hosts.toml")

# A URL with a scheme, or a bare "github.com/..." / "x.github.io" as abstracts sometimes write them.
_URL = re.compile(
    r"(?:https?://|www\.|\b(?:github\.com|gitlab\.com|huggingface\.co|bitbucket\.org)/|\b[\w-]+\.github\.io\b)"
    r"[^\s<>\"'{}|\\^`\]]*(?:\\_[^\s<>\"'{}|\\^`\]]*)*",
    re.IGNORECASE,
)
# Every _URL match contains one of these (lowercased): a text without any has no link, and this check is ~50x
# cheaper than the regex, whose `[\w-]+\.github\.io` branch is tried at every word (bench/ingest.py: ~7%).
_URL_HINTS = ("http", "www.", "github.com/", "gitlab.com/", "huggingface.co/", "bitbucket.org/", ".github.io")
_TRAILING = ".,;:!?)]}*'\"’”/"
_CUE_WINDOW = 60  # characters before a URL that say what it is


@dataclass(frozen=True)
class PaperLinks:
    code_url: str | None = None
    project_url: str | None = None


def _normalise(raw: str) -> str:
    url = raw.replace("\\_", "_").replace("\\%", "%").replace("\\&", "&")
    # LaTeX residue: \href{A}{B} leaves "A}{B" in the text; keep the first URL.
    url = url.split("}{", 1)[0]
    while url and (url[-1] in _TRAILING or url.endswith("\\")):
        # A closing parenthesis that closes one inside the URL belongs to it.
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    if not re.match(r"https?://", url, re.IGNORECASE):
        url = "https://" + url
    return url


def _host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def _on(host: str, names: list[str]) -> bool:
    return any(host == n or host.endswith("." + n) for n in names)


def _cues(before: str) -> tuple[str | None, set[str]]:
    """The nearest cue kind before a URL ('code', 'project', 'data', 'venue') and every kind present."""
    # Earlier URLs are not words: "github" inside one is no cue.
    text = _URL.sub(" ", before[-4 * _CUE_WINDOW :])[-_CUE_WINDOW:].casefold()
    best, nearest, present = -1, None, set()
    kinds = (("code", HOSTS.code_cues), ("project", HOSTS.project_cues))
    kinds += (("data", HOSTS.data_cues), ("venue", HOSTS.venue_cues))
    for kind, cues in kinds:
        for cue in cues:
            at = text.rfind(cue)
            if at >= 0:
                present.add(kind)
            if at > best:
                best, nearest = at, kind
    return nearest, present


def _is_code(url: str, host: str) -> bool:
    if not _on(host, HOSTS.code_hosts):
        return False
    path = urlsplit(url).path.rstrip("/") + "/"
    if any(path.lower().startswith(p) for p in HOSTS.not_code_paths):
        return False
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:  # a bare user or org page is not a repository
        return False
    return not parts[1].casefold().startswith(tuple(HOSTS.not_code_repo_prefixes))


def classify(url: str, before: str) -> str | None:
    """'code', 'project' or None for one normalised URL and the text before it."""
    host = _host(url)
    if not host or "." not in host:
        return None
    nearest, present = _cues(before)
    data_only = nearest == "data" and "code" not in present  # "code and dataset at ..." is still code
    if _is_code(url, host):
        return None if nearest == "venue" or data_only else "code"
    if _on(host, HOSTS.code_hosts) or _on(host, HOSTS.never_project):
        return None
    if ("venue" in present and nearest != "code") or data_only:
        return None
    if any(host.endswith(s) for s in HOSTS.project_suffixes) or nearest == "project":
        return "project"
    return None


def extract_links(*texts: str | None) -> PaperLinks:
    """The first code and the first project link over the texts (abstract, then comment)."""
    code = project = None
    for text in texts:
        lowered = (text or "").lower()
        if not any(hint in lowered for hint in _URL_HINTS):
            continue
        for match in _URL.finditer(text):
            url = _normalise(match.group(0))
            kind = classify(url, text[: match.start()])
            if kind == "code" and code is None:
                code = url
            elif kind == "project" and project is None:
                project = url
    return PaperLinks(code, project)
