"""Test harnesses (soak): run from the repository, not shipped in runtime_py."""
