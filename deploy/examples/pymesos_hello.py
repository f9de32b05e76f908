"""A plain pymesos scheduler that runs `echo hello` once on any Mesos master, e.g. the
embedded one:  docket local-mesos &  python deploy/examples/pymesos_hello.py 127.0.0.1:5050"""

import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

done = threading.Event()


class Hello(Scheduler):
    launched = False

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if self.launched:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})
                continue
            self.launched = True
            driver.launchTasks(offer["id"], [{
                "name": "hello", "task_id": {"value": "hello"}, "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                "command": {"value": "echo hello"},
            }])

    def statusUpdate(self, driver, update):
        print(update["task_id"]["value"], update["state"], update.get("message", ""))
        driver.acknowledgeStatusUpdate(update)
        if update["state"] in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST",
                               "TASK_ERROR", "TASK_DROPPED"):
            done.set()


def main(master: str) -> None:
    framework = {"user": "nobody", "name": "hello", "capabilities": [{"type": "PARTITION_AWARE"}]}
    driver = MesosSchedulerDriver(Hello(), framework, master, use_addict=False,
                                  implicit_acknowledgements=False)
    driver.start()
    done.wait(60)
    driver.stop()  # a one-shot framework: tear down
    driver.join()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5050")
