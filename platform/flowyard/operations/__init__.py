"""What people do to the running system: deploy, undeploy, roll back, replay.

Operations sit above the store (which only persists) and the engine (which only runs
steps): they load flows, run them, and record the outcome through the store. The CLI,
the web UI and the runtime's GitOps follower all call these, so each action has one
code path.
"""
