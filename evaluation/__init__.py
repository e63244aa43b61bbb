"""Measuring the detectors and calibrating their thresholds; not part of the gateway.

    evaluate.py        ``hallgate eval`` (live, ``--record DIR``, ``--replay DIR``) and
                       ``hallgate calibrate``: QA items through a gateway, results, LTT
    report.py          results.json / report.md / plots: AUROC, AURAC, PRR with bootstrap
                       intervals, per source and pooled
    data.py            the labelled QA sets (the shared data directory) and their prompts
    halt_commands.py   ``hallgate halt collect | train | evaluate``
    combiner.py        fitting the learned combiner (``calibrate --fit-combiner``)

Recordings that ``--replay`` re-runs offline are data, not code: ../recordings/.

The gateway is only ever reached over HTTP (the official openai client) or started as a
child process, so these commands measure exactly what clients get.
"""
