"""`jarvis swarm`: locust swarms of self-interrupting chat users, with pass/fail thresholds.

Locust runs in subprocesses (`loadtests/locustfile.py`); this package never
imports it. It reads locust's CSV reports back and judges them.
"""
