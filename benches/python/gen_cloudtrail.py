#!/usr/bin/env python3
"""Deterministic generator of a realistic CloudTrail trail delivery, for benchmarks.

Writes N CloudTrail records as the log files a trail delivers to S3, in S3's key layout:

    <out>/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
        <account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<16 alnum>.json.gz   ({"Records":[...]})
    <out>/AWSLogs/<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/
        <account>_CloudTrail-Digest_<region>_<trail>_<region>_YYYYMMDDTHHMMSSZ.json.gz

File format and naming: "CloudTrail log file examples" and "Finding your CloudTrail log files",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-examples.html
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html
Record fields: "CloudTrail record contents",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
Digest files: https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-digest-file-structure.html

What is in it (all from one seeded random.Random, so the same arguments give the same bytes):

- One account, one region (a trail's delivery for us-east-1), event times from
  2024-05-01T08:00:00Z advancing as a Poisson process at --rate events/s (default 70/s, so the
  default 1,000,000 events cover about 4 hours), with a mild diurnal modulation.
- About 3,000 principals: IAM users (long-term keys and console sessions), IAM Identity
  Center (SSO) permission-set roles used by many people, application roles (Lambda, ECS task,
  EC2 instance profile, CI deploy roles), service-linked roles and AWS services
  (`userIdentity.type = AWSService`). Traffic per principal is Zipf-distributed; each
  principal calls a small profile of APIs out of a catalogue of 59 calls over 22 services,
  mostly read-only (Describe/List/Get, KMS Decrypt, STS AssumeRole), some writes.
- Errors: about 2% AccessDenied-style, 0.5% throttling, some not-found errors.
- About 1 in 10,000 events (--destructive-rate) a destructive call that aiops' default change
  rules match, successful and made by a human principal (IAM user or SSO session) from an IP
  address: SSM DeleteParameter(s), PutParameter with overwrite, EC2 TerminateInstances /
  StopInstances, Lambda DeleteFunction20150331 / UpdateFunctionConfiguration20150331v2,
  DynamoDB DeleteTable, S3 DeleteBucket, RDS DeleteDBInstance, KMS ScheduleKeyDeletion,
  CloudTrail StopLogging. About as many near misses that must not match: the same calls
  failing (AccessDenied), made by AWS services (autoscaling terminations, CloudFormation
  deleting a function), by the agent's own recovery role, or not meeting a rule condition
  (PutParameter without overwrite, ModifyDBInstance keeping deletion protection).
- A few bursts (one principal calling one API far above its usual rate for a few minutes,
  and an AccessDenied storm), so that windowed statistics have something to find.
- Files: the records of each 5-minute delivery period are spread at random over
  ceil(records / --records-per-file) files (default 2,500, so about that many records per
  file, as a busy trail writes several files per period), each file named with its
  delivery time (end of period plus 1-3 minutes) and a random unique string, records inside a
  file in event-time order; one digest file per hour.

A `manifest.json` next to `AWSLogs/` records the arguments, the counts and the change findings
that a correct implementation of the default rules must report (rule, event id, resource id),
one per resource the call touched.

Usage: gen_cloudtrail.py --out DIR [--events N] [--seed S] [--rate R] ...
Prints the manifest summary as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import os
import random
import string
import sys
import uuid
from bisect import bisect_right
from itertools import accumulate

ACCOUNT = "418295730614"
REGION = "us-east-1"
TRAIL = "org-management-events"
START = dt.datetime(2024, 5, 1, 8, 0, 0, tzinfo=dt.timezone.utc)
DELIVERY_PERIOD_S = 300

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "yasmin", "zoe", "amir", "bea", "chen", "dmitri", "elena", "farah", "goran", "hana",
         "igor", "jun", "kofi", "lena", "marco", "nora", "omar", "priya", "quinn", "rosa",
         "sven", "tariq", "uma", "vera", "wei", "xena", "yusuf", "zara"]
LAST = ["smith", "garcia", "mueller", "rossi", "kim", "nguyen", "silva", "kowalski", "tanaka",
        "okafor", "dubois", "jensen", "novak", "haddad", "ivanova", "patel", "lopez", "berg",
        "costa", "fischer", "sato", "walsh", "moreau", "khan", "lindqvist", "reyes", "popescu"]
APPS = ["checkout", "payments", "orders", "inventory", "search", "catalog", "billing", "ledger",
        "shipping", "notifications", "auth", "profile", "reviews", "pricing", "recommendations",
        "fraud", "reporting", "etl", "ingest", "export", "media", "thumbnails", "gateway",
        "scheduler", "webhooks", "audit", "analytics", "crm", "tickets", "chat"]
ENVS = ["prod", "staging", "dev", "qa"]
SSO_SETS = ["AdministratorAccess", "PowerUserAccess", "ReadOnlyAccess", "ViewOnlyAccess",
            "DatabaseAdministrator", "NetworkAdministrator", "SecurityAudit", "Billing",
            "DeveloperAccess", "SupportUser", "DataScientist", "OnCallEngineer", "PlatformTeam",
            "IncidentResponder", "FinanceReadOnly"]
USER_AGENTS_CLI = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-aws exe/x86_64.ubuntu.22 prompt/off command/{cmd}",
    "aws-cli/2.13.25 Python/3.11.5 Darwin/23.1.0 exe/x86_64 prompt/off command/{cmd}",
    "aws-cli/2.15.10 Python/3.11.6 Windows/10 exe/AMD64 prompt/off command/{cmd}",
]
USER_AGENTS_SDK = [
    "Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.84",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.{minor}.0",
    "aws-sdk-java/2.25.26 Linux/5.10.214-202.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "aws-sdk-js/3.556.0 ua/2.0 os/linux#5.10.214-202.855.amzn2.x86_64 lang/js md/nodejs#20.12.2 api/{svc}#3.556.0",
    "aws-sdk-rust/1.2.0 os/linux lang/rust/1.77.2",
]
UA_TERRAFORM = "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.46.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64"
UA_CONSOLE = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


def iso(t: float) -> str:
    """Seconds since the Unix epoch -> CloudTrail eventTime `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    return dt.datetime.fromtimestamp(int(t), tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Gen:
    """All random choices, from one seeded generator."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def hexs(self, n: int) -> str:
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def alnum(self, n: int) -> str:
        return "".join(self.r.choice(ALNUM) for _ in range(n))

    def upper(self, n: int) -> str:
        return "".join(self.r.choice(UPPER_DIGITS) for _ in range(n))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def instance_id(self) -> str:
        return "i-0" + self.hexs(16)

    def ip(self) -> str:
        r = self.r
        return f"{r.choice([34, 52, 54, 3, 18, 44, 198, 203, 81, 92])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


# ----------------------------------------------------------------------------------------------
# Resources of the account (names used in request parameters)
# ----------------------------------------------------------------------------------------------


class Account:
    """Names of the account's resources, drawn once."""

    def __init__(self, g: Gen):
        r = g.r
        self.instances = [g.instance_id() for _ in range(800)]
        self.functions = [f"{a}-{e}-{s}" for a in APPS for e in ENVS[:2]
                          for s in ("handler", "worker", "cron")]
        self.tables = [f"{a}-{e}" for a in APPS for e in ENVS[:3]]
        self.buckets = [f"{a}-{e}-{ACCOUNT}-{REGION}" for a in APPS for e in ENVS[:3]]
        self.params = [f"/{e}/{a}/{k}" for a in APPS for e in ENVS[:3]
                       for k in ("db-password", "api-key", "feature-flags", "endpoint", "queue-url")]
        self.db_instances = [f"{a}-{e}-db" for a in APPS[:14] for e in ENVS[:2]]
        self.keys = [g.uuid() for _ in range(40)]
        self.log_groups = [f"/aws/lambda/{f}" for f in self.functions[:80]] + \
            [f"/ecs/{a}-{e}" for a in APPS for e in ENVS[:2]]
        self.secrets = [f"{e}/{a}/credentials" for a in APPS for e in ENVS[:3]]
        self.clusters = [f"{e}-cluster" for e in ENVS[:3]]
        self.queues = [f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{a}-{e}-queue" for a in APPS for e in ENVS[:2]]
        self.sgs = ["sg-0" + g.hexs(16) for _ in range(60)]
        self.vpcs = ["vpc-0" + g.hexs(16) for _ in range(4)]
        self.subnets = ["subnet-0" + g.hexs(16) for _ in range(12)]
        self.stacks = [f"{a}-{e}" for a in APPS for e in ENVS[:2]]
        self.repos = [f"{a}" for a in APPS]
        r.shuffle(self.instances)


# ----------------------------------------------------------------------------------------------
# API catalogue: (eventSource, eventName, readOnly, request parameters builder, response builder)
# ----------------------------------------------------------------------------------------------


def _catalogue(g: Gen, acc: Account):
    r = g.r
    C = {}

    def add(key, source, name, read_only, req, resp=None, resources=None, category="Management",
            error_pool=("AccessDenied",)):
        C[key] = dict(source=source, name=name, read_only=read_only, req=req, resp=resp,
                      resources=resources, category=category, errors=error_pool)

    ec2_errs = ("Client.UnauthorizedOperation", "Client.RequestLimitExceeded")
    add("ec2.DescribeInstances", "ec2.amazonaws.com", "DescribeInstances", True,
        lambda: {"instancesSet": {"items": [{"instanceId": r.choice(acc.instances)}]}, "filterSet": {}}
        if r.random() < 0.4 else {"instancesSet": {}, "filterSet": {"items": [{"name": "tag:app", "valueSet": {"items": [{"value": r.choice(APPS)}]}}]}},
        error_pool=ec2_errs)
    add("ec2.DescribeSecurityGroups", "ec2.amazonaws.com", "DescribeSecurityGroups", True,
        lambda: {"securityGroupSet": {}, "securityGroupIdSet": {"items": [{"groupId": r.choice(acc.sgs)}]}, "filterSet": {}},
        error_pool=ec2_errs)
    add("ec2.DescribeVolumes", "ec2.amazonaws.com", "DescribeVolumes", True,
        lambda: {"volumeSet": {}, "filterSet": {"items": [{"name": "attachment.instance-id", "valueSet": {"items": [{"value": r.choice(acc.instances)}]}}]}},
        error_pool=ec2_errs)
    add("ec2.DescribeSubnets", "ec2.amazonaws.com", "DescribeSubnets", True,
        lambda: {"subnetSet": {"items": [{"subnetId": r.choice(acc.subnets)}]}, "filterSet": {}},
        error_pool=ec2_errs)
    add("ec2.DescribeNetworkInterfaces", "ec2.amazonaws.com", "DescribeNetworkInterfaces", True,
        lambda: {"networkInterfaceIdSet": {}, "filterSet": {"items": [{"name": "vpc-id", "valueSet": {"items": [{"value": r.choice(acc.vpcs)}]}}]}},
        error_pool=ec2_errs)
    add("ec2.DescribeTags", "ec2.amazonaws.com", "DescribeTags", True,
        lambda: {"filterSet": {"items": [{"name": "resource-id", "valueSet": {"items": [{"value": r.choice(acc.instances)}]}}]}},
        error_pool=ec2_errs)
    add("ec2.CreateTags", "ec2.amazonaws.com", "CreateTags", False,
        lambda: {"resourcesSet": {"items": [{"resourceId": r.choice(acc.instances)}]}, "tagSet": {"items": [{"key": "last-deploy", "value": g.hexs(7)}]}},
        lambda: {"requestId": g.uuid(), "_return": True}, error_pool=ec2_errs)
    add("ec2.RunInstances", "ec2.amazonaws.com", "RunInstances", False,
        lambda: {"instancesSet": {"items": [{"imageId": "ami-0" + g.hexs(16), "minCount": 1, "maxCount": 1}]}, "instanceType": r.choice(["m6i.large", "c6i.xlarge", "t3.medium"]), "blockDeviceMapping": {}, "monitoring": {"enabled": False}, "disableApiTermination": False, "subnetId": r.choice(acc.subnets)},
        lambda: {"requestId": g.uuid(), "reservationId": "r-0" + g.hexs(16), "ownerId": ACCOUNT, "groupSet": {}, "instancesSet": {"items": [{"instanceId": g.instance_id(), "instanceState": {"code": 0, "name": "pending"}}]}},
        error_pool=ec2_errs)
    add("ec2.StartInstances", "ec2.amazonaws.com", "StartInstances", False,
        lambda: {"instancesSet": {"items": [{"instanceId": r.choice(acc.instances)}]}},
        lambda: {"requestId": g.uuid(), "instancesSet": {"items": [{"instanceId": r.choice(acc.instances), "currentState": {"code": 0, "name": "pending"}, "previousState": {"code": 80, "name": "stopped"}}]}},
        error_pool=ec2_errs)
    add("sts.AssumeRole", "sts.amazonaws.com", "AssumeRole", True,
        lambda: {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/{r.choice(APPS)}-{r.choice(ENVS)}-role", "roleSessionName": g.hexs(12), "durationSeconds": 3600},
        lambda: {"credentials": {"accessKeyId": "ASIA" + g.upper(16), "sessionToken": "IQoJb3JpZ2luX2VjE" + g.alnum(40), "expiration": "May 1, 2024, 9:00:00 PM"}, "assumedRoleUser": {"assumedRoleId": "AROA" + g.upper(17) + ":" + g.hexs(12), "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{r.choice(APPS)}-role/{g.hexs(12)}"}},
        resources=lambda: [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": f"arn:aws:iam::{ACCOUNT}:role/{r.choice(APPS)}-{r.choice(ENVS)}-role"}])
    add("sts.GetCallerIdentity", "sts.amazonaws.com", "GetCallerIdentity", True, lambda: None)
    add("kms.Decrypt", "kms.amazonaws.com", "Decrypt", True,
        lambda: {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": {"aws:lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{r.choice(acc.functions)}"}},
        resources=lambda: [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{r.choice(acc.keys)}"}],
        error_pool=("AccessDenied", "ThrottlingException"))
    add("kms.GenerateDataKey", "kms.amazonaws.com", "GenerateDataKey", True,
        lambda: {"keyId": f"alias/{r.choice(APPS)}", "keySpec": "AES_256", "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{r.choice(acc.buckets)}"}},
        resources=lambda: [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{r.choice(acc.keys)}"}],
        error_pool=("AccessDenied", "ThrottlingException"))
    add("kms.DescribeKey", "kms.amazonaws.com", "DescribeKey", True,
        lambda: {"keyId": r.choice(acc.keys)},
        resources=lambda: [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{r.choice(acc.keys)}"}])
    add("s3.ListBuckets", "s3.amazonaws.com", "ListBuckets", True,
        lambda: {"Host": f"s3.{REGION}.amazonaws.com"})
    add("s3.GetBucketLocation", "s3.amazonaws.com", "GetBucketLocation", True,
        lambda: {"bucketName": r.choice(acc.buckets), "Host": f"s3.{REGION}.amazonaws.com", "location": ""})
    add("s3.GetBucketPolicy", "s3.amazonaws.com", "GetBucketPolicy", True,
        lambda: {"bucketName": r.choice(acc.buckets), "Host": f"s3.{REGION}.amazonaws.com", "policy": ""},
        error_pool=("NoSuchBucketPolicy", "AccessDenied"))
    add("s3.GetBucketAcl", "s3.amazonaws.com", "GetBucketAcl", True,
        lambda: {"bucketName": r.choice(acc.buckets), "Host": f"s3.{REGION}.amazonaws.com", "acl": ""})
    add("s3.GetObject", "s3.amazonaws.com", "GetObject", True,
        lambda: {"bucketName": r.choice(acc.buckets), "Host": f"s3.{REGION}.amazonaws.com", "key": f"{r.choice(['data', 'exports', 'uploads'])}/{dt.date(2024, 4, r.randint(1, 30)).isoformat()}/{g.hexs(16)}.json"},
        resources=lambda: [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{r.choice(acc.buckets)}/data/{g.hexs(8)}"}],
        category="Data", error_pool=("AccessDenied", "NoSuchKey"))
    add("s3.PutObject", "s3.amazonaws.com", "PutObject", False,
        lambda: {"bucketName": r.choice(acc.buckets), "Host": f"s3.{REGION}.amazonaws.com", "key": f"exports/{g.hexs(16)}.json.gz"},
        lambda: {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{r.choice(acc.keys)}"},
        resources=lambda: [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{r.choice(acc.buckets)}/exports/{g.hexs(8)}"}],
        category="Data")
    add("ssm.GetParameter", "ssm.amazonaws.com", "GetParameter", True,
        lambda: {"name": r.choice(acc.params), "withDecryption": True},
        error_pool=("ParameterNotFound", "AccessDenied", "ThrottlingException"))
    add("ssm.GetParameters", "ssm.amazonaws.com", "GetParameters", True,
        lambda: {"names": r.sample(acc.params, 2), "withDecryption": True},
        error_pool=("AccessDenied", "ThrottlingException"))
    add("ssm.GetParametersByPath", "ssm.amazonaws.com", "GetParametersByPath", True,
        lambda: {"path": "/" + r.choice(ENVS[:3]) + "/" + r.choice(APPS), "recursive": True, "withDecryption": True})
    add("ssm.DescribeParameters", "ssm.amazonaws.com", "DescribeParameters", True,
        lambda: {"maxResults": 50})
    add("ssm.PutParameter.new", "ssm.amazonaws.com", "PutParameter", False,
        lambda: {"name": f"/{r.choice(ENVS[:3])}/{r.choice(APPS)}/build-{g.hexs(6)}", "type": "String", "overwrite": False, "tier": "Standard"},
        lambda: {"version": 1, "tier": "Standard"})
    add("lambda.ListFunctions", "lambda.amazonaws.com", "ListFunctions20150331", True,
        lambda: {"maxItems": 50})
    add("lambda.GetFunction", "lambda.amazonaws.com", "GetFunction20150331v2", True,
        lambda: {"functionName": r.choice(acc.functions)})
    add("lambda.GetFunctionConfiguration", "lambda.amazonaws.com", "GetFunctionConfiguration20150331v2", True,
        lambda: {"functionName": r.choice(acc.functions)})
    add("dynamodb.DescribeTable", "dynamodb.amazonaws.com", "DescribeTable", True,
        lambda: {"tableName": r.choice(acc.tables)},
        resources=lambda: [{"accountId": ACCOUNT, "type": "AWS::DynamoDB::Table", "ARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{r.choice(acc.tables)}"}])
    add("dynamodb.ListTables", "dynamodb.amazonaws.com", "ListTables", True, lambda: None)
    add("dynamodb.DescribeContinuousBackups", "dynamodb.amazonaws.com", "DescribeContinuousBackups", True,
        lambda: {"tableName": r.choice(acc.tables)})
    add("rds.DescribeDBInstances", "rds.amazonaws.com", "DescribeDBInstances", True,
        lambda: {"dBInstanceIdentifier": r.choice(acc.db_instances)} if r.random() < 0.5 else None)
    add("rds.DescribeDBClusters", "rds.amazonaws.com", "DescribeDBClusters", True, lambda: None)
    add("rds.ModifyDBInstance.keep", "rds.amazonaws.com", "ModifyDBInstance", False,
        lambda: {"dBInstanceIdentifier": r.choice(acc.db_instances), "deletionProtection": True, "applyImmediately": True},
        lambda: {"dBInstanceStatus": "available", "deletionProtection": True, "engine": "postgres"})
    add("logs.DescribeLogGroups", "logs.amazonaws.com", "DescribeLogGroups", True,
        lambda: {"logGroupNamePrefix": r.choice(acc.log_groups)[:12], "limit": 50})
    add("logs.FilterLogEvents", "logs.amazonaws.com", "FilterLogEvents", True,
        lambda: {"logGroupName": r.choice(acc.log_groups), "filterPattern": r.choice(["ERROR", "\"timeout\"", "?Exception ?ERROR"]), "startTime": 1714550000000, "interleaved": True},
        error_pool=("ThrottlingException", "AccessDenied"))
    add("logs.CreateLogStream", "logs.amazonaws.com", "CreateLogStream", False,
        lambda: {"logGroupName": r.choice(acc.log_groups), "logStreamName": f"2024/05/01/[$LATEST]{g.hexs(32)}"})
    add("ecr.GetAuthorizationToken", "ecr.amazonaws.com", "GetAuthorizationToken", True,
        lambda: {"registryIds": [ACCOUNT]})
    add("ecr.BatchGetImage", "ecr.amazonaws.com", "BatchGetImage", True,
        lambda: {"repositoryName": r.choice(acc.repos), "registryId": ACCOUNT, "imageIds": [{"imageTag": "v" + str(r.randint(100, 400))}], "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json"]},
        resources=lambda: [{"accountId": ACCOUNT, "ARN": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{r.choice(acc.repos)}"}])
    add("ecs.DescribeServices", "ecs.amazonaws.com", "DescribeServices", True,
        lambda: {"cluster": r.choice(acc.clusters), "services": [r.choice(APPS)]})
    add("ecs.ListTasks", "ecs.amazonaws.com", "ListTasks", True,
        lambda: {"cluster": r.choice(acc.clusters), "serviceName": r.choice(APPS)})
    add("ecs.DescribeTasks", "ecs.amazonaws.com", "DescribeTasks", True,
        lambda: {"cluster": r.choice(acc.clusters), "tasks": [g.hexs(32)]})
    add("secretsmanager.GetSecretValue", "secretsmanager.amazonaws.com", "GetSecretValue", True,
        lambda: {"secretId": r.choice(acc.secrets)},
        error_pool=("AccessDenied", "ResourceNotFoundException"))
    add("sqs.ListQueues", "sqs.amazonaws.com", "ListQueues", True, lambda: {"queueNamePrefix": r.choice(APPS)})
    add("sqs.GetQueueAttributes", "sqs.amazonaws.com", "GetQueueAttributes", True,
        lambda: {"queueUrl": r.choice(acc.queues), "attributeNames": ["All"]})
    add("autoscaling.DescribeAutoScalingGroups", "autoscaling.amazonaws.com", "DescribeAutoScalingGroups", True,
        lambda: {"autoScalingGroupNames": [f"{r.choice(APPS)}-{r.choice(ENVS[:2])}-asg"]})
    add("elasticloadbalancing.DescribeTargetHealth", "elasticloadbalancing.amazonaws.com", "DescribeTargetHealth", True,
        lambda: {"targetGroupArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/{r.choice(APPS)}-tg/{g.hexs(16)}"})
    add("cloudformation.DescribeStacks", "cloudformation.amazonaws.com", "DescribeStacks", True,
        lambda: {"stackName": r.choice(acc.stacks)})
    add("cloudformation.ListStacks", "cloudformation.amazonaws.com", "ListStacks", True, lambda: None)
    add("iam.GetRole", "iam.amazonaws.com", "GetRole", True,
        lambda: {"roleName": f"{r.choice(APPS)}-{r.choice(ENVS)}-role"},
        error_pool=("AccessDenied", "NoSuchEntityException"))
    add("iam.ListRoles", "iam.amazonaws.com", "ListRoles", True, lambda: {"maxItems": 100})
    add("iam.ListAttachedRolePolicies", "iam.amazonaws.com", "ListAttachedRolePolicies", True,
        lambda: {"roleName": f"{r.choice(APPS)}-{r.choice(ENVS)}-role"})
    add("monitoring.DescribeAlarms", "monitoring.amazonaws.com", "DescribeAlarms", True,
        lambda: {"alarmNamePrefix": r.choice(APPS), "maxRecords": 100})
    add("monitoring.GetMetricData", "monitoring.amazonaws.com", "GetMetricData", True,
        lambda: {"startTime": "May 1, 2024, 8:00:00 AM", "endTime": "May 1, 2024, 9:00:00 AM", "metricDataQueries": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/Lambda", "metricName": "Errors"}, "period": 60, "stat": "Sum"}}]},
        error_pool=("ThrottlingException", "AccessDenied"))
    add("cloudtrail.LookupEvents", "cloudtrail.amazonaws.com", "LookupEvents", True,
        lambda: {"maxResults": 50, "lookupAttributes": [{"attributeKey": "EventName", "attributeValue": r.choice(["ConsoleLogin", "AssumeRole", "DeleteBucket"])}]},
        error_pool=("ThrottlingException",))
    add("cloudtrail.DescribeTrails", "cloudtrail.amazonaws.com", "DescribeTrails", True,
        lambda: {"includeShadowTrails": True})
    add("route53.ListHostedZones", "route53.amazonaws.com", "ListHostedZones", True, lambda: None)
    add("guardduty.ListFindings", "guardduty.amazonaws.com", "ListFindings", True,
        lambda: {"detectorId": "12abc34d567e8fa901bc2d34e56789f0", "maxResults": 50})
    add("signin.ConsoleLogin", "signin.amazonaws.com", "ConsoleLogin", False, lambda: None,
        lambda: {"ConsoleLogin": "Success"})
    return C


# Which calls each kind of principal makes (profiles are drawn from these pools).
POOLS = {
    "lambda": ["kms.Decrypt", "ssm.GetParameter", "ssm.GetParameters", "secretsmanager.GetSecretValue",
               "s3.GetObject", "s3.PutObject", "dynamodb.DescribeTable", "logs.CreateLogStream",
               "sqs.GetQueueAttributes", "kms.GenerateDataKey", "sts.AssumeRole", "ssm.GetParametersByPath"],
    "ecs": ["kms.Decrypt", "secretsmanager.GetSecretValue", "ssm.GetParameter", "s3.GetObject", "s3.PutObject",
            "sqs.GetQueueAttributes", "dynamodb.DescribeTable", "kms.GenerateDataKey", "sts.GetCallerIdentity"],
    "ec2": ["ec2.DescribeInstances", "ec2.DescribeTags", "s3.GetObject", "ssm.GetParametersByPath",
            "kms.Decrypt", "monitoring.GetMetricData", "autoscaling.DescribeAutoScalingGroups",
            "ec2.DescribeVolumes", "logs.CreateLogStream"],
    "ci": ["sts.GetCallerIdentity", "ecr.GetAuthorizationToken", "ecr.BatchGetImage", "ecs.DescribeServices",
           "cloudformation.DescribeStacks", "lambda.GetFunction", "s3.PutObject", "ssm.PutParameter.new",
           "ec2.CreateTags", "iam.GetRole", "lambda.GetFunctionConfiguration"],
    "terraform": ["ec2.DescribeInstances", "ec2.DescribeSecurityGroups", "ec2.DescribeSubnets", "iam.GetRole",
                  "iam.ListAttachedRolePolicies", "s3.GetBucketPolicy", "s3.GetBucketAcl", "s3.GetBucketLocation",
                  "lambda.GetFunction", "dynamodb.DescribeTable", "dynamodb.DescribeContinuousBackups",
                  "rds.DescribeDBInstances", "kms.DescribeKey", "ssm.GetParameter", "logs.DescribeLogGroups",
                  "sts.GetCallerIdentity", "route53.ListHostedZones", "ec2.DescribeNetworkInterfaces"],
    "monitor": ["monitoring.GetMetricData", "monitoring.DescribeAlarms", "ec2.DescribeInstances",
                "elasticloadbalancing.DescribeTargetHealth", "rds.DescribeDBInstances", "ecs.ListTasks",
                "ecs.DescribeTasks", "logs.FilterLogEvents", "cloudtrail.LookupEvents", "guardduty.ListFindings",
                "autoscaling.DescribeAutoScalingGroups", "sqs.ListQueues", "lambda.ListFunctions"],
    "human": ["ec2.DescribeInstances", "s3.ListBuckets", "s3.GetObject", "logs.FilterLogEvents",
              "logs.DescribeLogGroups", "cloudformation.DescribeStacks", "cloudformation.ListStacks",
              "lambda.ListFunctions", "lambda.GetFunction", "iam.ListRoles", "iam.GetRole",
              "dynamodb.ListTables", "dynamodb.DescribeTable", "rds.DescribeDBInstances", "rds.DescribeDBClusters",
              "ssm.GetParameter", "ssm.DescribeParameters", "monitoring.DescribeAlarms", "sts.GetCallerIdentity",
              "ec2.DescribeSecurityGroups", "cloudtrail.LookupEvents", "ecs.DescribeServices", "kms.DescribeKey",
              "secretsmanager.GetSecretValue", "ec2.StartInstances", "ec2.CreateTags", "ssm.PutParameter.new",
              "rds.ModifyDBInstance.keep", "sqs.ListQueues", "ec2.RunInstances", "cloudtrail.DescribeTrails",
              "signin.ConsoleLogin"],
    "service": ["kms.Decrypt", "kms.GenerateDataKey", "sts.AssumeRole"],
    "slr": ["ec2.DescribeInstances", "ec2.RunInstances", "ec2.CreateTags", "ec2.DescribeSubnets",
            "elasticloadbalancing.DescribeTargetHealth", "ecs.DescribeTasks", "ec2.DescribeNetworkInterfaces"],
}


# ----------------------------------------------------------------------------------------------
# Principals
# ----------------------------------------------------------------------------------------------


class Principal:
    """One caller: its userIdentity (shared between its records), kind, traffic weight and
    API profile (catalogue keys with cumulative weights)."""

    __slots__ = ("kind", "identity", "human", "weight", "apis", "cum", "ips", "agents", "key")

    def __init__(self, kind, identity, human, weight, key):
        self.kind = kind
        self.identity = identity
        self.human = human
        self.weight = weight
        self.key = key
        self.apis = []
        self.cum = []
        self.ips = []
        self.agents = []


def _session_context(g: Gen, role_arn: str, role_name: str, created: str, mfa: bool):
    return {
        "sessionIssuer": {"type": "Role", "principalId": "AROA" + g.upper(17), "arn": role_arn,
                          "accountId": ACCOUNT, "userName": role_name},
        "webIdFederationData": {},
        "attributes": {"creationDate": created, "mfaAuthenticated": "true" if mfa else "false"},
    }


def _principals(g: Gen, n_users: int, n_roles: int):
    r = g.r
    created = iso(START.timestamp() - 1800)
    out = []
    # IAM users (humans with long-term keys or console sessions) and a few automation users.
    names = set()
    while len(names) < n_users:
        names.add(f"{r.choice(FIRST)}.{r.choice(LAST)}{r.randint(1, 99) if r.random() < 0.5 else ''}")
    for name in sorted(names):
        arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
        console = r.random() < 0.3
        ident = {"type": "IAMUser", "principalId": "AIDA" + g.upper(17), "arn": arn, "accountId": ACCOUNT,
                 "accessKeyId": ("ASIA" if console else "AKIA") + g.upper(16), "userName": name}
        if console:
            ident["sessionContext"] = {"attributes": {"creationDate": created, "mfaAuthenticated": "true"}}
        p = Principal("human", ident, True, 1.0, arn)
        out.append(p)
    # SSO permission sets: few roles, used by many people (key = the role).
    for ps in SSO_SETS:
        role_name = f"AWSReservedSSO_{ps}_{g.hexs(16)}"
        role_arn = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{role_name}"
        person = f"{r.choice(FIRST)}.{r.choice(LAST)}@example.com"
        ident = {"type": "AssumedRole", "principalId": "AROA" + g.upper(17) + ":" + person,
                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{person}", "accountId": ACCOUNT,
                 "accessKeyId": "ASIA" + g.upper(16),
                 "sessionContext": _session_context(g, role_arn, role_name, created, True)}
        out.append(Principal("human", ident, True, 25.0, role_arn))
    # Application roles.
    kinds = [("lambda", 0.45), ("ecs", 0.25), ("ec2", 0.2), ("ci", 0.07), ("monitor", 0.03)]
    kc = list(accumulate(w for _, w in kinds))
    for i in range(n_roles):
        kind = kinds[bisect_right(kc, r.random() * kc[-1])][0]
        app, env = r.choice(APPS), r.choice(ENVS)
        if kind == "lambda":
            fn = f"{app}-{env}-{r.choice(['handler', 'worker', 'cron', 'api', 'sync'])}-{i}"
            role_name = f"{fn}-role-{g.alnum(8).lower()}"
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/service-role/{role_name}"
            session = fn
        elif kind == "ecs":
            role_name = f"{app}-{env}-task-role-{i}"
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
            session = g.hexs(32)
        elif kind == "ec2":
            role_name = f"{app}-{env}-ec2-{i}"
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
            session = g.instance_id()
        elif kind == "ci":
            role_name = f"github-actions-{app}-{env}-{i}"
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
            session = f"GitHubActions-{r.randint(10**9, 10**10)}"
        else:
            role_name = f"{r.choice(['datadog', 'grafana', 'pagerduty', 'prometheus'])}-integration-{i}"
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
            session = g.hexs(16)
        ident = {"type": "AssumedRole", "principalId": "AROA" + g.upper(17) + ":" + session,
                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}", "accountId": ACCOUNT,
                 "accessKeyId": "ASIA" + g.upper(16),
                 "sessionContext": _session_context(g, role_arn, role_name, created, False)}
        out.append(Principal(kind, ident, False, 1.0, role_arn))
    # Terraform role (used by people's pipelines and humans).
    tf_arn = f"arn:aws:iam::{ACCOUNT}:role/terraform-apply"
    ident = {"type": "AssumedRole", "principalId": "AROA" + g.upper(17) + ":terraform",
             "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/terraform-apply/terraform", "accountId": ACCOUNT,
             "accessKeyId": "ASIA" + g.upper(16),
             "sessionContext": _session_context(g, tf_arn, "terraform-apply", created, False)}
    out.append(Principal("terraform", ident, False, 40.0, tf_arn))
    # AWS services acting on the customer's behalf.
    for svc in ["lambda.amazonaws.com", "ecs-tasks.amazonaws.com", "ec2.amazonaws.com", "s3.amazonaws.com",
                "ssm.amazonaws.com", "secretsmanager.amazonaws.com", "logs.amazonaws.com",
                "cloudtrail.amazonaws.com", "dynamodb.amazonaws.com", "rds.amazonaws.com"]:
        ident = {"type": "AWSService", "invokedBy": svc}
        out.append(Principal("service", ident, False, 60.0, svc))
    # Service-linked roles.
    for slr, svc in [("AWSServiceRoleForAutoScaling", "autoscaling.amazonaws.com"),
                     ("AWSServiceRoleForECS", "ecs.amazonaws.com"),
                     ("AWSServiceRoleForElasticLoadBalancing", "elasticloadbalancing.amazonaws.com")]:
        role_arn = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{svc}/{slr}"
        ident = {"type": "AssumedRole", "principalId": "AROA" + g.upper(17) + ":" + slr.removeprefix("AWSServiceRoleFor"),
                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{slr}/{slr.removeprefix('AWSServiceRoleFor')}",
                 "accountId": ACCOUNT, "invokedBy": svc,
                 "sessionContext": _session_context(g, role_arn, slr, created, False)}
        out.append(Principal("slr", ident, False, 30.0, role_arn))
    return out


def _assign_weights_and_profiles(g: Gen, principals):
    r = g.r
    # Traffic shares per group of callers; within a group, Zipf-like over its members (a few
    # busy callers, a long tail). SSO roles weigh 25 IAM users each before the Zipf draw.
    shares = {"app": 0.60, "human": 0.14, "service": 0.16, "slr": 0.03, "terraform": 0.07}

    def group_of(p):
        if p.kind in ("lambda", "ecs", "ec2", "ci", "monitor"):
            return "app"
        return p.kind

    for name, share in shares.items():
        group = [p for p in principals if group_of(p) == name]
        order = list(range(len(group)))
        r.shuffle(order)
        raw = [group[idx].weight / rank ** 1.05 for rank, idx in enumerate(order, start=1)]
        total = sum(raw)
        for idx, w in zip(order, raw):
            group[idx].weight = share * w / total
    for p in principals:
        pool = POOLS[p.kind]
        k = min(len(pool), {"human": r.randint(3, 10), "terraform": len(pool), "service": 3,
                            "slr": len(pool), "monitor": r.randint(5, 9)}.get(p.kind, r.randint(2, 6)))
        apis = r.sample(pool, k)
        weights = [1.0 / (i + 1) ** 0.8 for i in range(k)]
        p.apis = apis
        p.cum = list(accumulate(weights))
        if p.human:
            p.ips = [g.ip() for _ in range(r.randint(1, 3))]
            if p.identity.get("sessionContext") and p.identity["type"] == "IAMUser":
                p.agents = [UA_CONSOLE]
            else:
                p.agents = [r.choice(USER_AGENTS_CLI), UA_CONSOLE]
        elif p.kind == "service":
            p.ips = [p.key]
            p.agents = [p.key]
        elif p.kind == "slr":
            svc = p.identity["invokedBy"]
            p.ips = [svc]
            p.agents = [svc]
        elif p.kind == "terraform":
            p.ips = [g.ip() for _ in range(2)]
            p.agents = [UA_TERRAFORM]
        else:
            p.ips = ["10.%d.%d.%d" % (r.randint(0, 31), r.randint(0, 255), r.randint(1, 254))
                     if p.kind != "ci" else g.ip() for _ in range(r.randint(1, 4))]
            p.agents = [r.choice(USER_AGENTS_SDK)]


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------

ERROR_MESSAGES = {
    "AccessDenied": "User: {arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
    "AccessDeniedException": "User: {arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
    "Client.UnauthorizedOperation": "You are not authorized to perform this operation. User: {arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action. Encoded authorization failure message: {enc}",
    "Client.RequestLimitExceeded": "Request limit exceeded.",
    "ThrottlingException": "Rate exceeded",
    "ParameterNotFound": None,
    "NoSuchBucketPolicy": "The bucket policy does not exist",
    "NoSuchKey": "The specified key does not exist.",
    "ResourceNotFoundException": "Secrets Manager can't find the specified secret.",
    "NoSuchEntityException": "The role with name {name} cannot be found.",
}


class Builder:
    """Builds records; keeps the counters for the manifest."""

    def __init__(self, g: Gen, acc: Account, cat):
        self.g = g
        self.acc = acc
        self.cat = cat

    def base(self, t: float, p: Principal, source: str, name: str, read_only: bool, category: str):
        g = self.g
        r = g.r
        ident = p.identity
        agent = r.choice(p.agents)
        if "{cmd}" in agent:
            agent = agent.replace("{cmd}", source.split(".")[0] + "." + name[:1].lower() + name[1:])
        if "{svc}" in agent:
            agent = agent.replace("{svc}", source.split(".")[0]).replace("{minor}", str(r.randint(10, 60)))
        rec = {
            "eventVersion": "1.09" if category == "Management" else "1.10",
            "userIdentity": ident,
            "eventTime": iso(t),
            "eventSource": source,
            "eventName": name,
            "awsRegion": REGION,
            "sourceIPAddress": r.choice(p.ips),
            "userAgent": agent,
        }
        return rec

    def finish(self, rec, read_only: bool, category: str, p: Principal):
        g = self.g
        rec["requestID"] = g.uuid()
        rec["eventID"] = g.uuid()
        rec["readOnly"] = read_only
        rec["eventType"] = "AwsApiCall" if rec["eventName"] != "ConsoleLogin" else "AwsConsoleSignIn"
        rec["managementEvent"] = category == "Management"
        rec["recipientAccountId"] = ACCOUNT
        if p.kind not in ("service", "slr"):
            src = rec["eventSource"]
            rec["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                 "clientProvidedHostHeader": f"{src.split('.')[0]}.{REGION}.amazonaws.com"}
        if p.human and rec["userAgent"] == UA_CONSOLE:
            rec["sessionCredentialFromConsole"] = "true"
        rec["eventCategory"] = category
        return rec

    def call(self, t: float, p: Principal, api_key: str, error: str | None):
        """A routine call of catalogue entry `api_key` by `p`."""
        c = self.cat[api_key]
        rec = self.base(t, p, c["source"], c["name"], c["read_only"], c["category"])
        if error:
            rec["errorCode"] = error
            msg = ERROR_MESSAGES.get(error)
            if msg:
                rec["errorMessage"] = msg.format(arn=p.identity.get("arn", p.key),
                                                 action=c["source"].split(".")[0] + ":" + c["name"],
                                                 enc=self.g.alnum(60), name="x")
        rec["requestParameters"] = c["req"]()
        rec["responseElements"] = (c["resp"]() if (c["resp"] and not error) else None)
        if c["resources"]:
            rec["resources"] = c["resources"]()
        return self.finish(rec, c["read_only"], c["category"], p)

    # --- change-rule events -------------------------------------------------------------------

    def destructive(self, t: float, p: Principal, kind: str):
        """A destructive call. Returns (record, [(rule, resource_id), ...]) where the list is
        what the default rules must report when the call succeeds and is made by a human."""
        g, r, acc = self.g, self.g.r, self.acc
        if kind == "ssm_delete_parameter":
            if r.random() < 0.8:
                name = r.choice(acc.params)
                req, resp, ids = {"name": name}, None, [name]
                ev = "DeleteParameter"
            else:
                names = r.sample(acc.params, 2)
                req, resp, ids = {"names": names}, {"deletedParameters": names, "invalidParameters": []}, names
                ev = "DeleteParameters"
            rec = self.base(t, p, "ssm.amazonaws.com", ev, False, "Management")
            rule = "ssm_delete_parameter"
        elif kind == "ssm_overwrite_parameter":
            name = r.choice(acc.params)
            req = {"name": name, "type": "SecureString", "overwrite": True, "tier": "Standard",
                   "keyId": "alias/aws/ssm"}
            resp, ids, rule = {"version": r.randint(2, 40), "tier": "Standard"}, [name], kind
            rec = self.base(t, p, "ssm.amazonaws.com", "PutParameter", False, "Management")
        elif kind in ("ec2_terminate_instances", "ec2_stop_instances"):
            n = 1 if r.random() < 0.75 else r.randint(2, 3)
            ids = r.sample(acc.instances, n)
            req = {"instancesSet": {"items": [{"instanceId": i} for i in ids]}}
            if kind == "ec2_stop_instances":
                req["force"] = False
            state = ("shutting-down", 32) if kind == "ec2_terminate_instances" else ("stopping", 64)
            resp = {"requestId": g.uuid(), "instancesSet": {"items": [
                {"instanceId": i, "currentState": {"code": state[1], "name": state[0]},
                 "previousState": {"code": 16, "name": "running"}} for i in ids]}}
            ev = "TerminateInstances" if kind == "ec2_terminate_instances" else "StopInstances"
            rec = self.base(t, p, "ec2.amazonaws.com", ev, False, "Management")
            rule = kind
        elif kind == "lambda_delete_function":
            fn = r.choice(acc.functions)
            arg = fn if r.random() < 0.7 else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"
            req, resp, ids, rule = {"functionName": arg}, None, [fn], kind
            rec = self.base(t, p, "lambda.amazonaws.com", "DeleteFunction20150331", False, "Management")
        elif kind == "lambda_update_function_configuration":
            fn = r.choice(acc.functions)
            req = {"functionName": fn, "timeout": r.choice([3, 30, 60]), "environment": {}}
            resp = {"functionName": fn, "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}",
                    "runtime": "python3.12", "state": "Active", "lastUpdateStatus": "InProgress"}
            ids, rule = [fn], kind
            rec = self.base(t, p, "lambda.amazonaws.com", "UpdateFunctionConfiguration20150331v2", False, "Management")
        elif kind == "dynamodb_delete_table":
            tb = r.choice(acc.tables)
            req = {"tableName": tb}
            resp = {"tableDescription": {"tableName": tb, "tableStatus": "DELETING", "itemCount": 0,
                                         "tableSizeBytes": 0, "tableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{tb}"}}
            ids, rule = [tb], kind
            rec = self.base(t, p, "dynamodb.amazonaws.com", "DeleteTable", False, "Management")
            rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::DynamoDB::Table",
                                 "ARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{tb}"}]
        elif kind == "s3_delete_bucket":
            b = r.choice(acc.buckets)
            req, resp, ids, rule = {"bucketName": b, "Host": f"{b}.s3.{REGION}.amazonaws.com"}, None, [b], kind
            rec = self.base(t, p, "s3.amazonaws.com", "DeleteBucket", False, "Management")
            rec["resources"] = [{"type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
        elif kind == "rds_delete_db_instance":
            db = r.choice(acc.db_instances)
            req = {"dBInstanceIdentifier": db, "skipFinalSnapshot": False,
                   "finalDBSnapshotIdentifier": f"{db}-final-{g.hexs(6)}", "deleteAutomatedBackups": False}
            resp = {"dBInstanceIdentifier": db, "dBInstanceStatus": "deleting", "engine": "postgres",
                    "dBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{db}"}
            ids, rule = [db], kind
            rec = self.base(t, p, "rds.amazonaws.com", "DeleteDBInstance", False, "Management")
        elif kind == "kms_schedule_key_deletion":
            k = r.choice(acc.keys)
            req = {"keyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{k}", "pendingWindowInDays": 7}
            resp = {"keyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{k}", "deletionDate": "May 8, 2024, 12:00:00 AM",
                    "keyState": "PendingDeletion", "pendingWindowInDays": 7}
            ids, rule = [k], kind
            rec = self.base(t, p, "kms.amazonaws.com", "ScheduleKeyDeletion", False, "Management")
            rec["resources"] = [{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                                 "ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{k}"}]
        elif kind == "cloudtrail_stop_logging":
            req = {"name": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{TRAIL}"}
            resp, ids, rule = None, [TRAIL], kind
            rec = self.base(t, p, "cloudtrail.amazonaws.com", "StopLogging", False, "Management")
        else:
            raise ValueError(kind)
        rec["requestParameters"] = req
        rec["responseElements"] = resp
        self.finish(rec, False, "Management", p)
        return rec, [(rule, i) for i in ids]


DESTRUCTIVE_KINDS = [
    ("ssm_delete_parameter", 20), ("ssm_overwrite_parameter", 15), ("ec2_terminate_instances", 15),
    ("ec2_stop_instances", 15), ("lambda_delete_function", 8), ("lambda_update_function_configuration", 7),
    ("dynamodb_delete_table", 5), ("s3_delete_bucket", 5), ("rds_delete_db_instance", 4),
    ("kms_schedule_key_deletion", 3), ("cloudtrail_stop_logging", 3),
]
NEAR_MISS_KINDS = [("failed", 35), ("autoscaling", 30), ("cloudformation", 10), ("recovery_role", 10),
                   ("condition_false", 15)]


def _pick(r, pairs):
    total = sum(w for _, w in pairs)
    x = r.random() * total
    for k, w in pairs:
        x -= w
        if x < 0:
            return k
    return pairs[-1][0]


def generate(out: str, n: int, seed: int, rate: float, destructive_rate: float,
             records_per_file: int, n_users: int, n_roles: int, compresslevel: int) -> dict:
    g = Gen(seed)
    r = g.r
    acc = Account(g)
    cat = _catalogue(g, acc)
    principals = _principals(g, n_users, n_roles)
    _assign_weights_and_profiles(g, principals)
    builder = Builder(g, acc, cat)
    cum = list(accumulate(p.weight for p in principals))
    total_w = cum[-1]
    humans = [p for p in principals if p.human]
    autoscaling = next(p for p in principals if p.key.endswith("AWSServiceRoleForAutoScaling"))
    recovery_arn = f"arn:aws:iam::{ACCOUNT}:role/aiops-recovery"
    recovery = Principal("recovery", {
        "type": "AssumedRole", "principalId": "AROA" + g.upper(17) + ":aiops",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/aiops-recovery/aiops", "accountId": ACCOUNT,
        "accessKeyId": "ASIA" + g.upper(16),
        "sessionContext": _session_context(g, recovery_arn, "aiops-recovery", iso(START.timestamp()), False)},
        False, 0.0, recovery_arn)
    recovery.ips, recovery.agents = ["10.0.12.7"], [USER_AGENTS_SDK[4]]

    t0 = START.timestamp()
    duration = n / rate
    # Bursts: one every ~50 minutes of event time (at least one): (start, end, principal, api, error).
    bursts = []
    n_bursts = max(1, int(duration // 3000))
    for b in range(n_bursts):
        start = t0 + duration * (b + 0.5) / n_bursts
        if b % 2 == 0:
            p = r.choice([x for x in principals if x.kind in ("lambda", "ecs", "ec2")])
            bursts.append((start, start + 180, p, r.choice(p.apis), None, 0.1))
        else:
            p = r.choice([x for x in humans if x.identity["type"] == "IAMUser"])
            bursts.append((start, start + 120, p, "iam.ListRoles" if "iam.ListRoles" in p.apis else p.apis[0],
                           "AccessDenied", 0.05))

    expected = []           # (rule, event_id, resource_id)
    counts = {"destructive_calls": 0, "near_misses": 0, "errors": 0, "burst_events": 0}
    by_kind: dict[str, int] = {}
    period_records: list = []   # records of the current delivery period, in event-time order
    files = []
    period_start = t0
    total_bytes = 0
    digest_hours = set()

    def flush_period(ps: float, recs: list):
        nonlocal total_bytes
        if not recs:
            return
        n_files = max(1, math.ceil(len(recs) / records_per_file))
        buckets = [[] for _ in range(n_files)]
        for rec in recs:
            buckets[r.randrange(n_files)].append(rec)
        delivered = ps + DELIVERY_PERIOD_S + r.randint(60, 180)
        for b in buckets:
            if not b:
                continue
            d = dt.datetime.fromtimestamp(delivered, tz=dt.timezone.utc)
            folder = os.path.join(out, "AWSLogs", ACCOUNT, "CloudTrail", REGION, d.strftime("%Y"), d.strftime("%m"),
                                  d.strftime("%d"))
            os.makedirs(folder, exist_ok=True)
            name = f"{ACCOUNT}_CloudTrail_{REGION}_{d.strftime('%Y%m%dT%H%MZ')}_{g.alnum(16)}.json.gz"
            data = json.dumps({"Records": b}, separators=(",", ":")).encode()
            total_bytes += len(data)
            path = os.path.join(folder, name)
            with open(path + ".tmp", "wb") as f:
                f.write(gzip.compress(data, compresslevel=compresslevel, mtime=0))
            os.replace(path + ".tmp", path)
            files.append(path)
        digest_hours.add(int(delivered // 3600))

    t = t0
    for i in range(n):
        # Poisson arrivals with a mild diurnal modulation (peak mid-afternoon UTC).
        mod = 1.0 + 0.25 * math.sin(2 * math.pi * ((t % 86400) / 86400 - 0.35))
        t += r.expovariate(rate * mod)
        if t >= period_start + DELIVERY_PERIOD_S:
            flush_period(period_start, period_records)
            period_records = []
            while t >= period_start + DELIVERY_PERIOD_S:
                period_start += DELIVERY_PERIOD_S
        x = r.random()
        if x < destructive_rate:
            kind = _pick(r, DESTRUCTIVE_KINDS)
            p = r.choice(humans)
            rec, findings = builder.destructive(t, p, kind)
            for rule, rid in findings:
                expected.append((rule, rec["eventID"], rid))
            counts["destructive_calls"] += 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
        elif x < 2 * destructive_rate:
            miss = _pick(r, NEAR_MISS_KINDS)
            counts["near_misses"] += 1
            by_kind["near_miss_" + miss] = by_kind.get("near_miss_" + miss, 0) + 1
            if miss == "failed":
                p = r.choice(humans)
                rec, _ = builder.destructive(t, p, _pick(r, DESTRUCTIVE_KINDS))
                rec["errorCode"] = "AccessDenied" if rec["eventSource"] != "ec2.amazonaws.com" else "Client.UnauthorizedOperation"
                rec["errorMessage"] = f"User: {p.identity.get('arn')} is not authorized to perform: {rec['eventName']}"
                rec["responseElements"] = None
            elif miss == "autoscaling":
                rec, _ = builder.destructive(t, autoscaling, "ec2_terminate_instances")
            elif miss == "cloudformation":
                p = next(x for x in principals if x.kind == "terraform")
                rec, _ = builder.destructive(t, p, "lambda_delete_function")
                rec["userIdentity"] = dict(p.identity, invokedBy="cloudformation.amazonaws.com")
                rec["sourceIPAddress"] = "cloudformation.amazonaws.com"
                rec["userAgent"] = "cloudformation.amazonaws.com"
            elif miss == "recovery_role":
                rec, _ = builder.destructive(t, recovery, "ssm_overwrite_parameter")
            else:
                p = r.choice(humans)
                api = "ssm.PutParameter.new" if r.random() < 0.5 else "rds.ModifyDBInstance.keep"
                rec = builder.call(t, p, api, None)
        else:
            burst = None
            for b in bursts:
                if b[0] <= t < b[1] and r.random() < b[5]:
                    burst = b
                    break
            if burst:
                p, api, error = burst[2], burst[3], burst[4]
                counts["burst_events"] += 1
            else:
                p = principals[bisect_right(cum, r.random() * total_w)]
                api = p.apis[bisect_right(p.cum, r.random() * p.cum[-1])]
                e = r.random()
                error = None
                if e < 0.025:
                    pool = cat[api]["errors"]
                    error = pool[0] if e < 0.02 or len(pool) == 1 else pool[1]
                    if error == "AccessDenied" and cat[api]["source"] not in ("s3.amazonaws.com",) and r.random() < 0.5:
                        error = "AccessDeniedException"
                elif e < 0.03:
                    error = "Client.RequestLimitExceeded" if cat[api]["source"] == "ec2.amazonaws.com" else "ThrottlingException"
            rec = builder.call(t, p, api, error)
            if error:
                counts["errors"] += 1
        period_records.append(rec)
    flush_period(period_start, period_records)

    # One digest file per hour of delivery (skipped by readers: no Records).
    for h in sorted(digest_hours):
        d = dt.datetime.fromtimestamp(h * 3600 + 3600, tz=dt.timezone.utc)
        folder = os.path.join(out, "AWSLogs", ACCOUNT, "CloudTrail-Digest", REGION, d.strftime("%Y"),
                              d.strftime("%m"), d.strftime("%d"))
        os.makedirs(folder, exist_ok=True)
        digest = {
            "awsAccountId": ACCOUNT,
            "digestStartTime": iso(h * 3600), "digestEndTime": iso(h * 3600 + 3600),
            "digestS3Bucket": f"aws-cloudtrail-logs-{ACCOUNT}-{g.hexs(8)}",
            "digestS3Object": f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{d.strftime('%Y/%m/%d')}/x.json.gz",
            "digestPublicKeyFingerprint": g.hexs(32), "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": iso(h * 3600 + 3599), "oldestEventTime": iso(h * 3600),
            "previousDigestS3Bucket": None, "previousDigestS3Object": None, "previousDigestHashValue": None,
            "previousDigestHashAlgorithm": None, "previousDigestSignature": None,
            "logFiles": [],
        }
        name = f"{ACCOUNT}_CloudTrail-Digest_{REGION}_{TRAIL}_{REGION}_{d.strftime('%Y%m%dT%H%M%SZ')}.json.gz"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(gzip.compress(json.dumps(digest, separators=(",", ":")).encode(), mtime=0))

    by_rule: dict[str, int] = {}
    for rule, _, _ in expected:
        by_rule[rule] = by_rule.get(rule, 0) + 1
    manifest = {
        "generator": "benches/python/gen_cloudtrail.py",
        "args": {"events": n, "seed": seed, "rate": rate, "destructive_rate": destructive_rate,
                 "records_per_file": records_per_file, "users": n_users, "roles": n_roles},
        "input_dir": os.path.join(out, "AWSLogs"),
        "events": n,
        "files": len(files),
        "digest_files": len(digest_hours),
        "json_bytes": total_bytes,
        "gzip_bytes": sum(os.path.getsize(f) for f in files),
        "principals": len(principals) + 1,
        "first_event_time": iso(t0),
        "last_event_time": iso(t),
        "counts": counts,
        "calls_by_kind": dict(sorted(by_kind.items())),
        "expected_change_findings": len(expected),
        "expected_change_findings_by_rule": dict(sorted(by_rule.items())),
        "bursts": [{"start": iso(b[0]), "end": iso(b[1]), "principal": b[2].key, "api": b[3], "error": b[4]}
                   for b in bursts],
        "change_findings": [{"rule": a, "event_id": b, "resource_id": c} for a, b, c in sorted(expected)],
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (AWSLogs/ and manifest.json are written in it)")
    ap.add_argument("--events", type=int, default=1_000_000, help="number of CloudTrail records (default 1000000)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--rate", type=float, default=70.0, help="mean events per second of event time (default 70)")
    ap.add_argument("--destructive-rate", type=float, default=1e-4,
                    help="share of events that are destructive calls matched by the default rules (default 0.0001)")
    ap.add_argument("--records-per-file", type=int, default=2500, help="most records per log file (default 2500)")
    ap.add_argument("--users", type=int, default=1200, help="IAM users (default 1200)")
    ap.add_argument("--roles", type=int, default=1800, help="application roles (default 1800)")
    ap.add_argument("--compresslevel", type=int, default=6, help="gzip level (default 6)")
    a = ap.parse_args(argv)
    if a.events < 1 or a.rate <= 0 or not (0 <= a.destructive_rate <= 0.5) or a.records_per_file < 1:
        ap.error("--events, --rate and --records-per-file must be positive, --destructive-rate in [0, 0.5]")
    if os.path.exists(os.path.join(a.out, "AWSLogs")):
        ap.error(f"{a.out}/AWSLogs already exists; choose an empty directory")
    os.makedirs(a.out, exist_ok=True)
    m = generate(a.out, a.events, a.seed, a.rate, a.destructive_rate, a.records_per_file, a.users, a.roles,
                 a.compresslevel)
    summary = {k: v for k, v in m.items() if k != "change_findings"}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
