"""Semantic-entropy gate: sampled answers, meaning clusters, skeleton priors.

Public pieces:
    detectors.semantic.gate        SemanticGate, SampleSet, semantic_verdict
    detectors.semantic.config      SemanticConfig
    detectors.semantic.result      SemanticResult, MeaningCluster, GateCost
    detectors.semantic.entailment  Entailment, EquivalenceJudge, make_entailment
    detectors.semantic.clustering  cluster_answers, semantic_entropy, masses (pure)
    detectors.semantic.prior       skeleton projection with OTHER, multi-class KL (pure)

Importing this package loads no model; backends load theirs on first use.
"""

from detectors.semantic.config import SemanticConfig
from detectors.semantic.gate import SampleSet, SemanticGate
from detectors.semantic.result import SemanticResult

__all__ = ["SampleSet", "SemanticConfig", "SemanticGate", "SemanticResult"]
