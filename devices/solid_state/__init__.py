"""The solid-state synthesis lab's instruments: declarative descriptions (``*.yaml``) plus the few lines of Python
YAML cannot say (:mod:`.hooks`: watch alarms while waiting, fetch an XRD pattern as an array) and the robot arm's
driver (:mod:`.robot`: the declarative schema has no robot role). Their simulators are in
``labloop_simulators.solid_state_lab``; ``labloop sim serve solid_state`` starts them all."""
