#!/usr/bin/env python3
"""What each part of the portable `gate` component costs, by crate (and by module for Cedar).

    python3 benches/size_breakdown.py [--top N]

Builds the portable component as host/build.rs does but keeps the function names (the shipped
build passes `--strip-all` to the linker), takes its core module out of the component, has
twiggy (`cargo install twiggy`) list every function and data segment, and sums the sizes by the
crate that owns them. A generic function of `core`, `alloc`, `std` or `hashbrown` instantiated
for another crate's type is counted for that crate ("via generics"): it is there because of it.
The `name` section itself is listed apart; the shipped component does not carry it.

Needs: cargo with the wasm32-wasip2 target, twiggy, python3. Uses its own target directory
(`$CARGO_TARGET_DIR/size-breakdown`, or `target/size-breakdown`) so the build of the product is
not disturbed.
"""

import argparse
import collections
import csv
import io
import os
import re
import subprocess
import sys

STD_CRATES = {"core", "alloc", "std", "hashbrown"}
# Cedar's core crate is most of the component; its modules say which feature costs what.
CEDAR_MODULES = [
    ("cedar_policy_core::validator::cedar_schema", "cedar_policy_core: schema text parser"),
    ("cedar_policy_core::validator", "cedar_policy_core: validator and schema"),
    ("cedar_policy_core::parser", "cedar_policy_core: policy parser"),
    ("cedar_policy_core::evaluator", "cedar_policy_core: evaluator"),
    ("cedar_policy_core::entities", "cedar_policy_core: entities and their JSON"),
    ("cedar_policy_core::est", "cedar_policy_core: JSON policy form (EST)"),
    ("cedar_policy_core::extensions", "cedar_policy_core: extensions"),
    ("cedar_policy_core::ast", "cedar_policy_core: AST"),
]


def leb128(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def core_module(component):
    """The largest core module of a component (section id 1): the engine; the others are shims."""
    at, modules = 8, []
    while at < len(component):
        section = component[at]
        size, at = leb128(component, at + 1)
        if section == 1:
            modules.append(component[at : at + size])
        at += size
    return max(modules, key=len)


def owner(name):
    """(crate or section, whether it is there through a generic of the standard library)."""
    if name.startswith("data segment") or "subsection" in name or name.startswith("custom section"):
        return f"[{name}]", False
    # The first segment of each path: the owner's, then those in generic arguments and impls.
    crates = re.findall(r"(?:^|[<,(\s&*])(?:dyn |mut |const )*([A-Za-z_][A-Za-z0-9_]*)(?:\[[0-9a-f]+\])?::", name)
    if not crates:
        return "[unnamed functions and tables]", False
    first = crates[0]
    if first in STD_CRATES:
        first = "Rust standard library"
        for crate in crates[1:]:
            if crate not in STD_CRATES:
                return refine(crate, name), True
        return first, False
    return refine(first, name), False


def refine(crate, name):
    if crate == "cedar_policy_core":
        for prefix, label in CEDAR_MODULES:
            if prefix in name:
                return label
        return "cedar_policy_core: other"
    if crate in ("regex", "regex_automata", "regex_syntax", "aho_corasick", "memchr"):
        return "regex family (Cedar's lexer, lalrpop-util)"
    return crate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=30, help="rows to print")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "size-breakdown")
    build = ["cargo", "rustc", "--package", "agentgate-engine", "--lib", "--crate-type", "cdylib",
             "--target", "wasm32-wasip2", "--profile", "wasm", "--target-dir", target]
    subprocess.run(build, cwd=root, check=True)
    wasm = os.path.join(target, "wasm32-wasip2", "wasm", "agentgate_engine.wasm")
    module_path = os.path.join(target, "gate-core-with-names.wasm")
    with open(wasm, "rb") as f:
        module = core_module(f.read())
    with open(module_path, "wb") as f:
        f.write(module)
    listing = subprocess.run(["twiggy", "top", "-n", "1000000", "-f", "csv", module_path],
                             check=True, capture_output=True, text=True).stdout
    sizes, via = collections.Counter(), collections.Counter()
    for row in csv.DictReader(io.StringIO(listing)):
        who, generic = owner(row["Name"])
        sizes[who] += int(row["ShallowSize"])
        if generic:
            via[who] += int(row["ShallowSize"])
    total = sum(sizes.values())
    names = sum(v for k, v in sizes.items() if "function names" in k)
    print(f"core module {total:,} B with names, {total - names:,} B without (the shipped form)\n")
    print(f"| part | bytes | share of shipped | of which via generics |\n|---|---|---|---|")
    for who, size in sizes.most_common(args.top):
        if "function names" in who:
            continue
        print(f"| {who} | {size:,} | {100 * size / (total - names):.1f} % | {via[who]:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
