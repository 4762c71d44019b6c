"""Builders and helpers shared by test modules.

Test modules import these from ``tests.support``, never from one another;
fixtures stay in ``tests/conftest.py``.
"""
