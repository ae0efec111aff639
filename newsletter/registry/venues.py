"""Venue acceptance read from an arXiv comment: "Accepted to CVPR 2024 (Oral)" -> CVPR, 2024, oral.

Comments are free text written by authors, so the reader works in passes over a normalised copy:

1. strip what must never count (URLs, arXiv ids, DOIs) and split the text into sentence-like segments;
2. find venue mentions from a registry of ~250 venues (aliases through one trie regex; full names through a
   trie of keywords that says which few full-name patterns are worth trying);
3. find cues: acceptance ("accepted", "to appear", "Proceedings of"...) and negation ("submitted",
   "under review", "extended version of", "challenge", "technical report"...);
4. give each mention the polarity of the nearest cue that governs it (a bare "CVPR 2024" counts as
   accepted, as is the arXiv custom) and keep the best accepted mention; an unknown venue named right after
   an acceptance phrase is read as written ("accepted in npj Precision Oncology").

Everything is compiled once at import and answers are cached: this runs for every paper sighting.
`score()` measures a labelled JSONL set; `python -m newsletter.registry.venues FILE.jsonl` prints it with the misses.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from newsletter.records import Venue

# ---- the registry ----------------------------------------------------------------------------------------
# One venue a line: canonical :: kind :: aliases :: full names; a line starting with spaces and ";" adds more
# full names to the venue above it.
#   kind: c conference, j journal, w a workshop that is a venue in its own right (its track is "workshop").
#   aliases (";"-separated) match case-insensitively, with spaces/hyphens optional ("ACM MM" = "ACMMM");
#     "!" = case-sensitive (short or word-like: TIP, CHI); "~" = case-sensitive and *strict*: ordinary words
#     or very short tokens (Nature, Sensors, PG, MM) that count only with a year attached, right after an
#     acceptance phrase ("published in Nature"), or standing alone as a comma-separated item.
#   full names (";"-separated) are case-insensitive regexes where a space means any whitespace and
#     "Transactions on" also matches "Trans. on"; "~" marks a generic phrase ("Pattern Recognition") that is
#     case-sensitive and strict as above.
_REGISTRY = r"""
CVPR :: c :: CVPR;CVPRW :: Computer Vision and Pattern Recognition(?: Conference)?
ICCV :: c :: ICCV;ICCVW :: International Conference on Computer Visi?on(?! Theory| Systems| and| in)
ECCV :: c :: ECCV;ECCVW :: European Conference on Computer Visi?on
WACV :: c :: WACV;WACVW :: Winter Conference on (?:the )?Applications? of Computer Visi?on
BMVC :: c :: BMVC :: British Machine Vision Conference
ACCV :: c :: ACCV :: Asian Conference on Computer Visi?on
3DV :: c :: 3DV :: Conference on 3D Vision
ICPR :: c :: ICPR :: International Conference on Pattern Recognition(?! Applications)
GCPR :: c :: GCPR :: German Conference on Pattern Recognition
    ;DAGM German Conference on Pattern Recognition
ICIP :: c :: ICIP :: International Conference on Image Processing(?! Theory)
ICME :: c :: ICME :: International Conference on Multimedia (?:and|&) Expo
VCIP :: c :: VCIP :: Visual Communications and Image Processing
ICASSP :: c :: ICASSP :: International Conference on Acoustics,? Speech,? and Signal Processing
DICTA :: c :: DICTA :: Digital Image Computing:? Techniques and Applications
CRV :: c :: !CRV :: Conference on (?:Computer and )?Robots? (?:and )?Vision
ACPR :: c :: ACPR :: Asian Conference on Pattern Recognition
PRCV :: c :: PRCV :: Chinese Conference on Pattern Recognition and Computer Vision
ISVC :: c :: ISVC :: International Symposium on Visual Computing
ICVGIP :: c :: ICVGIP :: Indian Conference on Computer Vision,? Graphics and Image Processing
ICIAP :: c :: ICIAP :: International Conference on Image Analysis and Processing
SCIA :: c :: !SCIA :: Scandinavian Conference on Image Analysis
CAIP :: c :: !CAIP :: International Conference on Computer Analysis of Images and Patterns
VISAPP :: c :: VISAPP;VISIGRAPP :: International Conference on Computer Vision Theory and Applications
ICPRAM :: c :: ICPRAM :: International Conference on Pattern Recognition Applications and Methods
ICVS :: c :: !ICVS :: International Conference on Computer Vision Systems
ICCP :: c :: !ICCP :: International Conference on Computational Photography
ICDAR :: c :: ICDAR :: International Conference on Document Analysis and Recognition
DAS :: c :: ~DAS :: International Workshop on Document Analysis Systems
ICFHR :: c :: ICFHR :: International Conference on Frontiers in Handwriting Recognition
FG :: c :: ~FG;IEEE FG :: Automatic Face and Gesture Recognition
IJCB :: c :: IJCB :: International Joint Conference on Biometrics
BIOSIG :: c :: BIOSIG :: International Conference of the Biometrics Special Interest Group
WIFS :: w :: WIFS :: International Workshop on Information Forensics and Security
AVSS :: c :: AVSS :: Advanced Video and Signal[-\s]Based Surveillance
ICMR :: c :: ICMR;ACM ICMR :: International Conference on Multimedia Retrieval
MMM :: c :: !MMM :: International Conference on Multi-?Media Modell?ing
ACM MM :: c :: ACM MM;ACMMM;ACM Multimedia;~MM ::
    ;ACM International Conference on Multimedia(?! Retrieval| Asia| in)
ACM MM Asia :: c :: ACM MM Asia;ACMMM Asia;MMAsia;ACM Multimedia Asia :: ACM Multimedia Asia
ICMI :: c :: ICMI :: International Conference on Multimodal Interaction
ACII :: c :: ACII :: International Conference on Affective Computing and Intelligent Interaction
NeurIPS :: c :: NeurIPS;NIPS;NeurIPSW ::
    ;Conference on Neural Information Processing Systems
    ;Neural Information Processing Systems
ICML :: c :: ICML;ICMLW :: International Conference on Machine Learning(?! and| for| in| Applications)
ICLR :: c :: ICLR;ICLRW :: International Conference on Learning Representations
AAAI :: c :: AAAI :: AAAI Conference on Artificial Intelligence
    ;Association for the Advancement of Artificial Intelligence
IJCAI :: c :: IJCAI :: International Joint Conference on Artificial Intelligence
AISTATS :: c :: AISTATS :: International Conference on Artificial Intelligence and Statistics
UAI :: c :: UAI :: Conference on Uncertainty in Artificial Intelligence
COLT :: c :: !COLT :: Conference on Learning Theory
ALT :: c :: ~ALT :: International Conference on Algorithmic Learning Theory
L4DC :: c :: L4DC :: Learning for Dynamics (?:and|&) Control
ECAI :: c :: ECAI :: European Conference on Artificial Intelligence
ECML PKDD :: c :: ECML PKDD;ECMLPKDD;ECML :: European Conference on Machine Learning
ACML :: c :: ACML :: Asian Conference on Machine Learning
IJCNN :: c :: IJCNN :: International Joint Conference on Neural Networks
ICANN :: c :: ICANN :: International Conference on Artificial Neural Networks
ICONIP :: c :: ICONIP :: International Conference on Neural Information Processing(?! Systems)
COLM :: c :: !COLM :: Conference on Language Modeling
CoLLAs :: c :: !CoLLAs :: Conference on Lifelong Learning Agents
LoG :: c :: !LoG :: Learning on Graphs Conference
AAMAS :: c :: AAMAS :: International Conference on Autonomous Agents and Multi-?agent Systems
ICTAI :: c :: ICTAI :: International Conference on Tools with Artificial Intelligence
ICMLA :: c :: ICMLA :: International Conference on Machine Learning and Applications
CPAL :: c :: !CPAL :: Conference on Parsimony and Learning
MLSys :: c :: MLSys :: Conference on Machine Learning and Systems
TMLR :: j :: TMLR :: Transactions on Machine Learning Research
JMLR :: j :: JMLR :: Journal of Machine Learning Research
PAKDD :: c :: PAKDD :: Pacific-Asia Conference on Knowledge Discovery and Data Mining
KDD :: c :: KDD;SIGKDD;ACM SIGKDD :: Conference on Knowledge Discovery and Data Mining
WWW :: c :: !WWW;TheWebConf;The Web Conference;Web Conference ::
    ;World Wide Web Conference
    ;ACM Web Conference
SIGIR :: c :: SIGIR :: Conference on Research and Development in Information Retrieval
WSDM :: c :: WSDM :: International Conference on Web Search and Data Mining
CIKM :: c :: CIKM :: International Conference on Information and Knowledge Management
ICDM :: c :: ICDM :: International Conference on Data Mining
SDM :: c :: !SDM :: SIAM International Conference on Data Mining;SIAM Data Mining
ICDE :: c :: ICDE :: International Conference on Data Engineering
VLDB :: c :: VLDB;PVLDB :: International Conference on Very Large Data Bases
SIGMOD :: c :: SIGMOD ::
RecSys :: c :: RecSys :: ACM Conference on Recommender Systems
IEEE BigData :: c :: IEEE BigData;IEEE Big Data;BigData :: IEEE International Conference on Big Data
SMC :: c :: !SMC;IEEE SMC :: International Conference on Systems,? Man,? and Cybernetics
ACL :: c :: ACL :: Annual Meeting of the Association for Computational Linguistics
    ;Association for Computational Linguistics
EMNLP :: c :: EMNLP :: Empirical Methods in Natural Language Processing
NAACL :: c :: NAACL :: North American Chapter of the Association for Computational Linguistics
EACL :: c :: EACL :: European Chapter of the Association for Computational Linguistics
AACL :: c :: AACL;AACL-IJCNLP :: Asia-Pacific Chapter of the Association for Computational Linguistics
COLING :: c :: COLING :: International Conference on Computational Linguistics
CoNLL :: c :: CoNLL :: Conference on Computational Natural Language Learning
LREC :: c :: LREC;LREC-COLING :: Language Resources and Evaluation Conference
    ;International Conference on Language Resources and Evaluation
TACL :: j :: TACL :: Transactions of the Association for Computational Linguistics
INLG :: c :: INLG :: International Natural Language Generation Conference
SIGDIAL :: c :: SIGDIAL ::
Interspeech :: c :: Interspeech ::
ASRU :: c :: ASRU :: Automatic Speech Recognition and Understanding Workshop
SLT :: c :: ~SLT :: Spoken Language Technology Workshop
EUSIPCO :: c :: EUSIPCO :: European Signal Processing Conference
WASPAA :: c :: WASPAA :: Workshop on Applications of Signal Processing to Audio and Acoustics
ISMIR :: c :: ISMIR :: International Society for Music Information Retrieval Conference
TASLP :: j :: TASLP :: Transactions on Audio,? Speech,? and Language Processing
SPL :: j :: !SPL;IEEE SPL :: ~Signal Processing Letters
TSP :: j :: !TSP :: Transactions on Signal Processing
JSTSP :: j :: JSTSP :: Journal of Selected Topics in Signal Processing
SIGGRAPH :: c :: SIGGRAPH;ACM SIGGRAPH :: ACM SIGGRAPH Conference
SIGGRAPH Asia :: c :: SIGGRAPH Asia;ACM SIGGRAPH Asia;!SA Conference Papers ::
TOG :: j :: !TOG;ACM TOG;ACM Trans. Graph;ACM Trans Graph :: Transactions on Graphics
TVCG :: j :: TVCG;IEEE TVCG;IEEE Trans Vis Comput Graph :: Transactions on Visuali[sz]ation and Computer Graphics
CGF :: j :: !CGF;Comput Graph Forum :: Computer Graphics Forum
Eurographics :: c :: Eurographics;~EG :: Annual Conference of the European Association for Computer Graphics
EGSR :: c :: EGSR :: Eurographics Symposium on Rendering
SGP :: c :: !SGP :: Symposium on Geometry Processing
PG :: c :: ~PG;Pacific Graphics :: Pacific Conference on Computer Graphics and Applications
HPG :: c :: !HPG :: High-?\s*Performance Graphics
I3D :: c :: !I3D :: Symposium on Interactive 3D Graphics(?: and Games)?
SCA :: c :: !SCA :: Symposium on Computer Animation
MIG :: c :: !MIG;ACM SIGGRAPH MIG;SIGGRAPH MIG :: Conference on Motion,? Interaction,? and Games
    ;Motion,? Interaction,? and Games
IEEE VIS :: c :: IEEE VIS;~VIS :: IEEE Visuali[sz]ation Conference
EuroVis :: c :: EuroVis :: Eurographics Conference on Visuali[sz]ation
Computers & Graphics :: j :: !C&G :: Computers (?:&|and) Graphics
CG&A :: j :: !CG&A :: IEEE Computer Graphics and Applications
CVM :: j :: !CVM :: Computational Visual Media
SMI :: c :: !SMI :: Shape Modeling International
GMP :: c :: !GMP :: Geometric Modeling and Processing
Graphics Interface :: c :: Graphics Interface ::
The Visual Computer :: j :: !TVC :: The Visual Computer
IEEE VR :: c :: IEEE VR;IEEEVR;~VR :: IEEE Conference on Virtual Reality and 3D User Interfaces
    ;IEEE Virtual Reality(?: Conference)?
ISMAR :: c :: ISMAR :: International Symposium on Mixed and Augmented Reality
VRST :: c :: VRST :: Symposium on Virtual Reality Software and Technology
AIVR :: c :: AIVR;IEEE AIVR :: International Conference on Artificial Intelligence and Virtual Reality
CHI :: c :: !CHI;ACM CHI :: Conference on Human Factors in Computing Systems
UIST :: c :: UIST :: Symposium on User Interface Software and Technology
CSCW :: c :: CSCW :: Conference on Computer-Supported Cooperative Work
IUI :: c :: !IUI :: International Conference on Intelligent User Interfaces
ETRA :: c :: ETRA :: Symposium on Eye Tracking Research and Applications
HRI :: c :: !HRI :: International Conference on Human-Robot Interaction
ICRA :: c :: ICRA :: International Conference on Robotics and Automation
IROS :: c :: IROS :: International Conference on Intelligent Robots and Systems
RSS :: c :: ~RSS :: Robotics:? Science and Systems
CoRL :: c :: CoRL :: Conference on Robot Learning
RA-L :: j :: !RA-L;!RAL;!IEEE RA-L;!IEEE RAL :: Robotics and Automation Letters
    ;IEEE Robot\.?\s*Autom\.?\s*Lett
T-RO :: j :: !T-RO;!TRO :: Transactions on Robotics
IJRR :: j :: IJRR :: International Journal of Robotics Research
Humanoids :: c :: !Humanoids :: International Conference on Humanoid Robots
CASE :: c :: ~CASE :: International Conference on Automation Science and Engineering
T-ASE :: j :: !T-ASE;!TASE :: Transactions on Automation Science and Engineering
ISER :: c :: !ISER :: International Symposium on Experimental Robotics
WAFR :: c :: WAFR :: Workshop on the Algorithmic Foundations of Robotics
CDC :: c :: !CDC :: Conference on Decision and Control
ACC :: c :: ~ACC :: American Control Conference
L-CSS :: j :: !L-CSS;!LCSS :: Control Systems Letters
ITSC :: c :: ITSC :: Intelligent Transportation Systems Conference
    ;International Conference on Intelligent Transportation Systems
IV :: c :: ~IV :: Intelligent Vehicles Symposium
T-ITS :: j :: !T-ITS;!TITS :: Transactions on Intelligent Transportation Systems
T-IV :: j :: !T-IV;!TIV :: Transactions on Intelligent Vehicles
ECMR :: c :: ECMR :: European Conference on Mobile Robots
ROBIO :: c :: ROBIO :: International Conference on Robotics and Biomimetics
Science Robotics :: j :: !Science Robotics ::
MICCAI :: c :: MICCAI :: Medical Image Computing and Computer[-\s]*Assisted Interventions?
ISBI :: c :: ISBI :: International Symposium on Biomedical Imaging
MIDL :: c :: MIDL :: Medical Imaging with Deep Learning
IPMI :: c :: IPMI :: Information Processing in Medical Imaging
IPCAI :: c :: IPCAI :: Information Processing in Computer[-\s]*Assisted Interventions
MIUA :: c :: MIUA :: Medical Image Understanding and Analysis
ISMRM :: c :: ISMRM :: International Society for Magnetic Resonance in Medicine
SPIE Medical Imaging :: c :: SPIE Medical Imaging;SPIE MI ::
SPIE :: c :: SPIE ::
EMBC :: c :: EMBC :: Engineering in Medicine (?:and|&) Biology (?:Society|Conference)
BIBM :: c :: BIBM :: International Conference on Bioinformatics and Biomedicine
TMI :: j :: !TMI;IEEE TMI;IEEE Trans Med Imaging :: Transactions on Medical Imaging
MedIA :: j :: !MedIA;Med Image Anal :: ~Medical Image Analysis
JBHI :: j :: JBHI :: Journal of Biomedical and Health Informatics
TBME :: j :: TBME :: Transactions on Biomedical Engineering
CMIG :: j :: CMIG :: Computerized Medical Imaging and Graphics
Radiology: Artificial Intelligence :: j :: !Radiology: Artificial Intelligence;!Radiology AI ::
Radiology :: j :: ~Radiology ::
Medical Physics :: j :: ~Medical Physics ::
PMB :: j :: !PMB :: Physics in Medicine (?:and|&) Biology
Computers in Biology and Medicine :: j :: !CIBM :: ~Computers in Biology and Medicine
Biomedical Signal Processing and Control :: j :: !BSPC :: ~Biomedical Signal Processing and Control
IGARSS :: c :: IGARSS :: International Geoscience and Remote Sensing Symposium
TGRS :: j :: TGRS;IEEE TGRS :: Transactions on Geoscience and Remote Sensing
GRSL :: j :: GRSL :: Geoscience and Remote Sensing Letters
JSTARS :: j :: JSTARS :: Journal of Selected Topics in Applied Earth Observations
ISPRS :: j :: ISPRS :: ISPRS Journal of Photogrammetry and Remote Sensing
Remote Sensing of Environment :: j :: !RSE :: Remote Sensing of Environment
JAG :: j :: !JAG :: International Journal of Applied Earth Observation and Geoinformation
Remote Sensing :: j :: ~Remote Sensing ::
TPAMI :: j :: TPAMI;PAMI;T-PAMI;IEEE TPAMI;IEEE Trans Pattern Anal Mach Intell;Trans PAMI ::
    ;Transactions on Pattern Analysis (?:and|&) Machine Intelligence
IJCV :: j :: IJCV;Int J Comput Vis;Int J Comput Vision :: International Journal of Computer Vision
TIP :: j :: !TIP;!T-IP;IEEE TIP;IEEE Trans Image Process :: Transactions on Image Processing
TMM :: j :: !TMM;!T-MM;IEEE TMM;IEEE Trans Multimedia :: Transactions on Multimedia(?! Computing)
TCSVT :: j :: TCSVT;T-CSVT :: Transactions on Circuits and Systems for Video Technology
TNNLS :: j :: TNNLS :: Transactions on Neural Networks and Learning Systems
TCYB :: j :: TCYB :: Transactions on Cybernetics
TSMC :: j :: TSMC :: Transactions on Systems,? Man,? and Cybernetics
TAI :: j :: ~TAI;IEEE TAI :: IEEE Transactions on Artificial Intelligence
TAFFC :: j :: TAFFC :: Transactions on Affective Computing
TIFS :: j :: TIFS :: Transactions on Information Forensics and Security
TBIOM :: j :: TBIOM :: Transactions on Biometrics,? Behavior,? and Identity Science
TKDE :: j :: TKDE :: Transactions on Knowledge and Data Engineering
TOMM :: j :: TOMM :: ACM Transactions on Multimedia Computing
TIST :: j :: !TIST :: ACM Transactions on Intelligent Systems and Technology
TII :: j :: !TII :: Transactions on Industrial Informatics
TIE :: j :: !TIE :: Transactions on Industrial Electronics
TCI :: j :: !TCI :: Transactions on Computational Imaging
TIM :: j :: !TIM :: Transactions on Instrumentation and Measurement
TMECH :: j :: !TMECH;!T-MECH :: Transactions on Mechatronics
TETCI :: j :: TETCI :: Transactions on Emerging Topics in Computational Intelligence
TCDS :: j :: TCDS :: Transactions on Cognitive and Developmental Systems
TCE :: j :: !TCE :: Transactions on Consumer Electronics
TVT :: j :: !TVT :: Transactions on Vehicular Technology
TPDS :: j :: TPDS :: Transactions on Parallel and Distributed Systems
TMC :: j :: !TMC :: Transactions on Mobile Computing
ACM Computing Surveys :: j :: ACM Computing Surveys;!CSUR :: ACM Computing Surveys
CVIU :: j :: CVIU :: ~Computer Vision and Image Understanding
Pattern Recognition Letters :: j :: !PRL :: ~Pattern Recognition Letters
Pattern Recognition :: j :: ~Pattern Recognition ::
Neurocomputing :: j :: Neurocomputing ::
Neural Networks :: j :: ~Neural Networks ::
Information Fusion :: j :: ~Information Fusion ::
Information Sciences :: j :: ~Information Sciences ::
Knowledge-Based Systems :: j :: !KBS :: ~Knowledge-Based Systems
Expert Systems with Applications :: j :: !ESWA :: ~Expert Systems with Applications
EAAI :: j :: !EAAI :: ~Engineering Applications of Artificial Intelligence
Image and Vision Computing :: j :: !IVC :: ~Image and Vision Computing
Machine Vision and Applications :: j ::  :: ~Machine Vision and Applications
JVCI :: j :: JVCI :: Journal of Visual Communication and Image Representation
Multimedia Tools and Applications :: j :: !MTAP :: Multimedia Tools and Applications
Neural Computing and Applications :: j :: :: Neural Computing and Applications
PLOS ONE :: j :: PLOS ONE;PLoS One ::
IEEE Access :: j :: IEEE Access ::
IEEE Sensors Journal :: j :: IEEE Sensors Journal;IEEE Sensors J ::
Sensors :: j :: ~Sensors;MDPI Sensors ::
Electronics :: j :: ~Electronics ::
Applied Sciences :: j :: ~Applied Sciences ::
Displays :: j :: ~Displays ::
Scientific Reports :: j :: Scientific Reports;Sci Rep;Sci Reports ::
Nature Communications :: j :: Nature Communications;Nat Commun;Nature Comms ::
Nature Machine Intelligence :: j :: Nature Machine Intelligence;Nat Mach Intell ::
Nature Methods :: j :: Nature Methods ::
Nature Medicine :: j :: Nature Medicine ::
Nature Biomedical Engineering :: j :: Nature Biomedical Engineering ::
npj Digital Medicine :: j :: npj Digital Medicine ::
Nature :: j :: ~Nature ::
Science Advances :: j :: Science Advances ::
Science :: j :: ~Science ::
PNAS :: j :: PNAS :: Proceedings of the National Academy of Sciences
Optics Express :: j :: Optics Express;Opt Express ::
Optics Letters :: j :: Optics Letters;Opt Lett ::
A&A :: j :: !A&A :: Astronomy (?:&|and) Astrophysics
MNRAS :: j :: MNRAS :: Monthly Notices of the Royal Astronomical Society
ApJ :: j :: !ApJ :: ~The Astrophysical Journal
JATIS :: j :: JATIS :: Journal of Astronomical Telescopes,? Instruments,? and Systems
"""


@dataclass(frozen=True, slots=True)
class _Entry:
    canon: str
    kind: str  # "c", "j" or "w" (see _REGISTRY)


@dataclass(slots=True)
class _Mention:
    start: int
    end: int  # end of the name itself
    entry: _Entry
    strict: bool
    full: bool = False  # matched a full name, not an acronym
    year: int | None = None  # a year written onto the name ("CVPR 2024", "ECCV'24", "(IROS) 2024")
    tail: int = 0  # end of the name plus its attached year
    status: str = "bare"  # "pos", "neg" or "bare"
    cue_start: int = -1  # start of the governing cue (or of the segment when bare)
    cue_end: int = -1


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SEP = "\x00"  # trie token for "optional space, hyphen or slash" inside an alias


_KEY_DROP = str.maketrans("", "", " \t\n-_/.")


def _alias_key(text: str, case_sensitive: bool) -> str:
    key = text.translate(_KEY_DROP)
    return key if case_sensitive else key.lower()


def _trie_pattern(aliases: list[str]) -> str:
    """One regex (lower case) for many aliases: alternatives share prefixes, so matching is fast and
    longest-first."""
    trie: dict = {}
    for alias in aliases:
        node = trie
        prev_sep = False
        for ch in alias:
            is_sep = ch in " -/."
            if is_sep and prev_sep:
                continue
            node = node.setdefault(_SEP if is_sep else ch.lower(), {})
            prev_sep = is_sep
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [
            (r"[\s\-/.]*" if key == _SEP else re.escape(key)) + emit(child)
            for key, child in sorted(node.items())
            if key
        ]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:  # a shorter alias ends here: try the longer ones first, then stop
            return f"(?:{body})?"
        return body

    return emit(trie)


def _build_registry():
    keys: dict[bool, dict[str, tuple[_Entry, bool]]] = {False: {}, True: {}}  # by case sensitivity
    raw: dict[bool, list[str]] = {False: [], True: []}
    full: list[tuple[str, _Entry, bool]] = []
    entry = _Entry("", "c")
    for line in _REGISTRY.strip().splitlines():
        if line.startswith(" "):  # continuation: more full names for the entry above
            aliases, names = "", line
        else:
            canon, kind, aliases, names = (part.strip() for part in line.split("::", 3))
            entry = _Entry(canon, kind)
        for alias in filter(None, (a.strip() for a in aliases.split(";"))):
            sensitive, strict = alias[0] in "!~", alias[0] == "~"
            alias = alias.lstrip("!~")
            keys[sensitive][_alias_key(alias, sensitive)] = (entry, strict)
            raw[sensitive].append(alias)
        for name in filter(None, (n.strip() for n in names.split(";"))):
            strict = name.startswith("~")
            # "Transactions on" is often shortened: "IEEE Trans. on Image Processing".
            body = name.lstrip("~").replace("Transactions on ", r"Trans(?:actions|\.)? on ").replace(" ", r"\s+")
            # Optional leading words ("(?:IEEE )?Transactions on ...") are left out: they add nothing to
            # what is found, and a pattern that starts with a plain word is searched for much faster.
            body = re.sub(r"^(?:\(\?:[^()]*\)\?)+", "", body)
            if re.search(r"\\[SWDBAZ]", body):
                raise ValueError(f"full names are matched lower-cased, so no upper-case escapes: {name}")
            full.append((body, entry, strict))
    # All aliases in one trie scanned over lower-cased text; case-sensitive ones are checked on the original
    # text afterwards (a scan per case mode would cost twice as much).
    alias_re = re.compile(r"(?<![a-z0-9])(?:" + _trie_pattern(raw[False] + raw[True]) + r")(?![a-z])")
    # One big alternation of ~200 full names is slow (no literal prefix to skip on), so each full name is
    # compiled alone and filed under a word it cannot match without; one trie scan for those words picks the
    # few full names worth trying.
    words = [_mandatory_words(pat) for pat, _e, _strict in full]
    frequency = Counter(w for ws in words for w in set(ws))
    by_keyword: dict[str, list[tuple[re.Pattern[str], _Entry, bool, bool]]] = {}
    for (pat, entry, strict), ws in zip(full, words, strict=True):
        # Generic phrases ("Pattern Recognition") keep their case and run on the original text; the others
        # run lower-cased on the lower-cased text (IGNORECASE would cost the fast literal-prefix search).
        compiled = re.compile(("(?:" + pat if strict else "(?:" + pat.lower()) + r")(?![A-Za-z])")
        # The keyword is the rarest word, so that few names share it; the first word when it is rare enough,
        # because then the name can only start where the keyword does (one anchored match, no search).
        keyword = min(ws, key=lambda w: (frequency[w], -len(w)))
        first = re.match(r"[A-Za-z]+", pat)
        anchored = bool(first) and first.group().lower() in ws and frequency[first.group().lower()] <= 3
        if anchored:
            keyword = first.group().lower()
        by_keyword.setdefault(keyword, []).append((compiled, entry, strict, anchored))
    keyword_re = re.compile(r"\b(?:" + _trie_pattern(list(by_keyword)) + ")")  # on lower-cased text
    return keys[False], keys[True], alias_re, keyword_re, by_keyword


def _mandatory_words(pattern: str) -> list[str]:
    """The words (4+ letters, lower case) that every match of a full-name pattern starts a word with."""

    # Optional or alternative parts go; inside a word they leave a "#" so that what follows them is not
    # taken for a word start ("Visuali[sz]ation" gives "visuali", never "ation").
    def gap(m: re.Match[str]) -> str:
        return "#" if m.start() and m.string[m.start() - 1].isalpha() else " "

    text = re.sub(r"\\s[?*+]?", " ", pattern)
    while True:  # innermost groups first
        stripped = re.sub(r"\([^()]*\)[?*+]?|\[[^\]]*\][?*+]?|\\.[?*+]?|[A-Za-z]\?", gap, text)
        if stripped == text:
            break
        text = stripped
    words = [w.lower() for w in re.findall(r"(?<![A-Za-z#])[A-Za-z]{4,}", text)]
    if not words:
        raise ValueError(f"full name without a fixed word of 4+ letters: {pattern}")
    return words


_CI_ALIASES, _CS_ALIASES, _ALIAS_RE, _KEYWORD_RE, _FULL_BY_KEYWORD = _build_registry()

# ---- text preparation ------------------------------------------------------------------------------------

# Typographic characters to their plain forms (smart quotes, dashes, no-break spaces, CJK punctuation).
# str.translate with a dict is slow on non-ASCII text, so each pair is replaced only when present.
_PLAIN = (
    *((quote, "'") for quote in "\u2018\u2019\u201a\u201b\u2032\u00b4`"),
    *((quote, '"') for quote in "\u201c\u201d\u201e"),
    *((dash, "-") for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"),
    ("\u00a0", " "),
    ("\u3001", ","),
    ("\u3002", ". "),
    ("\uff1b", ";"),
)


# Links name the venue in their path (".../ICCV2023/...", "cvpr24.github.io") and must never count: each
# becomes a segment break, since a link usually ends what was being said.
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+|\\url\{[^}]*\}", re.IGNORECASE)
_DOMAIN = re.compile(
    r"\b[\w-]+(?:\.[\w-]+)*\.(?:github\.io|com|org|net|io|edu|ai|site|cc|me|page|dev|html?)\b(?:/\S*)?",
    re.IGNORECASE,
)
_TLD = re.compile(r"\.(?:github\.io|com|org|net|io|edu|ai|site|cc|me|page|dev|html?)\b", re.IGNORECASE)  # cheap
_IDS = re.compile(r"\barxiv\s*:?\s*\d{4}\.\d{4,5}(?:v\d+)?|\b\d{4}\.\d{4,5}(?:v\d+)?\b|\bdoi:?\s*10\.\S+", re.I)
# "Findings of the Association for Computational Linguistics: EMNLP 2024" is EMNLP, not ACL.
_FINDINGS_OF_ACL = re.compile(r"Findings\s+of\s+the\s+Association\s+for\s+Computational\s+Linguistics\s*:?\s*(?=[A-Z])")


def _plain(text: str) -> str:
    for fancy, plain in _PLAIN:
        if fancy in text:
            text = text.replace(fancy, plain)
    return text


def _has_digit_dot_digit(text: str) -> bool:
    i = text.find(".")
    while 0 <= i < len(text) - 1:
        if i and text[i - 1].isdigit() and text[i + 1].isdigit():
            return True
        i = text.find(".", i + 1)
    return False


def _normalise(comment: str) -> str:
    text = comment if comment.isascii() else _plain(unicodedata.normalize("NFKC", comment))
    # The cheap tests in front skip the costlier scans on the many comments that cannot need them.
    if "://" in text or "www." in text or "\\url" in text:
        text = _URL.sub(" ; ", text)
    if _TLD.search(text):
        text = _DOMAIN.sub(" ; ", text)
    if _has_digit_dot_digit(text):  # arXiv ids, DOIs
        text = _IDS.sub(" ", text)
    if "Findings" in text:
        text = _FINDINGS_OF_ACL.sub("Findings of ", text)
    return " ".join(text.split())


# A "." ends a segment unless it closes an abbreviation ("Proc. Annual Conference", "IEEE Robot. Autom.").
_BREAK = re.compile(r"[;|!?]|\s-{2,}\s|\.(?=\s|$)")
_ABBREV = _words(
    "proc conf int intl trans vol no pp al eg ie vs symp robot autom lett comput vis sci med eng mach intell "
    "anal appl graph process res syst inf assoc soc natl acad eur j am opt phys rev adv"
)
_WORD_BEFORE = re.compile(r"([A-Za-z.]+)$")


def _lower(text: str) -> str:
    """Lower case with every position kept (str.lower() may lengthen rare characters such as "İ")."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def _segments(text: str) -> list[tuple[int, int]]:
    if not any(ch in text for ch in ";|!?.-"):
        return [(0, len(text))]
    spans, start = [], 0
    for m in _BREAK.finditer(text):
        if m.group() == ".":
            word = _WORD_BEFORE.search(text, max(0, m.start() - 12), m.start())
            if word and word.group(1).replace(".", "").lower() in _ABBREV:
                continue
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


# ---- cues ----------------------------------------------------------------------------------------------
# (kind, pattern) on lower-cased text, each starting a word. At one position the first listed pattern that
# matches wins, so the "null" phrases (that look like cues but are not) and the negated forms come before the
# plain acceptance words.
_WILL_BE_RELEASED = r"\b[^.;]{0,40}?\b(?:will|to)\s+be\s+(?:made\s+)?(?:publicly\s+)?(?:published|released|available)\b"
_CUE_TABLE: tuple[tuple[str, str], ...] = (
    # null: not about this paper's acceptance
    (
        "null",
        r"(?:after|once|if|when|upon|until|before|unless|pending)\s+(?:\w+\s+){0,4}?"
        r"(?:accepted|published|acceptance)\b",
    ),
    ("null", r"(?:upon|after|on)\s+(?:the\s+)?(?:paper'?s?\s+)?acceptance\b"),
    ("null", r"with\s+(?:major|minor)\s+revisions?\b"),
    ("null", r"acceptance\s+rate\b"),
    ("null", r"extended\s+abstracts?\b"),
    *(("null", word + _WILL_BE_RELEASED) for word in (r"codes?", r"data(?:sets?)?", r"models?", "weights", "source")),
    # neg: not (yet) accepted, or accepted as some other paper
    ("neg", r"not\s+(?:yet\s+)?(?:been\s+)?(?:accepted|published)\b"),
    ("neg", r"(?:re)?sub?mi?t+(?:ed|ing)?\b"),
    ("neg", r"submis+ions?\b"),
    ("neg", r"under[\s-]*(?:review|revision|reviewed|consideration|submission)\b"),
    ("neg", r"in[\s-]+(?:review|submission|revision|preparation)\b"),
    ("neg", r"peer[\s-]*review"),
    ("neg", r"(?:major|minor)\s+revisions?\b"),
    ("neg", r"(?:prepared|intended|targeted)\s+(?:for|at)\b"),
    ("neg", r"targeting\b"),
    ("neg", r"for\s+(?:possible\s+)?(?:publication\s+)?consideration\b"),
    ("neg", r"for\s+possible\s+publication\b"),
    ("neg", r"rejected\b"),
    ("neg", r"withdrawn\b"),
    ("neg", r"extended\s+(?:and\s+\w+\s+)?(?:version|from|journal|paper|edition|work|variant|manuscript)s?\b"),
    ("neg", r"extensions?\s+(?:of|to)\b"),
    ("neg", r"extends\b"),
    (
        "neg",
        r"(?:journal|conference|preliminary|previous|earlier|prior|short|shorter|initial|original|long|longer"
        r"|expanded|early|workshop)\s+(?:version|extension)s?\b",
    ),
    ("neg", r"(?:preliminary|previous|earlier|prior|initial)\s+(?:work|paper|edition|conference\s+paper)s?\b"),
    ("neg", r"previously\b"),
    ("neg", r"builds?\s+(?:up)?on\b"),
    ("neg", r"based\s+on\s+(?:our|the\s+paper)\b"),
    ("neg", r"supersed\w*"),
    ("neg", r"follow[\s-]*up\b"),
    ("neg", r"reproducib\w*"),
    ("neg", r"tech(?:nical)?\.?\s+reports?\b"),
    ("neg", r"challenges?\b"),
    ("neg", r"competitions?\b"),
    ("neg", r"(?:first|second|third|fourth|fifth)\s+place\b"),
    ("neg", r"top[\s-]*\d+\s+place\b"),
    ("neg", r"\d+\s*(?:st|nd|rd|th)\s+place\b"),
    ("neg", r"winn(?:er|ers|ing)\b"),
    ("neg", r"champion\w*"),
    ("neg", r"ranked\b"),
    ("neg", r"runner[\s-]*up\b"),
    ("neg", r"leaderboard\b"),
    # pos: accepted, published, presented...
    ("pos", r"(?:accept|accepts|acceptance|accetped|accepetd)\b"),
    ("pos", r"ac+[aeiou]*[cp]+[aeiou]*t+[aeiou]*d\b"),  # accepted and its typos: aceepted, accpeted, acceptted
    ("pos", r"published\b"),
    ("pos", r"to\s+appear\b"),
    ("pos", r"appear(?:s|ed|ing)?\s+(?:in|at|on)\b"),
    ("pos", r"forthcoming\b"),
    ("pos", r"presented\b"),
    ("pos", r"presentations?\s+(?:at|in)\b"),
    ("pos", r"in\s+press\b"),
    ("pos", r"camera[\s-]*ready\b"),
    ("pos", r"proceedings\b"),
    ("pos", r"proc\b"),
    ("pos", r"best\s+(?:\w+\s+)?paper\b"),
    ("pos", r"awards?\b"),
    ("pos", r"honou?rable\s+mention\b"),
)


def _join(patterns: list[str]) -> str:
    """Alternation of patterns; each is wrapped only when it has a top-level "|", because the regex engine
    skips an alternative at a glance only when it starts with a plain character."""
    return "|".join(f"(?:{p})" if _top_level_bar(p) else p for p in patterns)


def _top_level_bar(pattern: str) -> bool:
    depth, escaped, in_class = 0, False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "|" and depth == 0:
            return True
    return False


def _expand_leading_words(pattern: str) -> list[str]:
    """Split a leading group of words: "(?:after|once)\\s+x" -> "after\\s+x", "once\\s+x"."""
    m = re.match(r"\(\?:([a-z|]+)\)(\??)", pattern)
    if not m:
        return [pattern]
    rest = pattern[m.end() :]
    return [word + rest for word in m.group(1).split("|")] + ([rest] if m.group(2) else [])


def _factored(patterns: list[str]) -> str:
    """Alternation with the first letter factored out: "a(?:fter...|ccepted...)|b(?:...)".

    Python's regex engine tries alternatives one by one at every word start; with the first letter
    factored, one cheap comparison skips a whole family.
    """
    by_first: dict[str, list[str]] = {}
    other: list[str] = []
    for alt in (alt for pattern in patterns for alt in _expand_leading_words(pattern)):
        if alt[0].isalpha() and alt[1:2] not in ("?", "*", "+", "{"):
            by_first.setdefault(alt[0], []).append(alt[1:])
        else:
            other.append(alt)
    families = [f"{first}(?:{_join(rests)})" for first, rests in sorted(by_first.items())]
    return _join(families + other)


# One scan finds the cues; its alternatives have no capturing groups on purpose: with ~50 named groups the
# regex engine saves and restores them at every branch, which made the scan three to four times slower.
# The kind of each (rare) match is then found by matching its text against the kinds in table order.
_CUES = re.compile(r"\b(?:" + _factored([p for _kind, p in _CUE_TABLE]) + ")")
_CUE_KINDS = tuple(
    (kind, re.compile(_join([p for k, p in _CUE_TABLE if k == kind]))) for kind in ("null", "neg", "pos")
)


@lru_cache(maxsize=1024)  # cue texts repeat ("accepted", "submitted to")
def _cue_kind(cue: str) -> str:
    return next(kind for kind, pattern in _CUE_KINDS if pattern.fullmatch(cue))


# Cues that say "accepted" on their own, without naming a venue ("10 pages, In press").
_STANDALONE = re.compile(r"^(?:ac\w*pt\w*|published|in\s+press|to\s+appear|camera[\s-]*ready)$", re.IGNORECASE)
# "... version of our paper accepted at CVPR 2023": the participle belongs to the earlier paper.
_PARTICIPLE = re.compile(
    r"\b(?:paper|work|version|article|one|manuscript)\s+(?:that\s+|which\s+)?(?:was\s+|has\s+been\s+|had\s+been\s+"
    r"|is\s+|were\s+)?$",
    re.IGNORECASE,
)
_THESIS = re.compile(r"\b(?:thesis|dissertation)\b")  # on lower-cased text


@dataclass(slots=True)
class _Cue:
    start: int
    end: int
    pol: str  # "pos" or "neg"


def _cues(low: str) -> list[_Cue]:
    found = ((m, _cue_kind(m.group())) for m in _CUES.finditer(low))
    return [_Cue(m.start(), m.end(), kind) for m, kind in found if kind != "null"]


# ---- mentions --------------------------------------------------------------------------------------------
_YEAR4_AFTER = re.compile(r"\s*\)?\s*,?\s*(?:[-'@]\s*)?'?\s*((?:19|20)\d{2})(?!\d)")
_YEAR2_AFTER = re.compile(
    r"(?:\s*[-']\s*|\s?)('?)(\d{2})(?![\d'])(?!\s*(?:st|nd|rd|th|pages?|pp|figures?|figs?|tables?|%|x\b|k\b))",
    re.IGNORECASE,
)
_YEAR_ANY = re.compile(r"(?<![\d.])((?:19|20)\d{2})(?![\d.]\d)")


def _valid_year(year: int) -> bool:
    return 1990 <= year <= 2039


def _attached_year(text: str, pos: int, short_ok: bool) -> tuple[int | None, int]:
    """The year written onto a venue name that ends at pos ("CVPR 2024", "AAAI-24", "(CVPR), 2024").

    Two-digit years count only after an acronym: after a full name they are volumes or ordinals ("AAAI
    Conference on Artificial Intelligence 38").
    """
    m = _YEAR4_AFTER.match(text, pos)
    if m and _valid_year(int(m.group(1))):
        return int(m.group(1)), m.end()
    m = _YEAR2_AFTER.match(text, pos) if short_ok else None
    if m:
        two = int(m.group(2))
        if two >= 10 or m.group(1):
            year = 2000 + two if two < 40 else 1900 + two
            if _valid_year(year):
                return year, m.end()
    return None, pos


def _raw_mentions(text: str, low: str) -> list[_Mention]:
    found: list[_Mention] = []
    for m in _ALIAS_RE.finditer(low):
        start, end = m.span()
        hit = _CS_ALIASES.get(_alias_key(text[start:end], True)) or _CI_ALIASES.get(_alias_key(m.group(), False))
        if hit:
            found.append(_Mention(start, end, hit[0], hit[1]))
    seen: set[tuple[int, int, str]] = set()
    for k in _KEYWORD_RE.finditer(low):
        # A full name holds its keyword, so it is looked for only around it (names are < 120 characters).
        window = (max(0, k.start() - 120), min(len(text), k.end() + 120))
        for pattern, entry, strict, anchored in _FULL_BY_KEYWORD[k.group()]:
            target = text if strict else low
            hits = [pattern.match(target, k.start())] if anchored else pattern.finditer(target, *window)
            for m in filter(None, hits):
                if m.start() and text[m.start() - 1].isalpha():
                    continue  # inside a word
                if m.start() <= k.start() < m.end() and (m.start(), m.end(), entry.canon) not in seen:
                    seen.add((m.start(), m.end(), entry.canon))
                    found.append(_Mention(m.start(), m.end(), entry, strict, full=True))
    # Overlaps: the earlier, then the longer one wins ("ACM SIGGRAPH MIG" over "SIGGRAPH").
    found.sort(key=lambda x: (x.start, -(x.end - x.start)))
    kept: list[_Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        mention.year, mention.tail = _attached_year(text, mention.end, not mention.full)
        kept.append(mention)
    return kept


# ---- deciding --------------------------------------------------------------------------------------------
# Words that may stand beside a venue in a comma-separated item without making it a sentence about something
# else ("9 pages, ICRA", "Machine Vision and Applications", "IEEE CVPR Workshops").
_ITEM_FILLER = re.compile(
    r"^(?:\s|the|ieee|acm|cvf|rsj|siam|springer|elsevier|mdpi|journal|conference|proceedings|proc|paper|papers"
    r"|annual|international|advances|sigkdd|sigir|dagm"
    r"|main|track|version|final|full|short|long|in|at|of|and|edition|workshops?|oral|spotlight|poster|highlight"
    r"|findings|demo|accepted|\d+(?:st|nd|rd|th)|[/&:'\"()\[\]-])*$",
    re.IGNORECASE,
)
_ITEM_EDGE = re.compile(r"[,;()\[\]]")
# A bare venue after one of these is compared with, not published at ("better than CVPR 2023 methods").
_NOT_VENUE_BEFORE = re.compile(r"\b(?:from|than|against|over|using|beyond|vs\.?|versus|like|with)\s+(?:the\s+)?$", re.I)
# What may stand between an acceptance phrase and a word-like journal name ("accepted for publication in").
_CUE_TO_NAME = re.compile(
    r"\s*(?:for\s+publication\s+)?(?:(?:in|to|by|at|for|into|on|@)\s+)?(?:the\s+)?(?:journal\s+(?:of\s+)?)?"
    r"(?:(?:IEEE|ACM|MDPI|Elsevier|Springer|SPIE|AAPM|RSNA)\s+)?",
    re.IGNORECASE,
)


def _item(text: str, seg: tuple[int, int], m: _Mention) -> tuple[int, int]:
    """The comma-separated item around a mention."""
    left = max([seg[0]] + [x.end() for x in _ITEM_EDGE.finditer(text, seg[0], m.start)])
    right_hit = _ITEM_EDGE.search(text, m.tail, seg[1])
    return left, right_hit.start() if right_hit else seg[1]


def _whole_item(text: str, seg: tuple[int, int], m: _Mention) -> bool:
    left, right = _item(text, seg, m)
    return bool(_ITEM_FILLER.match(text[left : m.start] + " " + text[m.tail : right]))


def _govern(text: str, seg: tuple[int, int], m: _Mention, cues: list[_Cue], mentions: list[_Mention]) -> None:
    """Set m.status from the nearest cue before it in its segment, else a cue right after it."""
    before = [c for c in cues if c.start >= seg[0] and c.end <= m.start]
    if before:
        cue = before[-1]
        pol = cue.pol
        if pol == "pos" and len(before) > 1 and before[-2].pol == "neg" and _PARTICIPLE.search(text, 0, cue.start):
            pol = "neg"
        m.status, m.cue_start, m.cue_end = pol, cue.start, cue.end
        return
    m.cue_start = seg[0]
    after = next((c for c in cues if m.tail <= c.start <= min(m.tail + 30, seg[1]) and c.end <= seg[1]), None)
    if after and not any(m.start < o.start < after.start for o in mentions if o is not m):
        m.status = after.pol  # "NeurIPS 2024 Accepted", "IROS 2024 submission", "ECCV 2024 DD Challenge"
        return
    m.status = "bare"


_CAPITALISED_NEXT = re.compile(r"\s+(?:of\s+|and\s+|&\s+)?(?!Journal\b)[A-Z][a-z]")


def _follows_cue(text: str, m: _Mention) -> bool:
    return m.cue_end >= 0 and bool(_CUE_TO_NAME.fullmatch(text, m.cue_end, m.start))


def _valid(text: str, seg: tuple[int, int], m: _Mention) -> bool:
    """Is this mention really a venue citation (as opposed to a word or a comparison)?"""
    if m.strict and _CAPITALISED_NEXT.match(text, m.end):
        return False  # "Nature Photonics", "Remote Sensing of Environment": another journal, read as written
    if m.strict and m.year is None:
        direct = m.status != "bare" and _follows_cue(text, m)
        if not direct and not _whole_item(text, seg, m):
            return False
    if m.status != "bare":
        return True
    if _NOT_VENUE_BEFORE.search(text, max(seg[0], m.start - 20), m.start):
        return False
    if m.year is not None or _whole_item(text, seg, m):
        return True
    # "ICRA, 2024", "EARTHVISION 2024 IEEE/CVF CVPR Workshop"
    left, _right = _item(text, seg, m)
    nearby = [_YEAR_ANY.search(text, left, m.start), _YEAR_ANY.search(text, m.tail, min(seg[1], m.tail + 20))]
    return any(y and _valid_year(int(y.group(1))) for y in nearby)


def _segment_of(segs: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    for seg in segs:
        if seg[0] <= pos < seg[1]:
            return seg
    return segs[-1]


def _span_start(seg: tuple[int, int], pos: int, cues: list[_Cue]) -> int:
    """Context reaches back to the segment start or the last negation ("as an oral presentation at")."""
    return max([seg[0]] + [c.end for c in cues if c.pol == "neg" and seg[0] <= c.start and c.end <= pos])


def _span_end(seg: tuple[int, int], m: _Mention, cues: list[_Cue]) -> int:
    """A mention's context stops where a negation starts ("Accepted to IJCV, extension of ICCV 2023")."""
    nxt = next((c.start for c in cues if c.pol == "neg" and m.tail <= c.start < seg[1]), None)
    return nxt if nxt is not None else seg[1]


def _year(text: str, m: _Mention, same: list[_Mention], span: tuple[int, int]) -> int | None:
    if m.year is not None:
        return m.year
    for other in same:  # "CVPR 2024. Proceedings of the IEEE/CVF Conference on Computer Vision ..."
        if other.year is not None:
            return other.year
    best: tuple[int, int] | None = None
    for y in _YEAR_ANY.finditer(text, span[0], span[1]):
        year = int(y.group(1))
        if not _valid_year(year):
            continue
        dist = m.start - y.end() if y.end() <= m.start else y.start() - m.end
        if best is None or dist < best[0]:
            best = (dist, year)
    return best[1] if best else None


# ---- tracks ----------------------------------------------------------------------------------------------
# Tracks in order of precedence (a workshop paper presented as an oral is a workshop paper), as patterns on
# lower-cased text. As for cues, one scan without capturing groups finds them, then each hit is classified.
_TRACK_TABLE: tuple[tuple[str, str], ...] = (
    ("workshop", r"workshops?\b|(?:cvpr|iccv|eccv|wacv|iclr|icml|neurips)-?w\b"),
    ("datasets and benchmarks", r"datasets?\s*(?:and|&)\s*benchmarks?\b|d\s*&\s*b\b"),
    ("findings", r"findings\b"),
    ("tiny paper", r"tiny\s*papers?\b"),
    ("special session", r"special\s+sessions?\b"),
    ("demo", r"demo(?:nstration)?s?\s+(?:track|paper|session|program)s?\b|for\s+demonstrations?\b|(?<=\()demo\s*\)"),
    (
        "oral",
        # not the mouth: dental and medical papers ("Clinical Oral Investigations", "oral cavity")
        r"oral\b(?!\s+(?:cavity|health|surgery|diseases?|hygiene|and\s+maxillofacial|scans?|mucosa|cancer|medicine"
        r"|radiology|microbio\w*|lesions?|images?|investigations|oncology|biology|rehabilitation|implantology"
        r"|sciences?|pathology|care|tissues?))",
    ),
    ("spotlight", r"spotlights?\b"),
    ("highlight", r"highlights?\b"),
    ("poster", r"posters?\b"),
)
_TRACKS = re.compile(r"\b(?:" + _join([p for _name, p in _TRACK_TABLE]) + ")")
_TRACK_KINDS = tuple((rank, name, re.compile(p)) for rank, (name, p) in enumerate(_TRACK_TABLE))


def _track_rank(hit: str) -> tuple[int, str]:
    return next((rank, name) for rank, name, pattern in _TRACK_KINDS if pattern.fullmatch(hit))


# "Deep Breath @ MICCAI 2024": a named event hosted at the venue, i.e. a workshop.
_AT_HOST = re.compile(r"[A-Z][\w&+-]*(?:\s+[A-Z0-9][\w&+-]*){0,5}\s*@\s*$")
_DEMO_SUFFIX = re.compile(r"\s*demos?\b", re.IGNORECASE)


def _track(text: str, regions: list[tuple[int, int]], m: _Mention | None) -> str | None:
    found = [_track_rank(t.group()) for a, b in regions for t in _TRACKS.finditer(text[a:b].lower())]
    if found:
        return min(found)[1]
    if m is None:
        return None
    if m.entry.kind == "w":
        return "workshop"
    if _DEMO_SUFFIX.match(text, m.tail):
        return "demo"
    before = max(0, m.start - 60)
    if "@" not in text[before : m.start]:
        return None
    if _AT_HOST.search(text, before, m.start) and not _CUES.search(text[before : m.start].lower()):
        return "workshop"
    return None


# ---- unknown venues, read as written ---------------------------------------------------------------------
_LEAD = re.compile(
    r"""[\s:,\-]*
    (?:(?:paper|work|article)\s+)?
    (?:(?:as|for)\s+(?:an?\s+)?(?:publication|presentation|(?:\w+\s+){0,2}(?:paper|presentation|poster|talk
        |contribution|article))\s+)?
    (?:(?:at|to|by|in|on|into|for|during|with|@)\s+)?
    (?:the\s+)?(?:proceedings\s+(?:of\s+)?(?:the\s+)?)?
    (?:(?:19|20)\d{2}\s+)?(?:\d+\s*(?:st|nd|rd|th)\s+)?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_NAME = re.compile(r"(?:[A-Z0-9][\w&+'-]*|npj)(?:[ ](?:[A-Z0-9][\w&+'-]*|of|on|for|and|in|the|&|de|du|-)){0,11}")
_NAME_TRAILER = re.compile(r"(?:\s+(?:of|on|for|and|in|the|&|de|du|-|(?:19|20)?\d{2}))+$")
_PAREN_ACRONYM = re.compile(r"\s*\(\s*([A-Z][A-Za-z0-9&-]{1,15}?)(?:[\s'-]*\d{2,4})?\s*\)")
_NOT_A_NAME = _words(
    "project code page github ieee acm the this our we it main track round oral poster spotlight highlight "
    "conference journal paper version workshop arxiv preprint proceedings in press see"
)


def _name_after(text: str, start: int, stop: int) -> str | None:
    """The venue named right after an acceptance phrase, as written, or None."""
    lead = _LEAD.match(text, start, stop)
    pos = lead.end() if lead else start
    m = _NAME.match(text, pos, stop)
    if not m:
        return None
    name = _NAME_TRAILER.sub("", m.group()).strip(" -")
    words = name.split()
    if not words or all(w.lower() in _NOT_A_NAME or w.isdigit() for w in words):
        return None
    if len(words) > 1 and words[0].isupper() and words[1] in {"in", "at"}:
        name = words[0]  # "37th IEPC in Cambridge, MA"
    acronym = _PAREN_ACRONYM.match(text, m.end(), stop)
    if acronym and len(words) > 1:
        return acronym.group(1)  # "Frontiers of Computer Science (FCS)"
    return name


_BARE_NAME = re.compile(
    r"(?:The\s+)?(?:(?:19|20)\d{2}\s+)?(?:\d+\s*(?:st|nd|rd|th)\s+)?"
    r"(?:[A-Z][\w&-]*\s+){0,4}(?:Conference|Symposium|Workshop)\s+(?:on|of|for)\s+[A-Z][\w&-]*(?:\s+[A-Z&][\w&-]*"
    r"|\s+(?:of|on|for|and|in|the))*"
)


_NAME_YEAR = re.compile(
    r"(?:The\s+)?([A-Z][\w&'-]*(?:\s+(?:[A-Z0-9][\w&'-]*|of|and|for|on|in|the|&)){0,7}),?\s+((?:19|20)\d{2})"
)
_NOT_A_VENUE_START = _words(
    "preprint version copyright draft updated update revised report technical tech released project code work "
    "paper manuscript appendix supplementary dataset data arxiv techrxiv biorxiv medrxiv ssrn openreview zenodo "
    "github v1 v2 v3 january february march april may june "
    "july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec"
)


def _bare_name(text: str, seg: tuple[int, int]) -> tuple[str, int] | None:
    """An unknown conference cited bare: "The 5th International Conference on Foo Bar (FB 2024)"."""
    m = _BARE_NAME.search(text, seg[0], seg[1])
    if not m:
        return None
    acronym = _PAREN_ACRONYM.match(text, m.end(), seg[1])
    name = acronym.group(1) if acronym else _NAME_TRAILER.sub("", m.group()).removeprefix("The ").strip()
    return name, m.start()


# ---- the entry point -------------------------------------------------------------------------------------


# What an unknown venue cited bare needs (see _bare_name and _NAME_YEAR).
_MAYBE_UNKNOWN_VENUE = re.compile(r"conference|symposium|workshop|(?<!\d)(?:19|20)\d\d(?!\d)")


# An arXiv comment is a line or two (the longest in the real corpus: 360 characters); reading one costs the
# square of its venue mentions, so only its start is read (ingest cuts longer ones with a warning).
COMMENT_MAX_CHARS = 1_000


def extract_venue(comment: str | None) -> Venue:
    """Where the comment says the paper was accepted, or Venue() when it does not say so."""
    if not comment or not comment.strip():
        return _NO_VENUE
    return _extract_cached(comment[:COMMENT_MAX_CHARS])


_NO_VENUE = Venue()


# The same comment comes back with every sighting of a paper (consecutive feeds share most entries), and
# Venue is frozen, so answers are cached.
@lru_cache(maxsize=8192)
def _extract_cached(comment: str) -> Venue:
    text = _normalise(comment)
    low = _lower(text)
    if not text or _THESIS.search(low):
        return Venue()  # a thesis is not a venue acceptance, whatever else the comment says
    cues = _cues(low)
    mentions = _raw_mentions(text, low)
    if not cues and not mentions and not _MAYBE_UNKNOWN_VENUE.search(low):
        return Venue()  # most comments: "12 pages, 5 figures", "Project page: ..."
    segs = _segments(text)
    for m in mentions:
        _govern(text, _segment_of(segs, m.start), m, cues, mentions)
    mentions = [m for m in mentions if _valid(text, _segment_of(segs, m.start), m)]
    chosen = next((m for m in mentions if m.status == "pos"), None)
    chosen = chosen or next((m for m in mentions if m.status == "bare"), None)
    if chosen:
        return _venue_from_mention(text, segs, cues, mentions, chosen)
    return _venue_without_registry(text, segs, cues, mentions)


def _neutral_regions(text: str, segs: list[tuple[int, int]], cues: list[_Cue], mentions: list[_Mention]):
    """Short segments that mention no venue and negate nothing: "Oral presentation." may be one of them (a
    sentence such as "We highlight ..." is not)."""
    for seg in segs:
        if text.count(" ", seg[0], seg[1]) > 5:
            continue
        if any(seg[0] <= m.start < seg[1] for m in mentions):
            continue
        if any(seg[0] <= c.start < seg[1] and c.pol == "neg" for c in cues):
            continue
        yield seg


def _venue_from_mention(text, segs, cues, mentions, chosen: _Mention) -> Venue:
    seg = _segment_of(segs, chosen.start)
    span = (_span_start(seg, min(chosen.cue_start, chosen.start), cues), _span_end(seg, chosen, cues))
    same = [m for m in mentions if m.entry == chosen.entry and m.status != "neg" and m is not chosen]
    regions = [span]
    for other in same:
        other_seg = _segment_of(segs, other.start)
        start = _span_start(other_seg, min(other.cue_start, other.start), cues)
        regions.append((start, _span_end(other_seg, other, cues)))
    regions.extend(_neutral_regions(text, segs, cues, mentions))
    year = _year(text, chosen, same, span)
    return Venue(True, chosen.entry.canon, year, _track(text, regions, chosen))


def _venue_without_registry(text, segs, cues, mentions) -> Venue:
    # Unknown venue named after an acceptance phrase: "accept for publication in npj Precision Oncology".
    pos_cues = [c for c in cues if c.pol == "pos"]
    for cue in pos_cues:
        seg = _segment_of(segs, cue.start)
        if any(c.pol == "neg" and seg[0] <= c.start < cue.start for c in cues) and not _preceded_by_pos(cue, cues):
            continue
        nxt = next((c.start for c in cues if c.start >= cue.end), seg[1])
        name = _name_after(text, cue.end, min(nxt, seg[1]))
        if name is None:
            continue
        at = _Mention(cue.end, cue.end, _Entry(name, "c"), False, tail=cue.end)
        span = (_span_start(seg, cue.start, cues), _span_end(seg, at, cues))
        regions = [span, *_neutral_regions(text, segs, cues, mentions)]
        return Venue(True, name, _year(text, at, [], span), _track(text, regions, None))
    # Unknown conference cited bare, in a segment that negates nothing.
    for seg in segs:
        if any(seg[0] <= c.start < seg[1] and c.pol == "neg" for c in cues):
            continue
        hit = _bare_name(text, seg)
        if hit:
            fake = _Mention(hit[1], hit[1], _Entry(hit[0], "c"), False, tail=hit[1])
            return Venue(True, hit[0], _year(text, fake, [], seg), _track(text, [seg], None))
    # A segment that is nothing but a title-case name and a year: "Cancer Heterogeneity and Plasticity, 2024".
    for seg in segs:
        hit = _NAME_YEAR.fullmatch(text[seg[0] : seg[1]].strip())
        if (
            hit
            and hit.group(1).split()[0].lower() not in _NOT_A_VENUE_START
            and not any(seg[0] <= c.start < seg[1] for c in cues)
        ):
            return Venue(True, hit.group(1), int(hit.group(2)), None)
    # An acceptance phrase that names no venue: "10 pages, 7 figures, In press".
    for cue in pos_cues:
        seg = _segment_of(segs, cue.start)
        negated = any(c.pol == "neg" and seg[0] <= c.start < seg[1] for c in cues)
        if not negated and _STANDALONE.match(text[cue.start : cue.end]):
            return Venue(True, None, None, _track(text, [seg], None))
    return Venue()


def _preceded_by_pos(cue: _Cue, cues: list[_Cue]) -> bool:
    before = [c for c in cues if c.end <= cue.start]
    return bool(before) and before[-1].pol == "pos"


def known_venues() -> list[str]:
    """The canonical names of the registry, sorted."""
    entries = [e for e, _strict in (*_CI_ALIASES.values(), *_CS_ALIASES.values())]
    entries += [e for patterns in _FULL_BY_KEYWORD.values() for _p, e, _s, _a in patterns]
    return sorted({e.canon for e in entries})


# ---- scoring ---------------------------------------------------------------------------------------------


def _venue_key(venue: str | None) -> str | None:
    return None if venue is None else re.sub(r"\s+", "", venue).casefold()


def venue_matches(got: str | None, gold: str | None, aliases: list[str] | None = None) -> bool:
    """Venues compare ignoring case and spaces; any of the gold aliases is also right."""
    if gold is None:
        return got is None
    return _venue_key(got) in {_venue_key(v) for v in [gold, *(aliases or [])]}


def score(examples: list[dict]) -> dict:
    """Precision/recall of `accepted`, and venue/year accuracy over the gold-accepted examples."""
    tp = fp = fn = venue_ok = year_ok = track_ok = n_accepted = 0
    misses: list[dict] = []
    for ex in examples:
        got = extract_venue(ex.get("comment"))
        gold = bool(ex.get("accepted"))
        tp += got.accepted and gold
        fp += got.accepted and not gold
        fn += gold and not got.accepted
        wrong = got.accepted != gold
        if gold:
            n_accepted += 1
            v_ok = venue_matches(got.venue, ex.get("venue"), ex.get("venue_aliases"))
            y_ok = got.year == ex.get("year")
            t_ok = got.track == ex.get("track")
            venue_ok += v_ok
            year_ok += y_ok
            track_ok += t_ok
            wrong = wrong or not (v_ok and y_ok and t_ok)
        if wrong:
            misses.append({"comment": ex.get("comment"), "got": got.as_dict()})
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "venue_accuracy": venue_ok / n_accepted if n_accepted else 1.0,
        "year_accuracy": year_ok / n_accepted if n_accepted else 1.0,
        "track_accuracy": track_ok / n_accepted if n_accepted else 1.0,
        "n": len(examples),
        "n_accepted": n_accepted,
        "misses": misses,
    }


def load_examples(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """`python -m newsletter.registry.venues FILE.jsonl ...`: print the scores and the misses of each file."""
    paths = argv if argv is not None else sys.argv[1:]
    if not paths:
        print("usage: python -m newsletter.registry.venues LABELLED.jsonl ...", file=sys.stderr)
        return 2
    for path in paths:
        result = score(load_examples(path))
        misses = result.pop("misses")
        print(path, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        for miss in misses:
            print("  MISS", json.dumps(miss, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
