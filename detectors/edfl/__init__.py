"""EDFL skeleton gate: skeleton prompts, ANSWER/REFUSE decision probabilities, ISR/B2T math.

    from detectors.edfl import EdflConfig, EdflGate
    result = await EdflGate(EdflConfig()).run(messages, sampler)

Public pieces (stable names; ``detectors/semantic`` reuses the first two):
    detectors.edfl.skeletons  build_skeletons, SkeletonConfig, Skeleton (pure, seeded)
    detectors.edfl.budget     bernoulli_kl, q_avg, q_lo, delta_bar, bits_to_trust, ... (pure)
    detectors.edfl.decision   decision prompt, label parsing, P(answer) estimators
    detectors.edfl.gate       EdflGate, EdflResult; detectors.edfl.config: EdflConfig
"""

from detectors.edfl.config import EdflConfig
from detectors.edfl.gate import EdflGate, EdflResult
from detectors.edfl.skeletons import Skeleton, SkeletonConfig, build_skeletons

__all__ = ["EdflConfig", "EdflGate", "EdflResult", "Skeleton", "SkeletonConfig", "build_skeletons"]
