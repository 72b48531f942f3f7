"""Run ``wstest`` with one progress line per case group, for compliance/autobahn.sh.

This file runs under the CPython 2.7 of the Autobahn|Testsuite environment, so it keeps to the
syntax both Python 2.7 and 3 accept (no f-strings, no annotations). The fuzzingclient prints
nothing while its ~20 minute run goes on; this wrapper hooks the factory's ``nextCase`` and writes
one line to stderr each time a new group starts (1.*, 2.*, ... 13.*; the slow groups 9.*, 12.* and
13.* by sub-group, e.g. 12.3), then hands over to ``wstest``'s own entry point with the
command-line arguments unchanged.
"""

import sys
import time

from autobahntestsuite import fuzzing, wstest

# Groups that take minutes each get a line per sub-group: 9.* (limits), 12.* and 13.* (deflate).
_SLOW_GROUPS = ("9", "12", "13")
_STARTED = time.time()
_state = {"group": None}
_original_next_case = fuzzing.FuzzingClientFactory.nextCase


def _say(text):
    elapsed = int(time.time() - _STARTED)
    sys.stderr.write("[autobahn] +" + str(elapsed // 60) + "m" + str(elapsed % 60).zfill(2) + "s ")
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _next_case(self):
    more = _original_next_case(self)
    if more:
        parts = self.currentCaseId.split(".")
        group = ".".join(parts[:2]) if parts[0] in _SLOW_GROUPS else parts[0] + ".*"
        if group != _state["group"]:
            position = str(self.currSpecCase + 1) + " of " + str(len(self.specCases))
            _say("cases " + group + " (case " + position + ")")
            _state["group"] = group
    else:
        _say("all " + str(len(self.specCases)) + " cases ran; writing the reports")
    return more


fuzzing.FuzzingClientFactory.nextCase = _next_case

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
