"""The chaos suite (issue 14): scenarios that break what Docket depends on — the controller
process, etcd, Mesos agents — while a mixed workload runs, then check invariants from the
sources of truth (the embedded Mesos' tasks and launch log, the queue sources, etcd).

`python -m tests.chaos --scenario NAME|all --seed N --minutes M` runs them at full length;
tests/chaos/test_*.py run short versions in the suite. tests/chaos/README.md has the layout
and the scenario interface."""
