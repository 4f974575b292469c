"""Similar past incidents: TF-IDF nearest neighbours over fault, host groups and evidence.

Called by ``rca.stage`` with the store's recent incidents. Each incident becomes one short
document (its fault name, its host's inventory groups, its evidence templated by ``rca.mask``);
the current diagnosis is the query. scikit-learn is imported here, when the stage runs, not at
start-up. What fixed a similar incident before (and what did not) is the most useful thing the
history can tell the on-call engineer and the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from orchestrator.models import Incident
from orchestrator.rca import mask
from orchestrator.rca.context import Similar

MIN_SIMILARITY = 0.1


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
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    docs = [document(i.fault, groups_of(i.host), _evidence(i.detail)) for i in candidates]
    vectorizer = TfidfVectorizer(token_pattern=r"[A-Za-z_][A-Za-z0-9_.-]+", sublinear_tf=True)
    matrix = vectorizer.fit_transform([*docs, query])
    scores = cosine_similarity(matrix[len(docs)], matrix[: len(docs)])[0]
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
