"""Calibration bundles: everything a gate learns about one upstream model, in one
versioned directory, and the code that builds, loads and serves them. No HTTP here.

    calibration/bundle.py   the bundle's schema (pydantic) and its loader
    calibration/store.py    the bundles bound to a gateway's models, hot-reloaded
    calibration/binding.py  what a request's profile gets from its model's bundle
    calibration/build.py    a bundle from a recorded corpus (python -m calibration.build)
    calibration/bundles/    the shipped bundles, one directory per model name
"""
