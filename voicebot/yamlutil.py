"""YAML for people who write ``yes``, ``no``, ``on`` and ``off`` as words.

PyYAML follows YAML 1.1, where ``yes``/``no``/``on``/``off`` (any case) are
booleans: a caller line ``- no`` would become ``False`` and an intent named
``yes`` would become ``True``. Our files follow YAML 1.2 here: only ``true`` and
``false`` are booleans; every other word stays a string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load(text: str) -> Any:
    """Parse one YAML document with YAML 1.2 booleans."""
    return yaml.load(text, Loader=Loader)


def compose(text: str) -> yaml.Node | None:
    """Compose one YAML document (nodes with line/column marks) with YAML 1.2 booleans."""
    return yaml.compose(text, Loader=Loader)
