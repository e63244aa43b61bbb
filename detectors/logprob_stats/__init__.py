"""The free white-box scores as detectors: one number read off the answer's own token
logprobs, no model and no extra upstream call.

    mean_logprob   risk = s / (1 + s),  s = −(1/T) Σ_t log p_t         (−mean token logprob)
    min_logprob    risk = s / (1 + s),  s = −min_t log p_t              (−min token logprob)
    topk_entropy   risk = (1/T) Σ_t H_t / log K_t                       (mean top-k entropy)
    seq_prob       risk = 1 − exp((1/T) Σ_t log p_t)                    (length-normalised
                                                                         sequence probability)

``stats`` holds the pure functions, ``spec`` the registrations, ``detector`` the plug-in
and its calibrated thresholds (``calibration.json``, chosen on a validation split by
``hallgate calibrate-logprob-stats``).
"""
