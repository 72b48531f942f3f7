"""Autobahn|Testsuite harness: run compliance/autobahn.sh; see compliance/README.md."""
