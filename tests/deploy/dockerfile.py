"""A small Dockerfile reader: stages, their parents, the files COPY'd into them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    name: str
    base: str
    lines: list[str] = field(default_factory=list)

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """(from-stage or None, sources, destination) for each COPY."""
        out = []
        for line in self.lines:
            if not line.startswith("COPY "):
                continue
            parts = line.split()[1:]
            src_from = None
            args = []
            for p in parts:
                if p.startswith("--from="):
                    src_from = p.split("=", 1)[1]
                elif p.startswith("--"):
                    continue
                else:
                    args.append(p)
            out.append((src_from, args[:-1], args[-1]))
        return out

    def instruction(self, name: str) -> list[str]:
        return [line[len(name) + 1:] for line in self.lines if line.startswith(name + " ")]


def logical_lines(text: str) -> list[str]:
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((buf + line).strip())
        buf = ""
    return out


def parse(path: Path) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current = None
    for line in logical_lines(path.read_text()):
        m = re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            current = Stage(name=m.group(2) or f"stage{len(stages)}", base=m.group(1))
            stages[current.name] = current
            continue
        if current is not None:
            current.lines.append(line)
    return stages


def ancestry(stages: dict[str, Stage], name: str) -> list[Stage]:
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].base
    return chain


def files_in(stages: dict[str, Stage], name: str) -> set[str]:
    """Absolute paths COPY'd into the stage or any stage it is built FROM."""
    files = set()
    for st in ancestry(stages, name):
        for _src_from, srcs, dest in st.copies():
            if dest.endswith("/"):
                files.update(dest + Path(s).name for s in srcs)
            else:
                files.add(dest)
    return files


def exec_form(arg: str) -> list[str] | None:
    arg = arg.strip()
    if arg.startswith("["):
        return json.loads(arg)
    return None
