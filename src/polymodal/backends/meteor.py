"""METEOR 1.5 (Denkowski and Lavie, 2014) through its Java implementation, as COCO evaluation runs it.

METEOR aligns a candidate with each reference through exact words, stems, WordNet synonyms and a
61 MB paraphrase table; no Python port gives the same numbers, so the original jar runs in one Java
process per call, in its ``-stdio`` mode with the options the COCO evaluation uses (``-l en -norm``).
The jar and its paraphrase data are those shipped in the `pycocoevalcap` package (or the jar named
by ``$POLYMODAL_METEOR_JAR``, with ``data/paraphrase-en.gz`` beside it); Java comes from Debian's
``default-jre-headless``. Where either is missing, `MeteorUnavailable` says what to install.

Protocol: one ``SCORE ||| ref ||| ref ||| candidate`` line per image returns its statistics; one
``EVAL ||| stats ||| stats ...`` line then returns one score per image and the corpus score.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from polymodal.errors import BackendUnavailableError

_JAVA_OPTIONS = ["-Xmx2G"]
_METEOR_OPTIONS = ["-", "-", "-stdio", "-l", "en", "-norm"]
TIMEOUT_S = 600.0  # a corpus of several thousand captions takes tens of seconds


class MeteorUnavailable(BackendUnavailableError):
    """Java or the METEOR 1.5 jar is missing."""

    def __init__(self, what: str):
        # BackendUnavailableError's constructor composes a pip message; this one names both fixes.
        Exception.__init__(self, what)


def find_jar() -> Path:
    """The METEOR 1.5 jar: ``$POLYMODAL_METEOR_JAR`` or the one inside the `pycocoevalcap` package."""
    configured = os.environ.get("POLYMODAL_METEOR_JAR")
    if configured:
        jar = Path(configured)
        if not jar.is_file():
            raise MeteorUnavailable(f"POLYMODAL_METEOR_JAR={configured} is not a file")
        return jar
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise MeteorUnavailable("the METEOR jar comes with the pycocoevalcap package: "
                                "pip install pycocoevalcap (or set POLYMODAL_METEOR_JAR)")
    jar = Path(next(iter(spec.submodule_search_locations))) / "meteor" / "meteor-1.5.jar"
    if not jar.is_file():
        raise MeteorUnavailable(f"{jar} is missing: reinstall pycocoevalcap")
    return jar


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MeteorUnavailable("METEOR runs on Java, which is not installed: "
                                "apt-get install -y default-jre-headless")
    return java


def _clean(text: str) -> str:
    # "|||" separates fields in the protocol; newlines end a request.
    return " ".join(text.replace("|||", " ").split())


def meteor_scores(references: dict, predictions: dict) -> tuple[float, dict]:
    """(corpus METEOR, {image: METEOR}) of tokenised ``predictions`` against ``references``."""
    jar, java = find_jar(), find_java()
    keys = list(predictions)
    process = subprocess.Popen([java, *_JAVA_OPTIONS, "-jar", jar.name, *_METEOR_OPTIONS],
                               cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        stats = []
        for key in keys:
            fields = ["SCORE", *(_clean(ref) for ref in references[key]), _clean(predictions[key])]
            process.stdin.write(" ||| ".join(fields) + "\n")
            process.stdin.flush()
            stats.append(process.stdout.readline().strip())
        process.stdin.write(" ||| ".join(["EVAL", *stats]) + "\n")
        process.stdin.flush()
        per_image = {key: float(process.stdout.readline()) for key in keys}
        corpus = float(process.stdout.readline())
    except (ValueError, BrokenPipeError) as exc:
        process.kill()
        detail = process.stderr.read()[-500:] if process.stderr else ""
        raise MeteorUnavailable(f"the METEOR process failed ({exc}): {detail.strip()}") from exc
    finally:
        if process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
    return corpus, per_image
