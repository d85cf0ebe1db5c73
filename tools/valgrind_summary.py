"""Summarise valgrind memcheck logs of a test run and flag the errors that matter.

Usage: python tools/valgrind_summary.py valgrind.*.log

CPython builds that are not configured for valgrind report a fixed set of
uninitialised-value warnings from their own objects (small ints, frames) and
ld.so reports a few invalid reads while loading libraries: those are counted
but not flagged. An error is flagged when any frame of its stack, or of the
stack where the uninitialised value was created (--track-origins=yes), lies
in backprop_fast, NumPy or SciPy (BLAS included) within its innermost
INNER frames (deeper callers do not count: CPython's own warnings also fire
while SciPy imports its modules). Exit status 1 if any is flagged.
"""
import collections
import re
import sys

HEADER = re.compile(r"==\d+== (Invalid (?:read|write|free)[^\n]*|Conditional jump[^\n]*|"
                    r"Use of uninitialised[^\n]*|Syscall param[^\n]*|Mismatched[^\n]*|"
                    r"Source and destination overlap[^\n]*)")
OURS = re.compile(r"backprop_fast|_kernel|_engine|numpy|_multiarray|scipy|openblas|cython_blas",
                  re.IGNORECASE)
INNER = 4


def _frames(text):
    return re.findall(r"(?:at|by) 0x[0-9A-Fa-f]+: [^\n]*", text)


def main(paths):
    kinds = collections.Counter()
    flagged = []
    for path in paths:
        with open(path, errors="replace") as f:
            text = f.read()
        for block in re.split(r"\n==\d+== \n", text):
            m = HEADER.search(block)
            if not m:
                continue
            kinds[re.sub(r"size \d+", "size N", m.group(1))] += 1
            stack, _, origin = block.partition("Uninitialised value was created")
            inner = _frames(stack)[:INNER] + _frames(origin)[:INNER + 1]  # + malloc
            if any(OURS.search(frame) for frame in inner):
                flagged.append((path, block))
    print(f"{sum(kinds.values())} error contexts printed in {len(paths)} log(s):")
    for kind, n in kinds.most_common():
        print(f"  {n:5d}  {kind}")
    print(f"{len(flagged)} involve backprop_fast, NumPy or SciPy")
    for path, block in flagged[:10]:
        print(f"----- {path}\n{block[:4000]}")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
