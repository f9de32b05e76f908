"""Metrics of the Mesos adapter: offers, launches, status updates and the connection.

Labels are bounded enums (task state, reconnect reason), never task or object names.
Every labelled series is created up front so dashboards show zeros instead of gaps.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OFFERS_RECEIVED = Counter("docket_mesos_offers_received_total", "Offers received from Mesos.")
OFFERS_DECLINED = Counter("docket_mesos_offers_declined_total", "Offers declined unused.")
OFFERS_USED = Counter("docket_mesos_offers_used_total",
                      "Offers accepted with at least one task launch.")
OFFERS_RESCINDED = Counter("docket_mesos_offers_rescinded_total",
                           "Offers rescinded by the master.")
TASKS_LAUNCHED = Counter("docket_mesos_tasks_launched_total",
                         "Tasks sent to Mesos in LAUNCH operations.")
LAUNCH_ERRORS = Counter("docket_mesos_launch_errors_total",
                        "Launches that could not be sent (bad task or failed ACCEPT).")
STATUS_UPDATES = Counter("docket_mesos_status_updates_total",
                         "Task status updates received, by state.", ["state"])
CONNECTED = Gauge("docket_mesos_connected",
                  "1 while subscribed to the Mesos master, else 0.")
SUBSCRIPTIONS = Counter("docket_mesos_subscriptions_total",
                        "Successful (re)subscriptions to the Mesos master.")
RECONCILIATIONS = Counter("docket_mesos_reconciliations_total",
                          "Reconciliations of every task with Mesos (on subscription and "
                          "periodic).")
RECONNECTS = Counter("docket_mesos_reconnects_total",
                     "Event streams dropped and reopened by Docket, by reason.", ["reason"])
PENDING_LAUNCHES = Gauge("docket_mesos_pending_launches",
                         "Launches waiting for a fitting offer (not those a throttle holds).")
THROTTLED_LAUNCHES = Gauge("docket_mesos_throttled_launches",
                           "Launches a throttle holds back at the last offer round: they wait "
                           "for room (a matching task to end), not for an offer.")
UPDATES_PENDING = Gauge("docket_mesos_updates_pending",
                        "Events from Mesos (mostly status updates) waiting to be recorded.")
ACKS_PENDING = Gauge("docket_mesos_acknowledgements_pending",
                     "Status updates recorded and waiting for their acknowledgement to be sent.")
SUPPRESSED = Gauge("docket_mesos_offers_suppressed",
                   "1 while offers are suppressed because nothing is pending.")

STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
          "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
          "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN")
RECONNECT_REASONS = ("heartbeat", "subscribe_timeout", "driver_died", "framework_removed")

for _state in STATES:
    STATUS_UPDATES.labels(_state)
for _reason in RECONNECT_REASONS:
    RECONNECTS.labels(_reason)
