"""The Mesos side of Docket: offers matched to pending launches, TaskInfo built from task
templates, and the pymesos driver adapter behind the small `MesosBackend` seam the controller
depends on. `adapter` is the only module in Docket that imports pymesos; `acks` (pipelined
acknowledgements) and `launches` (offers, agents' attributes) talk HTTP to the master for it;
`revive`, `calls`, `offers`, `constraints` and `taskinfo` are pure.
"""
