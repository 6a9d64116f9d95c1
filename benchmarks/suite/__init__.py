"""The benchmark suite behind ``benchmarks/run.py`` (``make bench``): engines, timing, profiles, roofline, report."""
