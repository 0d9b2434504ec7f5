"""Versioned shard schemas: one JSON file per kind and version under schemas/ (mertk.schemas).

A schema file names its columns with an Arrow type string (`string`, `int32`, `float32`, `bool`,
`binary`, `list<float32>`, `struct<au:int32, side:string>`, nested freely), a `nullable` flag and
value rules that `mertk validate` checks:

- numbers: `min`, `max` (inclusive); any scalar: `allowed` (list of values); strings: `pattern`
  (a regular expression matched against the whole value);
- lists: `length`, `min_length`, `max_length`, and `items` (the rules of each element);
- structs: `fields` (a mapping from field name to that field's rules, `nullable` included).

`row_rules` hold rules that span columns; `{"kind": "ordered", "columns": [a, b, c]}` requires
a <= b <= c wherever the values are not null.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import pyarrow as pa

SCHEMA_KEY = b"mertk.schema"
VERSION_KEY = b"mertk.schema_version"

_PRIMITIVES = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "binary": pa.binary(),
}


class SchemaError(ValueError):
    """A schema file that cannot be used, or a schema name/version that does not exist."""


def parse_arrow_type(text: str) -> pa.DataType:
    """Parse a type string such as `list<struct<au:int32, side:string>>` into an Arrow type."""
    parsed, rest = _parse_type(text.replace(" ", ""))
    if rest:
        raise SchemaError(f"unexpected text {rest!r} after type in {text!r}")
    return parsed


def _parse_type(text: str) -> tuple[pa.DataType, str]:
    if text.startswith("list<"):
        item, rest = _parse_type(text[len("list<") :])
        if not rest.startswith(">"):
            raise SchemaError(f"missing '>' closing list in {text!r}")
        return pa.list_(item), rest[1:]
    if text.startswith("struct<"):
        rest = text[len("struct<") :]
        fields = []
        while True:
            match = re.match(r"([A-Za-z_][A-Za-z0-9_]*):", rest)
            if not match:
                raise SchemaError(f"expected 'name:type' in struct at {rest!r}")
            field_type, rest = _parse_type(rest[match.end() :])
            fields.append(pa.field(match.group(1), field_type))
            if rest.startswith(","):
                rest = rest[1:]
                continue
            if rest.startswith(">"):
                return pa.struct(fields), rest[1:]
            raise SchemaError(f"expected ',' or '>' in struct at {rest!r}")
    match = re.match(r"[a-z0-9]+", text)
    if not match or match.group(0) not in _PRIMITIVES:
        raise SchemaError(f"unknown type at {text!r}; known: {', '.join(_PRIMITIVES)}, list<>, struct<>")
    return _PRIMITIVES[match.group(0)], text[match.end() :]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type_text: str
    arrow_type: pa.DataType
    nullable: bool
    rules: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Schema:
    name: str
    version: int
    description: str
    columns: tuple[ColumnSpec, ...]
    row_rules: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """`name.vN`, the form used in file names, manifests and messages."""
        return f"{self.name}.v{self.version}"

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema writers must produce, with the schema's identity in its metadata."""
        fields = [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        return pa.schema(fields, metadata={SCHEMA_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()})

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def table_from_rows(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Build a table of exactly this schema from a list of row dicts (missing keys are null)."""
        return pa.Table.from_pylist(rows, schema=self.arrow_schema())


_RULE_KEYS = {"nullable", "min", "max", "allowed", "pattern", "length", "min_length", "max_length", "items", "fields"}


def _check_rules(rules: dict[str, Any], where: str) -> None:
    unknown = set(rules) - _RULE_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown rule(s) {sorted(unknown)}")
    if "items" in rules:
        _check_rules(rules["items"], f"{where}.items")
    for name, sub in rules.get("fields", {}).items():
        _check_rules(sub, f"{where}.{name}")


def schema_from_dict(data: dict[str, Any]) -> Schema:
    try:
        columns = []
        for raw in data["columns"]:
            rules = {k: v for k, v in raw.items() if k not in ("name", "type", "nullable", "description")}
            _check_rules(rules, f"{data['name']}.v{data['version']}:{raw['name']}")
            columns.append(
                ColumnSpec(
                    name=raw["name"],
                    type_text=raw["type"],
                    arrow_type=parse_arrow_type(raw["type"]),
                    nullable=bool(raw.get("nullable", False)),
                    rules=rules,
                    description=raw.get("description", ""),
                )
            )
        return Schema(
            name=data["name"],
            version=int(data["version"]),
            description=data.get("description", ""),
            columns=tuple(columns),
            row_rules=tuple(data.get("row_rules", ())),
        )
    except KeyError as missing:
        raise SchemaError(f"schema file lacks the key {missing}") from None


@lru_cache(maxsize=None)
def load_schema(name: str, version: int) -> Schema:
    """Load `schemas/<name>.v<version>.json` from the installed package."""
    filename = f"{name}.v{version}.json"
    resource = resources.files("mertk.schemas").joinpath(filename)
    if not resource.is_file():
        known = ", ".join(available_schemas()) or "none"
        raise SchemaError(f"unknown schema {name}.v{version} (known: {known})")
    return schema_from_dict(json.loads(resource.read_text(encoding="utf-8")))


def available_schemas() -> list[str]:
    """Every `name.vN` shipped in mertk.schemas."""
    names = []
    for entry in resources.files("mertk.schemas").iterdir():
        match = re.fullmatch(r"(.+)\.v(\d+)\.json", entry.name)
        if match:
            names.append(f"{match.group(1)}.v{match.group(2)}")
    return sorted(names)
