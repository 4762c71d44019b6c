"""CSV exports of customers and ledger entries, streamed in constant memory."""
