"""A quiet console: what Ray's workers, Ray itself, transformers and DeepSpeed print goes to the run's log file
(``run.log`` in the run directory), so that the console shows the driver's own lines; ``--verbose`` keeps
everything on the console as Ray and the libraries print it. Errors still reach the console: the driver turns
each into one line.

Ray has no public hook for where its driver echoes worker output: the one used here, the driver's standard
stream dispatcher, is Ray's own (``ray._private.ray_logging``); if it moves, the echoes simply stay on the console.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

RAY_ECHO_HANDLER = "ray_print_logs"  # the name ray.init gives its handler of worker output


def libraries_into(log: TextIO) -> None:
    """The driver's Python logging (Ray's, transformers', DeepSpeed's, warnings) into ``log``, not the console.
    Call after ``import ray`` (which installs its own console handler) and before ``ray.init``."""
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("ray", "ray.train", "ray.data", "ray.serve", "deepspeed", "DeepSpeed"):
        library = logging.getLogger(name)
        for console in list(library.handlers):
            library.removeHandler(console)
        library.propagate = True
    logging.captureWarnings(True)
    import transformers

    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.disable_progress_bar()


def workers_into(log: TextIO) -> bool:
    """Ray's echoes of its workers' output (prints, progress bars, warnings) into ``log``; after ``ray.init``.
    False when Ray's dispatcher is not where this expects it (the echoes then stay on the console)."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False

    def write(data: dict) -> None:
        if log.closed:  # the run has ended; Ray may still echo its workers' last words
            return
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')}) " if who else f"(pid={data.get('pid')}) "
        log.writelines(prefix + line + "\n" for line in data.get("lines", []))
        log.flush()

    dispatcher.remove_handler(RAY_ECHO_HANDLER)
    dispatcher.add_handler("qcrd_run_log", write)
    return True


def open_run_log(path: Path) -> TextIO:
    """The run's log, appended to (a resumed run adds to it), line-buffered so a killed run leaves what it had."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8", buffering=1)
