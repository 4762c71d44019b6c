"""The ledger's operation kinds: one module each, each a value type implementing
``loyalty.ledger.engine.protocol.Operation``.

- ``adjust`` — a manual credit or debit;
- ``holds`` — a credit held as pending, released early or cancelled;
- ``maintenance`` — the scheduler's pass: expiry, due holds, tier recheck;
- ``redemptions`` — redeeming a reward, reverting one;
- ``orders`` — an order recorded and earning once (``referrals`` completes a referral);
- ``refunds`` — taking an order's points back in proportion;
- ``actions`` — rewarding a customer action per its earn rule;
- ``transfers`` — points moved from one customer to another.
"""
