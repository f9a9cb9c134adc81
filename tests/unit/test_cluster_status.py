"""Readiness and diagnosis of workloads: pure functions over API objects."""

from __future__ import annotations

from labkit.ops.image import IMAGE
from labkit.runtime import k8s_status as ks


def deploy(want=2, generation=1, **status):
    return {"kind": "Deployment", "metadata": {"generation": generation},
            "spec": {"replicas": want}, "status": status}


def test_deployment_rollout_like_kubectl():
    assert ks.deployment_state(deploy(observedGeneration=0)).detail.startswith("waiting for")
    assert ks.deployment_state(deploy(observedGeneration=1, updatedReplicas=1)).detail == \
        "1/2 replicas updated"
    s = ks.deployment_state(deploy(observedGeneration=1, updatedReplicas=2, replicas=3))
    assert s.phase == ks.PROGRESSING and "old replica" in s.detail
    s = ks.deployment_state(deploy(observedGeneration=1, updatedReplicas=2, replicas=2,
                                   availableReplicas=1))
    assert s.detail == "1/2 replicas available"
    s = ks.deployment_state(deploy(observedGeneration=1, updatedReplicas=2, replicas=2,
                                   availableReplicas=2))
    assert s.phase == ks.READY and s.done
    stuck = deploy(observedGeneration=1, conditions=[{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "x" has timed out progressing.'}])
    assert ks.deployment_state(stuck).phase == ks.FAILED


def test_zero_replicas_is_ready():
    assert ks.deployment_state(deploy(want=0, observedGeneration=1)).phase == ks.READY


def test_statefulset_readiness():
    sts = {"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 1, "readyReplicas": 0}}
    assert ks.workload_state(sts).detail == "0/1 ready"
    sts["status"].update(readyReplicas=1, currentRevision="a", updateRevision="b")
    assert ks.workload_state(sts).phase == ks.PROGRESSING
    sts["status"]["currentRevision"] = "b"
    assert ks.workload_state(sts).phase == ks.READY


def test_job_states():
    job = {"kind": "Job", "spec": {}, "status": {"active": 1}}
    assert ks.workload_state(job).phase == ks.PROGRESSING
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert ks.workload_state(job).phase == ks.READY
    job["status"]["conditions"] = [{"type": "Failed", "status": "True",
                                    "reason": "DeadlineExceeded", "message": "too slow"}]
    assert ks.workload_state(job).detail == "failed: DeadlineExceeded too slow"
    assert ks.workload_state({"kind": "Job", "spec": {"suspend": True}}).phase == ks.SUSPENDED
    assert ks.workload_state(None).phase == ks.MISSING


def test_gateway_states():
    assert ks.gateway_state(None).phase == ks.MISSING
    assert "no Gateway implementation" in ks.gateway_state({"status": {}}).detail
    gw = {"status": {"conditions": [{"type": "Accepted", "status": "False",
                                     "reason": "InvalidParameters", "message": "no such class"}]}}
    assert ks.gateway_state(gw).phase == ks.FAILED
    gw = {"status": {"addresses": [{"value": "172.18.0.7"}],
                     "conditions": [{"type": "Programmed", "status": "True"}]}}
    assert ks.gateway_state(gw).detail == "address 172.18.0.7"


def pod(name="p", phase="Running", statuses=(), conditions=(), image=IMAGE):
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": image}]},
            "status": {"phase": phase, "containerStatuses": list(statuses),
                       "conditions": list(conditions)}}


def waiting(reason, restarts=0, message="", last=None, image=IMAGE):
    cs = {"name": "c", "image": image, "ready": False, "restartCount": restarts,
          "state": {"waiting": {"reason": reason, "message": message}}}
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


def test_image_pull_of_the_lab_image_says_how_to_load_it():
    lines = ks.pod_problems(pod(statuses=[waiting("ErrImagePull")]))
    assert len(lines) == 1 and "labkit image build --kind <cluster>" in lines[0]
    assert ks.fatal([pod(statuses=[waiting("ImagePullBackOff")])])


def test_image_pull_of_a_third_party_image_is_not_fatal_yet():
    p = pod(statuses=[waiting("ImagePullBackOff", image="postgres:17.2-alpine")],
            image="postgres:17.2-alpine")
    assert "cannot pull postgres:17.2-alpine" in ks.pod_problems(p)[0]
    assert ks.fatal([p]) == []


def test_crash_loops_become_fatal_after_a_few_restarts():
    last = {"exitCode": 1, "reason": "Error"}
    assert ks.fatal([pod(statuses=[waiting("CrashLoopBackOff", 1, last=last)])]) == []
    lines = ks.fatal([pod(statuses=[waiting("CrashLoopBackOff", 3, last=last)])])
    assert "restarts 3; last exit 1 Error" in lines[0]
    oom = ks.pod_problems(pod(statuses=[waiting("CrashLoopBackOff", 3, last={
        "exitCode": 137, "reason": "OOMKilled"})]))
    assert "raise resources.limits.memory" in oom[0]


def test_config_errors_are_fatal():
    p = pod(statuses=[waiting("CreateContainerConfigError",
                              message='secret "postgres-credentials" not found')])
    assert 'secret "postgres-credentials" not found' in ks.fatal([p])[0]


def test_unschedulable_and_not_ready_pods():
    p = pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                          "reason": "Unschedulable",
                                          "message": "0/3 nodes are available"}])
    assert ks.pod_problems(p) == ["pod p: Pending, not scheduled (Unschedulable): 0/3 nodes are "
                                  "available"]
    running = pod(statuses=[{"name": "c", "ready": False, "state": {"running": {}}}])
    assert "readiness probe fails" in ks.pod_problems(running)[0]
    ok = pod(statuses=[{"name": "c", "ready": True, "state": {"running": {}}}])
    assert ks.pod_problems(ok) == []


def test_recent_events_put_warnings_first_and_count_repeats_once():
    events = [
        {"type": "Normal", "reason": "Pulled", "message": "ok", "lastTimestamp": "3",
         "involvedObject": {"kind": "Pod", "name": "p"}},
        {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: 503",
         "count": 7, "lastTimestamp": "2", "involvedObject": {"kind": "Pod", "name": "p"}},
        {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: 503",
         "count": 7, "lastTimestamp": "1", "involvedObject": {"kind": "Pod", "name": "p"}},
    ]
    assert ks.recent_events(events) == [
        "Warning Unhealthy pod/p: Readiness probe failed: 503 (x7)", "Normal Pulled pod/p: ok"]


def test_diagnose_without_pods_points_at_admission_problems():
    lines = ks.diagnose([], [{"type": "Warning", "reason": "FailedCreate",
                              "message": 'pods "x" is forbidden: violates PodSecurity',
                              "involvedObject": {"kind": "ReplicaSet", "name": "x-1"}}])
    assert lines[0].startswith("no pods were created")
    assert "Warning FailedCreate replicaset/x-1: pods \"x\" is forbidden" in lines[-1]
