"""The merchant's staff users: accounts with a role and an argon2 password."""
