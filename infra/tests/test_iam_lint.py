"""Tests of infra/tools/iam_lint.py and infra/tools/checkov_skips.py."""

from __future__ import annotations

import pathlib
import tempfile
import textwrap
import unittest

from . import util

import checkov_skips  # noqa: E402
import iam_lint  # noqa: E402

# Minimal stage documents that satisfy rule 6, so each test isolates one violation.
STAGES_OK = """
data "aws_iam_policy_document" "stage_common" {
  statement {
    actions   = ["kinesis:GetRecords"]
    resources = ["arn:aws:kinesis:us-east-1:1:stream/x"]
  }
}
data "aws_iam_policy_document" "ingest" {
  statement {
    actions   = ["kinesis:PutRecords"]
    resources = ["arn:aws:kinesis:us-east-1:1:stream/events"]
  }
}
data "aws_iam_policy_document" "detect" {
  statement {
    actions   = ["kinesis:PutRecords"]
    resources = ["arn:aws:kinesis:us-east-1:1:stream/decisions"]
  }
}
data "aws_iam_policy_document" "act" {
  statement {
    actions   = ["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild", "codebuild:ListBuildsForProject", "sns:Publish"]
    resources = ["arn:aws:codebuild:us-east-1:1:project/p", "arn:aws:sns:us-east-1:1:t"]
  }
  statement {
    actions   = ["bedrock:InvokeModel"]
    resources = ["arn:aws:bedrock:us-east-1::foundation-model/m"]
  }
}
"""


def lint(hcl_text: str, with_stages: bool = True) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        text = textwrap.dedent(hcl_text) + (STAGES_OK if with_stages else "")
        (pathlib.Path(d) / "main.tf").write_text(text, encoding="utf-8")
        docs, locals_ = iam_lint.collect(pathlib.Path(d))
    return iam_lint.lint(docs, locals_)


class IamLintTest(unittest.TestCase):
    def test_clean_documents_pass(self) -> None:
        self.assertEqual(lint(""), [])

    def test_wildcard_actions(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "x" {
              statement {
                sid       = "All"
                actions   = ["*", "s3:*", "s3:Get*"]
                resources = ["arn:aws:s3:::b/*"]
              }
            }
            """
        )
        self.assertEqual(
            problems,
            [
                "x/All: identity policy allows wildcard action '*'",
                "x/All: identity policy allows wildcard action 's3:*'",
                "x/All: identity policy allows wildcard action 's3:Get*'",
            ],
        )

    def test_star_resource_only_for_non_resource_actions(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "x" {
              statement {
                sid       = "Ok"
                actions   = ["ec2:DescribeInstances", "cloudwatch:PutMetricData"]
                resources = ["*"]
              }
              statement {
                sid       = "Bad"
                actions   = ["ec2:DescribeInstances", "s3:GetObject"]
                resources = ["*"]
              }
            }
            """
        )
        self.assertEqual(problems, ["x/Bad: Resource '*' for actions that can be scoped to a resource: ['s3:GetObject']"])

    def test_unknown_actions(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "x" {
              statement {
                sid       = "Typo"
                actions   = ["s3:GetObjekt", "s3:GetObject", "nosuchservice:Get"]
                resources = ["arn:aws:s3:::b/*"]
              }
            }
            """
        )
        self.assertEqual(problems, ["x/Typo: 's3:GetObjekt' is not an IAM action", "x/Typo: 'nosuchservice:Get' is not an IAM action"])

    def test_dynamic_statements_are_linted(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "x" {
              dynamic "statement" {
                for_each = var.on ? [1] : []
                content {
                  sid       = "Hidden"
                  actions   = ["iam:PassRole"]
                  resources = ["*"]
                }
              }
            }
            """
        )
        self.assertEqual(problems, ["x/Hidden: Resource '*' for actions that can be scoped to a resource: ['iam:PassRole']"])

    def test_local_action_lists_are_resolved(self) -> None:
        problems = lint(
            """
            locals {
              reads = ["s3:GetObject", "s3:*"]
            }
            data "aws_iam_policy_document" "x" {
              statement {
                sid       = "Local"
                actions   = local.reads
                resources = ["arn:aws:s3:::b/*"]
              }
            }
            """
        )
        self.assertEqual(problems, ["x/Local: identity policy allows wildcard action 's3:*'"])

    def test_resource_policy_principal_star_and_deny_statements(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "bucket" {
              statement {
                sid     = "DenyInsecureTransport"
                effect  = "Deny"
                actions = ["s3:*"]
                resources = ["*"]
                principals {
                  type        = "*"
                  identifiers = ["*"]
                }
              }
              statement {
                sid       = "Public"
                actions   = ["s3:GetObject"]
                resources = ["arn:aws:s3:::b/*"]
                principals {
                  type        = "AWS"
                  identifiers = ["*"]
                }
              }
            }
            """
        )
        self.assertEqual(problems, ["bucket/Public: resource policy allows the principal '*'"])

    def test_trust_policy_needs_condition(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "assume" {
              statement {
                sid     = "Trust"
                actions = ["sts:AssumeRole"]
                principals {
                  type        = "Service"
                  identifiers = ["codebuild.amazonaws.com"]
                }
              }
            }
            """
        )
        self.assertEqual(problems, ["assume/Trust: service trust policy without an aws:SourceAccount/aws:SourceArn condition"])

    def test_recovery_documents_never_destroy(self) -> None:
        problems = lint(
            """
            data "aws_iam_policy_document" "recovery_tables" {
              statement {
                sid       = "Tables"
                actions   = ["dynamodb:CreateTable", "dynamodb:DeleteTable", "ec2:TerminateInstances"]
                resources = ["arn:aws:dynamodb:us-east-1:1:table/app-*"]
              }
            }
            """
        )
        self.assertEqual(
            problems,
            [
                "recovery_tables/Tables: recovery builds must not destroy: dynamodb:DeleteTable",
                "recovery_tables/Tables: recovery builds must not destroy: ec2:TerminateInstances",
            ],
        )

    def test_stage_matrix(self) -> None:
        # Bedrock in detect (enrichment runs in act), metrics in ingest (the code publishes none),
        # act without StartBuild and with a service outside its own.
        text = STAGES_OK.replace(
            'actions   = ["kinesis:PutRecords"]\n    resources = ["arn:aws:kinesis:us-east-1:1:stream/decisions"]',
            'actions   = ["kinesis:PutRecords", "bedrock:InvokeModel"]\n    resources = ["arn:aws:kinesis:us-east-1:1:stream/decisions"]',
        )
        text = text.replace(
            'actions   = ["kinesis:PutRecords"]\n    resources = ["arn:aws:kinesis:us-east-1:1:stream/events"]',
            'actions   = ["kinesis:PutRecords", "cloudwatch:PutMetricData"]\n    resources = ["arn:aws:kinesis:us-east-1:1:stream/events"]',
        )
        text = text.replace(
            '["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild", "codebuild:ListBuildsForProject", "sns:Publish"]',
            '["codebuild:BatchGetBuilds", "codebuild:StopBuild", "codebuild:ListBuildsForProject", "sns:Publish", "iam:PassRole"]',
        )
        problems = lint(text, with_stages=False)
        self.assertEqual(
            problems,
            [
                "ingest: task role uses cloudwatch:PutMetricData, outside the stage's services ['dynamodb', 'kinesis', 'kms', 's3']",
                "detect: task role uses bedrock:InvokeModel, outside the stage's services ['dynamodb', 'kinesis', 'kms', 's3']",
                "detect: task role has bedrock:InvokeModel, which only act may have",
                "act: task role uses iam:PassRole, outside the stage's services ['bedrock', 'codebuild', 'dynamodb', 'kinesis', 'kms', 's3', 'sns']",
                "act: task role lacks codebuild:StartBuild, which the stage needs",
            ],
        )

    def test_sources_and_the_single_profile_role(self) -> None:
        # act takes its calls from a source document; the single profile's role "all" must have
        # act's calls too, and may have them.
        text = STAGES_OK.replace(
            'data "aws_iam_policy_document" "act" {',
            'data "aws_iam_policy_document" "act_own" {',
        )
        text += """
data "aws_iam_policy_document" "act" {
  source_policy_documents = [data.aws_iam_policy_document.stage_common["act"].json, data.aws_iam_policy_document.act_own.json]
}
data "aws_iam_policy_document" "all" {
  source_policy_documents = [data.aws_iam_policy_document.stage_common["all"].json]
  statement {
    actions   = ["bedrock:InvokeModel", "sns:Publish"]
    resources = ["arn:aws:bedrock:us-east-1::foundation-model/m", "arn:aws:sns:us-east-1:1:t"]
  }
}
"""
        self.assertEqual(
            lint(text, with_stages=False),
            [
                "all: task role lacks codebuild:StartBuild, which the stage needs",
                "all: task role lacks codebuild:BatchGetBuilds, which the stage needs",
                "all: task role lacks codebuild:StopBuild, which the stage needs",
                "all: task role lacks codebuild:ListBuildsForProject, which the stage needs",
            ],
        )

    def test_the_deployment_is_clean(self) -> None:
        docs, locals_ = iam_lint.collect(util.TERRAFORM)
        for name in ("stage_common", "ingest", "detect", "act", "codebuild_base", "recovery_refresh_read_only", "kms"):
            self.assertIn(name, docs)
        self.assertEqual(iam_lint.lint(docs, locals_), [])


class CheckovSkipsTest(unittest.TestCase):
    def test_skips_need_an_id_and_a_reason(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            (pathlib.Path(d) / "a.tf").write_text(
                textwrap.dedent(
                    """
                    resource "aws_s3_bucket" "a" {
                      #checkov:skip=CKV_AWS_18:This bucket is the access-log target itself.
                      #checkov:skip=CKV_AWS_144
                      #checkov:skip=CKV2_AWS_62:too short
                      #checkov:skip=BC_AWS_1:A reason that is long enough to pass the length rule.
                      bucket = "a"
                    }
                    """
                ),
                encoding="utf-8",
            )
            problems = checkov_skips.offences(pathlib.Path(d))
        self.assertEqual(
            [p.split(": ", 1)[1] for p in problems],
            [
                "skip of CKV_AWS_144 without a written reason (at least 20 characters)",
                "skip of CKV2_AWS_62 without a written reason (at least 20 characters)",
                "skip of 'BC_AWS_1', not a checkov check id",
            ],
        )

    def test_the_deployment_skips_all_have_reasons(self) -> None:
        self.assertEqual(checkov_skips.offences(util.INFRA), [])


if __name__ == "__main__":
    unittest.main()
