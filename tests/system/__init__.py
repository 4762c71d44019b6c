"""System tests: real ``loyalty serve`` and CLI processes, fault injection, fuzzing,
models driven over the API."""
