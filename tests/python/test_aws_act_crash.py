"""An act worker killed between StartBuild and the state write (issue 18): the recovery of a
deleted SSM parameter runs through the CodeBuild executor on moto. The apply project answers
StartBuild only 6 s after it recorded the build (the emulator's test hook, scripts/moto_launcher.py
patch 5), and the act worker is killed with SIGKILL while it waits: the build exists, the
incident in DynamoDB is EXECUTING with no build id. A second worker (another id) takes the
decisions shard after the failover time, reads the finding again (the incident exists: nothing
new starts), and its sweeper resumes the incident once it is stuck: it finds the build by its
CORRELATION_ID (ListBuildsForProject, BatchGetBuilds), verifies it instead of starting another,
runs the verify build, and the incident reaches RESOLVED with exactly one apply build."""
import json
import signal
import time
import uuid

from aws_support import (
    client,
    moto_endpoint,
    run_setup,
    stage_env,
    start_stage,
    stop_stage,
    unique_names,
    wait_for,
    write_config,
)

HOLD = "aiops-test: hold StartBuild response 6 s"


def finding(tag):
    now_us = int(time.time() * 1_000_000)
    return {
        "finding_id": f"crash-{tag}",
        "kind": "change_rule",
        "detector": "ssm_delete_parameter",
        "event_time": now_us - 5_000_000,
        "detected_at": now_us,
        "resource": {"resource_type": "ssm_parameter", "resource_id": f"/prod/payments/{tag}",
                     "account": "111122223333", "region": "us-east-1"},
        "score": 1.0,
        "summary": f"DeleteParameter of /prod/payments/{tag} by arn:aws:iam::111122223333:user/alice",
        "default_action": "restore",
        "recoverable": True,
        "priority": "HIGH",
        "evidence": {
            "event_ids": [f"ev-{tag}"], "event_source": "ssm.amazonaws.com", "event_name": "DeleteParameter",
            "principal": "arn:aws:iam::111122223333:user/alice", "source_ip": "203.0.113.7",
            "series_key": None, "window": None, "observed": None, "expected": None, "template": None,
            "samples": [],
        },
    }


def create_project(codebuild, name, description):
    codebuild.create_project(
        name=name, description=description,
        source={"type": "S3", "location": "aiops-terraform/recovery.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole="arn:aws:iam::123456789012:role/aiops-recovery",
    )


def test_act_killed_between_start_build_and_the_state_write_starts_one_build(aiops_bin, tmp_path):
    endpoint = moto_endpoint()
    names = unique_names()
    tag = uuid.uuid4().hex[:8]
    apply, verify = f"apply-{tag}", f"verify-{tag}"
    extra = f"""
[act.sweeper]
stuck_after_secs = 60
interval_secs = 2

[act.recovery]
executor = "codebuild"
apply_project = "{apply}"
verify_project = "{verify}"
poll_initial_ms = 200
poll_max_ms = 1000
"""
    config = write_config(tmp_path / "pipeline.toml", endpoint, names, extra=extra)
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)
    codebuild = client("codebuild", endpoint)
    create_project(codebuild, apply, HOLD)
    create_project(codebuild, verify, "verify")
    kinesis = client("kinesis", endpoint)
    dynamodb = client("dynamodb", endpoint)
    f = finding(tag)
    kinesis.put_record(StreamName=names["decisions"], Data=json.dumps(f).encode(), PartitionKey="k")
    incident_id = f"inc-{f['finding_id']}"

    def incident():
        item = dynamodb.get_item(TableName=names["incidents"], Key={"incident_id": {"S": incident_id}},
                                 ConsistentRead=True).get("Item")
        return item

    def apply_builds():
        return codebuild.list_builds_for_project(projectName=apply)["ids"]

    first = start_stage(aiops_bin, "act", config, env, "act-1", tmp_path / "act-1.log")
    try:
        # The build exists while act still waits for StartBuild's answer: kill it now.
        wait_for("the apply build in CodeBuild", lambda: len(apply_builds()) == 1, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    item = incident()
    assert item["workflow_state"]["S"] == "EXECUTING", item
    assert "build_ids" not in item or not item["build_ids"].get("L"), item

    second = start_stage(aiops_bin, "act", config, env, "act-2", tmp_path / "act-2.log")
    try:
        def finished():
            i = incident()
            return i is not None and i["workflow_state"]["S"] in ("RESOLVED", "FAILED")
        wait_for("the incident resumed by the sweeper", finished, timeout=150)
    finally:
        summary = stop_stage(second)
    item = incident()
    assert item["workflow_state"]["S"] == "RESOLVED", item
    builds = apply_builds()
    assert len(builds) == 1, builds
    verify_builds = codebuild.list_builds_for_project(projectName=verify)["ids"]
    assert len(verify_builds) == 1, verify_builds
    # The incident records the found apply build, then the verify build.
    text = json.dumps(item)
    assert builds[0] in text and verify_builds[0] in text, text
    log = (tmp_path / "act-2.log").read_text()
    assert "build started before a restart but never recorded" in log, log[-4000:]
    act = next(line for line in summary if line.get("stage") == "act")
    assert act["counters"]["resumed_incidents"] == 1, act
