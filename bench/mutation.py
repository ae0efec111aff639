"""Mutation testing (mutmut 3) of the code behind the main claims, with the tests that cover it. Not in CI: slow.

Each mutant is one small change to one function (an operator, a constant, a comparison, a dropped argument...);
it is killed when a test fails with it in place. The killed share per module says how much of that code the
tests actually pin down: a surviving mutant is a behaviour no test would notice changing.

| module | functions mutated | tests run against them |
|---|---|---|
| ledger | all of newsletter/deliver/ledger.py | test_ledger, test_deliver |
| sender | all of newsletter/deliver/sender.py | test_deliver, test_rate_limit |
| venues | all of newsletter/registry/venues.py | test_venues (not test_registry: its validator checks) |
| budget | the size budget in newsletter/render/variant.py (BUDGET_FUNCTIONS) | test_render, test_corpus_render |

How: per module, the checkout's `newsletter/`, `tests/`, `bench/` and config are copied to var/mutation/<module>/
(the work tree is never touched), a `[tool.mutmut]` section naming that module and its tests is added to the
copy's pyproject.toml, and `mutmut run` is started there. mutmut first runs the tests once to learn which test
calls which function, then runs, per mutant, only those tests, stopping at the first failure. Deselected for
time: the PostgreSQL cases (unless --postgres; the SKIP LOCKED claims are PostgreSQL-only, so a few sender
mutants survive without them) and the SIGKILL test (a 12 s subprocess per surviving mutant). A second run of a module
resumes: only the mutants without a result are run (`--retest-survivors`: only the survivors, after adding
tests; mutmut collects which tests call what for the new tests alone). Results are read
from mutmut's own records (mutants/*.meta); `--survivors` lists the mutants no test noticed and
`--show MODULE:MUTANT` prints the diff of one.

Needs mutmut (the `mutation` extra, not a runtime dependency): `.venv/bin/pip install -e '.[mutation]'`.
Time on the 2-core development machine (shared with other work): several hours for everything; the ledger
alone about 45 min, the venue rules (1,370 mutants, a fresh import each) over an hour. `--only PATTERN` limits
a module to some functions (mutmut's mutant-name glob).

Last line: mutation_killed_ledger=<killed share of the ledger's mutants>; target >= 0.85.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "mutation"
COPY = ("newsletter", "tests", "bench", "newsletter.toml", "pyproject.toml")

BUDGET_FUNCTIONS = ("encoded_size", "html_encoded_size", "_rank", "_priority", "_split_budget", "_fits", "_largest")


@dataclass(frozen=True)
class Module:
    path: str
    patterns: tuple[str, ...]
    tests: tuple[str, ...]
    # "collect" (mutmut's default): the fork server imports the tests, and with them the module, once. "none":
    # every mutant imports it afresh, for modules that compute at import time or cache (the venue rules compile
    # their regexes at import and build the registry once): under "collect" those mutants could never act.
    warmup: str = "collect"
    # Every test of the module's files for every mutant, instead of mutmut's selection (the tests that called
    # the mutated function in its first run): the venue registry is built once, at import, so mutmut would
    # credit its builders to whichever test happened to import the module first, or to none.
    all_tests: bool = False


MODULES = {
    "ledger": Module(
        "newsletter/deliver/ledger.py",
        ("newsletter.deliver.ledger.*",),
        ("tests/test_ledger.py", "tests/test_deliver.py"),
    ),
    "sender": Module(
        "newsletter/deliver/sender.py",
        ("newsletter.deliver.sender.*",),
        ("tests/test_deliver.py", "tests/test_rate_limit.py"),
    ),
    "venues": Module(
        "newsletter/registry/venues.py",
        ("newsletter.registry.venues.*",),
        ("tests/test_venues.py",),
        "none",
        True,
    ),
    "budget": Module(
        "newsletter/render/variant.py",
        tuple(f"newsletter.render.variant.x_{f}__mutmut_*" for f in BUDGET_FUNCTIONS),
        ("tests/test_render.py", "tests/test_corpus_render.py"),
    ),
}
# mutmut's exit codes (mutmut.stats.status_by_exit_code): 1 and 3 = a test failed = killed.
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {5, 33}, {24, -24, 36, 152, 255}


def mutmut_config(module: Module, postgres: bool) -> str:
    args = ["-p", "no:cacheprovider", "-k", "not sigkill"] + ([] if postgres else ["-m", "not postgres"])
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["newsletter"]\n'
        f"only_mutate = {json.dumps([module.path])}\n"
        f"pytest_add_cli_args = {json.dumps(args)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(list(module.tests))}\n"
        'also_copy = ["bench", "newsletter.toml"]\n'
        'process_isolation = "forkserver"\n'  # engines, threads and SMTP servers of the stats run stay out of workers
        f'forkserver_warmup = "{module.warmup}"\n'
        "use_git_change_detection = false\n"
    )


def prepare(name: str, postgres: bool, fresh: bool) -> Path:
    """A copy of the checkout in var/mutation/<module> (kept between runs unless `fresh`)."""
    work = WORK / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for item in COPY:
        src, dst = ROOT / item, work / item
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (work / "pyproject.toml").write_text(config + mutmut_config(MODULES[name], postgres), encoding="utf-8")
    return work


def mutmut() -> Path:
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        sys.exit("mutmut is not installed: .venv/bin/pip install 'mutmut>=3.3' (dev only)")
    return exe


def exit_codes(name: str) -> dict[str, int | None]:
    """mutant name -> mutmut's exit code, for the mutants of this module's patterns."""
    module = MODULES[name]
    meta = WORK / name / "mutants" / f"{module.path}.meta"
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"] if meta.is_file() else {}
    return {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, p) for p in module.patterns)}


def widen_test_selection(name: str) -> None:
    """Point every function of the module at every test of its files in mutmut's stats (Module.all_tests)."""
    path = WORK / name / "mutants" / "mutmut-stats.json"
    stats = json.loads(path.read_text(encoding="utf-8"))
    tests = sorted(stats["duration_by_test"])
    for mutant in exit_codes(name):
        stats["tests_by_mangled_function_name"][mutant.partition("__mutmut_")[0]] = tests
    path.write_text(json.dumps(stats, indent=4), encoding="utf-8")


def to_run(name: str, only: str | None, survivors: bool) -> list[str]:
    """The mutant names (or globs) to hand to `mutmut run`. mutmut re-runs every mutant it is given by name,
    finished or not, so a resumed run names only the mutants without a result yet (or, after adding tests,
    only the survivors; or those of `--only`, again); the first run of a module gives the module's globs."""
    patterns = [only] if only else list(MODULES[name].patterns)
    codes = exit_codes(name)
    if not codes:
        return patterns
    wanted = sorted(k for k in codes if any(fnmatch.fnmatchcase(k, p) for p in patterns))
    if survivors:
        return [k for k in wanted if codes[k] in SURVIVED]
    return wanted if only else [k for k in wanted if codes[k] is None]  # --only: run those again


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code in TIMEOUT:
        return "timeout"  # the mutant made a test hang: noticed, counted as killed
    return "not run" if code is None else f"other ({code})"


def killed_share(c: Counter) -> float:
    total = sum(v for k, v in c.items() if k != "not run")
    return (c["killed"] + c["timeout"]) / total if total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="default: all, in turn")
    parser.add_argument(
        "--only", metavar="GLOB", help="only these mutants, e.g. 'newsletter.registry.venues.x__govern*'"
    )
    parser.add_argument("--postgres", action="store_true", help="also run the PostgreSQL cases (slower)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutants (the machine has 2 cores)")
    parser.add_argument("--fresh", action="store_true", help="start over (default: resume var/mutation/<module>)")
    parser.add_argument(
        "--retest-survivors", action="store_true", help="run only the mutants that survived last time (new tests)"
    )
    parser.add_argument("--report", action="store_true", help="only print the results of earlier runs")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument("--show", metavar="MODULE:MUTANT", help="print the diff of one mutant and exit")
    args = parser.parse_args()
    if args.show:
        name, mutant = args.show.split(":", 1)
        return subprocess.run([str(mutmut()), "show", mutant], cwd=WORK / name).returncode
    modules = args.module or sorted(MODULES)
    for name in [] if args.report else modules:
        work = prepare(name, args.postgres, args.fresh)
        if MODULES[name].all_tests:  # mutants and stats (of new tests too) first, no mutant run; then widen
            subprocess.run([str(mutmut()), "run", "no-such-mutant"], cwd=work, check=False, stdout=subprocess.DEVNULL)
            widen_test_selection(name)
        todo = to_run(name, args.only, args.retest_survivors)
        if not todo:
            print(f"{name}: nothing left to run (--fresh to start over)")
            continue
        command = [str(mutmut()), "run", "--max-children", str(args.max_children), *todo]
        shown = todo if len(todo) <= 3 else [*todo[:2], f"... ({len(todo)} names)"]
        print(f"$ {' '.join([*command[1:4], *shown])}   (in {work})", flush=True)
        subprocess.run(command, cwd=work, check=False, stdout=subprocess.DEVNULL)
    print()
    for name in modules:
        codes = exit_codes(name)
        c = Counter(status(code) for code in codes.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        print(f"{name:7s} {killed_share(c):6.1%} killed of {sum(c.values())} mutants ({detail})")
        if args.survivors:
            for mutant in sorted(k for k, v in codes.items() if v in SURVIVED):
                print(f"    survived: {mutant}")
    key = "ledger" if "ledger" in modules else modules[0]
    print(f"mutation_killed_{key}={killed_share(Counter(status(c) for c in exit_codes(key).values())):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
