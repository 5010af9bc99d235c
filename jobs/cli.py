"""The ``qcrd`` console script: ``qcrd distill ...``, ``qcrd build-teacher ...``, ``qcrd build-student ...``, ``qcrd serve-teacher ...``, ``qcrd serve-judge ...``."""

from __future__ import annotations

import sys

COMMANDS = {
    "distill": "jobs.distill",
    "build-teacher": "jobs.build_teacher",
    "build-student": "jobs.build_student",
    "serve-teacher": "jobs.serve_teacher",
    "serve-judge": "jobs.serve_judge",
    "rate-rationales": "jobs.rate_rationales",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: qcrd {{{','.join(COMMANDS)}}} [options]   (qcrd COMMAND --help for each)", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
