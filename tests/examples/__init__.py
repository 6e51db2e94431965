"""Tests of the examples: each app and its fake upstream served over real HTTP."""
