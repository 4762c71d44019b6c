"""The ledger engine: the group-commit queue, the planner and ``BatchTx``.

It knows no operation kind and no database: kinds implement
``protocol.Operation`` (``loyalty.ledger.operations``), databases implement
``loyalty.ledger.engine.store.BatchStore``.
"""
