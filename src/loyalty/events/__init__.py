"""Events domain."""
