"""The admin dashboard's figures, read from daily rollups kept with the ledger."""
