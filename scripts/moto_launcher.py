"""Starts moto in server mode on 127.0.0.1 for the aiops tests (see DESIGN §8), with five
small patches that make the emulator behave like the services where the tests depend on it:

1. Kinesis `Shard.get_max_sequence_number` (and `get_min_sequence_number`) walk every record of
   the shard (`list(self.records.keys())[-1]`), so each put gets slower as a shard fills
   (sharply past ~20k records per shard). The records are an ordered dict keyed by
   sequence number: the last (first) key is the answer, found in O(1).
2. Kinesis `Shard.put_record` reads the last sequence number and then stores the record
   without a lock ("not safe for concurrency" says moto): two concurrent PutRecords on one
   shard could get the same sequence number and one record would be lost. A lock makes
   it atomic, as the service is.
3. CloudWatch Logs subscription deliveries to Kinesis carry `logEvents[].id` as an integer;
   CloudWatch Logs sends a string (the event id is a 56-digit decimal string). The ids are
   stringified before the payload is gzipped, as the service sends them.
4. DynamoDB conditional writes check the condition and then write without a lock; one lock
   around item writes makes each conditional write atomic, as DynamoDB's are (the lease
   table depends on it).
5. CodeBuild `StartBuild` drops `environmentVariablesOverride` and `idempotencyToken`: the
   build's `environment.environmentVariables` (BatchGetBuilds) are the project's, and a
   repeated request starts a second build. CodeBuild returns the overrides with the build and,
   for a repeated token within 5 minutes, the build the token already started (StartBuild in
   the CodeBuild API Reference). Both are kept here. For crash tests, a project whose
   description starts with `aiops-test: hold StartBuild response <N> s` answers StartBuild
   N seconds after the build was recorded (the build exists while its caller still waits).

Usage: python moto_launcher.py PORT
"""
import sys
import threading
import time

import moto.codebuild.responses as codebuild_responses

import moto.dynamodb.models as dynamodb_models
import moto.kinesis.models as kinesis_models
from moto.core.responses import ActionResult
from moto.server import main


def _max_sequence_number(self):
    if self.records:
        return next(reversed(self.records))
    return 0


def _min_sequence_number(self):
    if self.records:
        return next(iter(self.records))
    return 0


kinesis_models.Shard.get_max_sequence_number = _max_sequence_number
kinesis_models.Shard.get_min_sequence_number = _min_sequence_number

_kinesis_lock = threading.RLock()
_original_put_record = kinesis_models.Shard.put_record


def _put_record(self, *args, **kwargs):
    with _kinesis_lock:
        return _original_put_record(self, *args, **kwargs)


kinesis_models.Shard.put_record = _put_record

_original_send_log_event = kinesis_models.KinesisBackend.send_log_event


def _send_log_event(self, delivery_stream_arn, filter_name, log_group_name, log_stream_name, log_events):
    events = [dict(e, id=str(e.get("id"))) for e in log_events]
    return _original_send_log_event(
        self, delivery_stream_arn, filter_name, log_group_name, log_stream_name, events
    )


kinesis_models.KinesisBackend.send_log_event = _send_log_event

_dynamodb_lock = threading.RLock()


def _locked(original):
    def wrapper(self, *args, **kwargs):
        with _dynamodb_lock:
            return original(self, *args, **kwargs)

    wrapper.__name__ = original.__name__
    wrapper.__doc__ = original.__doc__
    return wrapper


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(
        dynamodb_models.DynamoDBBackend,
        _name,
        _locked(getattr(dynamodb_models.DynamoDBBackend, _name)),
    )

_codebuild_lock = threading.RLock()
_codebuild_tokens = {}  # (account, region, project, token) -> (monotonic time, build metadata)
_HOLD = "aiops-test: hold StartBuild response "
_original_start_build = codebuild_responses.CodeBuildResponse.start_build


def _start_build(self):
    project = self._get_param("projectName")
    token = self._get_param("idempotencyToken")
    key = (self.current_account, self.region, project, token)
    with _codebuild_lock:
        if token and key in _codebuild_tokens:
            at, metadata = _codebuild_tokens[key]
            if time.monotonic() - at < 300:
                return ActionResult({"build": metadata})
        result = _original_start_build(self)
        metadata = self.codebuild_backend.build_metadata[project].build_metadata
        overrides = self._get_param("environmentVariablesOverride") or []
        metadata["environment"]["environmentVariables"] = [
            {"name": v["name"], "value": v.get("value", ""), "type": v.get("type", "PLAINTEXT")}
            for v in overrides
        ]
        if token:
            _codebuild_tokens[key] = (time.monotonic(), metadata)
        described = self.codebuild_backend.codebuild_projects[project].project_metadata.get("description") or ""
    if described.startswith(_HOLD):
        time.sleep(float(described[len(_HOLD):].split()[0]))
    return result


codebuild_responses.CodeBuildResponse.start_build = _start_build

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: moto_launcher.py PORT")
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
