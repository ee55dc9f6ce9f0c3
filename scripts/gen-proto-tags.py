#!/usr/bin/env python3
"""Generates crates/api/src/protobuf/tags.rs: the protobuf field numbers of the API types.

The Kubernetes protobuf wire format numbers every field of every Go API struct through
its `protobuf:"..."` struct tag (go-to-protobuf writes generated.proto from those tags).
The Go tags are also the only place that says what JSON makes of a field: its JSON name,
whether it is `omitempty`, whether it is a pointer (a present zero is then meaningful),
and whether it is an embedded struct that JSON inlines into its parent. So the table is
derived from the Go sources of kubernetes/api and kubernetes/apimachinery at a release
tag, read straight out of git:

    scripts/gen-proto-tags.py --api ~/src/kubernetes-api --apimachinery ~/src/apimachinery \
        --ref v0.33.9 > crates/api/src/protobuf/tags.rs

Each message becomes `(definition name, [fields in Go declaration order])`, sorted by
definition name, and each field one of:
  Keep(tag, "jsonName")      a present value is kept as is, zero or not
  OmitZero(tag, "jsonName")  a non-pointer scalar with omitempty: json.Marshal drops zero
  Inline(tag, "definition")  an embedded struct whose fields JSON inlines into the parent
Types with their own protobuf form (Time, MicroTime, Quantity, IntOrString, RawExtension,
FieldsV1, Duration) have no JSON-named fields, are left out, and are decoded by hand.
"""

import argparse
import re
import subprocess
import sys

# Go package directory (repository, path) -> OpenAPI definition prefix.
API_PACKAGES = ["core/v1", "apps/v1", "batch/v1", "discovery/v1", "coordination/v1",
                "events/v1", "node/v1", "autoscaling/v1", "policy/v1", "scheduling/v1",
                "storage/v1", "authentication/v1", "networking/v1"]
APIMACHINERY_PACKAGES = ["pkg/apis/meta/v1", "pkg/runtime", "pkg/util/intstr", "pkg/api/resource",
                         "pkg/types"]

GO_SCALARS = {"string", "bool", "int", "int32", "int64", "uint32", "uint64", "float32",
              "float64", "byte", "[]byte"}


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True).stdout


def import_path_of(repo_kind, pkg):
    if repo_kind == "api":
        return "k8s.io/api/" + pkg
    return "k8s.io/apimachinery/" + pkg


def definition_prefix(import_path):
    if import_path.startswith("k8s.io/api/"):
        return "io.k8s.api." + import_path[len("k8s.io/api/"):].replace("/", ".")
    if import_path.startswith("k8s.io/apimachinery/"):
        return "io.k8s.apimachinery." + import_path[len("k8s.io/apimachinery/"):].replace("/", ".")
    return None


def go_sources(repo, ref, pkg):
    names = git(repo, "ls-tree", "--name-only", ref, pkg + "/").split()
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if (not base.endswith(".go") or base.endswith("_test.go") or base.endswith(".pb.go")
                or base.startswith("zz_generated") or "swagger_doc" in base or "fuzz" in base):
            continue
        yield git(repo, "show", f"{ref}:{name}")


IMPORT_RE = re.compile(r'^\s*(?:(\w+)\s+)?"([^"]+)"\s*$')
NAMED_SCALAR_RE = re.compile(r"^type (\w+) (\*?[\w\[\]]+)\s*(//.*)?$")
STRUCT_RE = re.compile(r"^type (\w+) struct \{\s*$")
FIELD_RE = re.compile(r"^\s+(?:(\w+)\s+)?([\w\.\*\[\]]+)\s+`([^`]*)`")
TAG_RE = re.compile(r'(\w+):"([^"]*)"')


def parse_imports(src):
    imports = {}
    in_block = False
    for line in src.splitlines():
        if line.startswith("import ("):
            in_block = True
            continue
        if in_block and line.startswith(")"):
            in_block = False
            continue
        single = line.startswith("import ")
        if in_block or single:
            m = IMPORT_RE.match(line[len("import "):] if single else line)
            if m:
                path = m.group(2)
                alias = m.group(1) or path.rsplit("/", 1)[-1]
                imports[alias] = path
    return imports


class Package:
    def __init__(self, import_path):
        self.import_path = import_path
        self.prefix = definition_prefix(import_path)
        self.scalars = set()  # named types whose underlying type is a Go scalar
        self.structs = []  # (name, [(go type, tags dict)], imports)


def parse_package(pkg, sources):
    for src in sources:
        imports = parse_imports(src)
        lines = src.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            m = NAMED_SCALAR_RE.match(line)
            if m and m.group(2) in GO_SCALARS:
                pkg.scalars.add(m.group(1))
            m = STRUCT_RE.match(line)
            if not m:
                i += 1
                continue
            fields = []
            i += 1
            while i < len(lines) and not lines[i].startswith("}"):
                body = lines[i]
                i += 1
                if body.strip().startswith("//"):
                    continue
                f = FIELD_RE.match(body)
                if f:
                    fields.append((f.group(2), dict(TAG_RE.findall(f.group(3))), f.group(1)))
            pkg.structs.append((m.group(1), fields, imports))
            i += 1


def resolve(packages, pkg, imports, go_type):
    """(package, type name) of a named Go type as written in `pkg`."""
    if "." in go_type:
        alias, name = go_type.split(".", 1)
        return packages.get(imports.get(alias)), name
    return pkg, go_type


def is_scalar(packages, pkg, imports, go_type):
    if go_type in GO_SCALARS:
        return True
    if go_type.startswith("[]") or go_type.startswith("map["):
        return False
    owner, name = resolve(packages, pkg, imports, go_type)
    return owner is not None and name in owner.scalars


def messages(packages):
    out = {}
    for pkg in packages.values():
        for name, fields, imports in pkg.structs:
            rows = []
            for go_type, tags, field_name in fields:
                proto = tags.get("protobuf")
                if not proto or proto == "-":
                    continue
                tag = int(proto.split(",")[1])
                json_tag = tags.get("json", "")
                json_name, _, options = json_tag.partition(",")
                pointer = go_type.startswith("*")
                base = go_type.lstrip("*")
                if json_name == "" and "inline" in options.split(","):
                    owner, inner = resolve(packages, pkg, imports, base)
                    if owner is None:
                        sys.exit(f"{name}: cannot resolve inlined type {go_type}")
                    rows.append(f'Inline({tag}, "{owner.prefix}.{inner}")')
                    continue
                if json_name in ("", "-"):
                    continue
                omit = ("omitempty" in options.split(",") and not pointer
                        and is_scalar(packages, pkg, imports, base))
                rows.append(f'{"OmitZero" if omit else "Keep"}({tag}, "{json_name}")')
            if rows:
                out[f"{pkg.prefix}.{name}"] = rows
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", required=True, help="git repository of kubernetes/api")
    ap.add_argument("--apimachinery", required=True, help="git repository of kubernetes/apimachinery")
    ap.add_argument("--ref", required=True, help="release tag, e.g. v0.33.9")
    args = ap.parse_args()

    packages = {}
    for repo, kind, pkgs in ((args.api, "api", API_PACKAGES),
                             (args.apimachinery, "apimachinery", APIMACHINERY_PACKAGES)):
        for p in pkgs:
            package = Package(import_path_of(kind, p))
            parse_package(package, go_sources(repo, args.ref, p))
            packages[package.import_path] = package

    table = messages(packages)
    print(f"// @generated by scripts/gen-proto-tags.py from kubernetes/api and "
          f"kubernetes/apimachinery {args.ref}. Do not edit.")
    print("//")
    print("// Protobuf field numbers of the API types, with the JSON name of each field.")
    print()
    print("use super::Field::{self, Inline, Keep, OmitZero};")
    print()
    print("/// Every message by definition name (sorted), with its fields in Go declaration order.")
    print("#[rustfmt::skip]")
    print("pub(super) static MESSAGES: &[(&str, &[Field])] = &[")
    for def_name in sorted(table):
        print(f'    ("{def_name}", &[')
        line = "       "
        for row in table[def_name]:
            if len(line) + len(row) + 2 > 100:
                print(line)
                line = "       "
            line += " " + row + ","
        print(line)
        print("    ]),")
    print("];")


if __name__ == "__main__":
    main()
