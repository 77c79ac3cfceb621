"""Reading the images' Dockerfiles and .dockerignore the way Docker does, for the tests of
test_images.py and test_dockerfiles.py (no Docker needed)."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from deploy_helpers import REGISTRY, REPO

NAMEKO_DOCKERFILE = REPO / "services" / "nameko.Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def dockerfile_path(name: str):
    """The Dockerfile a registry entry's image is built from."""
    if REGISTRY[name].kind == "nameko":
        return NAMEKO_DOCKERFILE
    return REPO / "services" / REGISTRY[name].folder / "Dockerfile"


def dockerfile(name: str) -> str:
    """The Dockerfile a service's image is built from, with its build argument filled in."""
    text = dockerfile_path(name).read_text()
    if REGISTRY[name].kind == "nameko":
        return re.sub(r"\$\{?SERVICE\}?(?![A-Z_])", name, text)
    return text


@dataclass
class Instruction:
    keyword: str  # upper case
    arguments: str  # as written, continuation lines joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Instructions in order: comments and blank lines dropped, `\\` continuations joined
    (a comment line inside a continuation is dropped, as Docker does)."""
    found, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        current = ""
    return found


def stages(text: str) -> list[Stage]:
    result = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def copies(stage: Stage) -> list[list[str]]:
    """The COPY instructions of a stage as their words (--from=... kept)."""
    return [shlex.split(i.arguments) for i in stage.all("COPY")]


def pip_commands(text: str) -> list[tuple[str, list[str]]]:
    """(verb, arguments) of each `pip [--python P] install|wheel ...` in RUN instructions,
    up to the next `&&`; `--python P` is kept as an argument."""
    found = []
    for instruction in instructions(text):
        if instruction.keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", instruction.arguments):
            words = command.split()
            if not words or words[0] not in ("pip", "pip3") and words[:3] != ["python", "-m", "pip"]:
                continue
            words = words[3:] if words[0] == "python" else words[1:]
            options = []
            while words and words[0] == "--python":
                options += words[:2]
                words = words[2:]
            if words and words[0] in ("install", "wheel"):
                found.append((words[0], options + words[1:]))
    return found


def exec_form(arguments: str) -> list[str] | None:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def healthcheck(stage: Stage) -> tuple[dict, list[str] | None]:
    """(options, exec-form argv or None) of the stage's HEALTHCHECK."""
    [instruction] = stage.all("HEALTHCHECK")
    options, rest = {}, instruction.arguments
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    assert rest.startswith("CMD "), instruction.arguments
    return options, exec_form(rest[4:].strip())


# ------------------------------------------------------------------- .dockerignore

def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's (moby/patternmatcher) translation of a .dockerignore pattern: `*` and `?`
    within one path element, `**` across elements (`**/` also matches none), anchored."""
    regex, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if i + 1 == len(pattern):
                    regex += ".*"
                else:
                    if pattern[i + 1] == "/":
                        i += 1
                    regex += "(.*/)?"
            else:
                regex += "[^/]*"
        elif ch == "?":
            regex += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            regex += pattern[i:end + 1]
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(ch)
        i += 1
    return re.compile(regex + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern, str]]:
    """(negated, regex, pattern) of each line of a .dockerignore, in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = posixpath.normpath(pattern).lstrip("/")
        rules.append((negated, _pattern_regex(pattern), pattern))
    return rules


def excluded(path: str, rules) -> bool:
    """Whether Docker leaves a file out of the build context: the last rule that matches
    the path or one of its parent directories decides (MatchesOrParentMatches)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for negated, regex, _ in rules:
        if any(regex.match(candidate) for candidate in candidates):
            verdict = not negated
    return verdict
