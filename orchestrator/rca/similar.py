"""Similar past incidents: TF-IDF nearest neighbours over fault, host groups and evidence.

Called by ``rca.stage`` with the store's recent incidents. Each incident becomes one short
document (its fault name, its host's inventory groups, its evidence templated by ``rca.mask``);
the current diagnosis is the query. The TF-IDF is scikit-learn's (smoothed idf, sublinear tf,
l2 norm) written out: a few hundred short documents need no matrix library, and importing
scikit-learn for them cost ``selfheal serve`` 112 MB of RSS (benchmarks/serve_load.py). What
fixed a similar incident before (and what did not) is the most useful thing the history can tell
the on-call engineer and the model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from orchestrator.models import Incident
from orchestrator.rca import mask
from orchestrator.rca.context import Similar

MIN_SIMILARITY = 0.1
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]+")


def document(fault: str, groups: Sequence[str], evidence: Sequence[str]) -> str:
    """The text an incident is compared by (the fault name counts twice: it matters most)."""
    words = " ".join(mask.template(str(e), 200) for e in evidence[:10])
    return f"{fault} {fault} {' '.join(groups)} {words}"


def similar(query: str, past: Sequence[Incident],
            groups_of: Callable[[str], Sequence[str]], k: int = 3,
            exclude: int | None = None) -> tuple[Similar, ...]:
    """The ``k`` past incidents closest to ``query`` (cosine over TF-IDF), best first."""
    candidates = [i for i in past if i.id != exclude]
    if not candidates:
        return ()
    docs = [document(i.fault, groups_of(i.host), _evidence(i.detail)) for i in candidates]
    *vectors, asked = _tfidf([*docs, query])
    scores = [sum(w * asked.get(t, 0.0) for t, w in v.items()) for v in vectors]
    ranked = sorted(zip(scores, candidates, strict=True), key=lambda p: (-p[0], -p[1].id))
    return tuple(Similar(incident=i.id, host=i.host, fault=i.fault, state=i.state.value,
                         remediation=i.remediation,
                         outcome=str(i.detail.get("outcome")) if i.detail.get("outcome")
                         else None, similarity=round(float(score), 3),
                         detected_at=i.detected_at)
                 for score, i in ranked[:k] if score >= MIN_SIMILARITY)


def _evidence(detail: Mapping[str, object]) -> list[str]:
    evidence = detail.get("evidence")
    return [str(e) for e in evidence] if isinstance(evidence, list) else []


def _tfidf(texts: Sequence[str]) -> list[dict[str, float]]:
    """Each text as unit-length TF-IDF weights by lower-cased token, as scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True)``: tf 1 + ln(count), idf ln((1 + n) / (1 + df)) + 1."""
    counts = [Counter(TOKEN.findall(text.lower())) for text in texts]
    df = Counter(token for c in counts for token in c)
    idf = {t: math.log((1 + len(texts)) / (1 + n)) + 1 for t, n in df.items()}
    vectors = []
    for c in counts:
        weights = {t: (1 + math.log(n)) * idf[t] for t, n in c.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        vectors.append({t: w / norm for t, w in weights.items()})
    return vectors
