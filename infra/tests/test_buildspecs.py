"""Tests of the CodeBuild buildspecs (infra/terraform/buildspec/*.yml).

The shell of each buildspec is run here with bash and a fake `terraform` on PATH that records its
arguments and exits with a chosen status, so the target check, the commands and the verify exit-code
handling are exercised, not only read.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
import unittest

import yaml  # PyYAML, installed with checkov (infra/requirements.txt)

from . import util

BUILDSPECS = util.TERRAFORM / "buildspec"


def load(name: str) -> dict:
    with (BUILDSPECS / name).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


FAKE_TERRAFORM = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_TF_LOG"
exit "${FAKE_TF_EXIT:-0}"
"""


class Buildspec:
    """Runs one phase's commands of a buildspec in bash, as CodeBuild's shell would, in order."""

    def __init__(self, name: str) -> None:
        self.spec = load(name)
        self.dir = tempfile.TemporaryDirectory()
        bin_dir = pathlib.Path(self.dir.name)
        (bin_dir / "terraform").write_text(FAKE_TERRAFORM, encoding="utf-8")
        (bin_dir / "terraform").chmod(0o755)
        self.log = bin_dir / "terraform.log"

    def close(self) -> None:
        self.dir.cleanup()

    def run(self, phase: str, target: str, tf_exit: int = 0) -> tuple[int, str, list[str]]:
        script = "\n".join(self.spec["phases"][phase]["commands"])
        env = {
            "PATH": f"{self.dir.name}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "FAKE_TF_LOG": str(self.log),
            "FAKE_TF_EXIT": str(tf_exit),
            "TF_TARGET": target,
            "TF_STATE_BUCKET": "state-bucket",
            "TF_STATE_KEY": "platform/terraform.tfstate",
            "AWS_REGION": "us-east-1",
            "CORRELATION_ID": "c-1",
            "RESOURCE_TYPE": "ssm_parameter",
            "RESOURCE_ID": "/prod/db/password",
        }
        if self.log.exists():
            self.log.unlink()
        p = subprocess.run(["bash", "-c", "set -e\n" + script], env=env, capture_output=True, text=True, timeout=60)
        calls = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        return p.returncode, p.stdout + p.stderr, calls


VALID_TARGETS = [
    "aws_ssm_parameter.db_password",
    "aws_instance.web[0]",
    'aws_ssm_parameter.by_name["/prod/db/password"]',
    'module.app["blue"].module.db.aws_db_instance.main',
    "module.edge.aws_lambda_function.handler",
]
INVALID_TARGETS = [
    "",
    "none",
    "-destroy",
    "aws_instance",
    "aws_instance.web; rm -rf /",
    "aws_instance.web\n-destroy",
    'aws_ssm_parameter.p["a\nb"]',
    "aws_instance.web -lock=false",
    "data.aws_ami.latest.id.extra ",
]


class ApplyBuildspecTest(unittest.TestCase):
    def setUp(self) -> None:
        self.b = Buildspec("apply.yml")

    def tearDown(self) -> None:
        self.b.close()

    def test_shape(self) -> None:
        self.assertEqual(self.b.spec["version"], 0.2)
        self.assertEqual(list(self.b.spec["phases"]), ["install", "pre_build", "build"])
        self.assertEqual(self.b.spec["phases"]["install"]["on-failure"], "ABORT")
        self.assertEqual(self.b.spec["phases"]["pre_build"]["on-failure"], "ABORT")

    def test_valid_targets_reach_init(self) -> None:
        for target in VALID_TARGETS:
            code, out, calls = self.b.run("pre_build", target)
            self.assertEqual(code, 0, f"{target!r}: {out}")
            self.assertEqual(
                calls,
                [
                    "init -input=false -backend-config=bucket=state-bucket -backend-config=key=platform/terraform.tfstate "
                    "-backend-config=region=us-east-1 -backend-config=use_lockfile=true"
                ],
            )

    def test_invalid_targets_are_refused_before_terraform_runs(self) -> None:
        for target in INVALID_TARGETS:
            code, out, calls = self.b.run("pre_build", target)
            self.assertEqual(code, 1, repr(target))
            self.assertIn("not a Terraform resource address", out)
            self.assertEqual(calls, [], repr(target))

    def test_apply_command(self) -> None:
        code, _, calls = self.b.run("build", "aws_instance.web[0]")
        self.assertEqual(code, 0)
        self.assertEqual(calls, ["apply -input=false -no-color -lock-timeout=10m -target=aws_instance.web[0] -auto-approve"])

    def test_apply_failure_fails_the_build(self) -> None:
        code, _, _ = self.b.run("build", "aws_instance.web[0]", tf_exit=1)
        self.assertEqual(code, 1)


class VerifyBuildspecTest(unittest.TestCase):
    def setUp(self) -> None:
        self.b = Buildspec("verify.yml")

    def tearDown(self) -> None:
        self.b.close()

    def test_same_install_and_target_check_as_apply(self) -> None:
        apply = load("apply.yml")
        self.assertEqual(self.b.spec["phases"]["install"], apply["phases"]["install"])
        self.assertEqual(self.b.spec["phases"]["pre_build"]["commands"][1:], apply["phases"]["pre_build"]["commands"][1:])

    def test_plan_command(self) -> None:
        code, out, calls = self.b.run("build", "aws_ssm_parameter.db_password", tf_exit=0)
        self.assertEqual(calls, ["plan -input=false -no-color -lock-timeout=10m -detailed-exitcode -target=aws_ssm_parameter.db_password"])
        self.assertEqual(code, 0)
        self.assertIn("verified: aws_ssm_parameter.db_password matches its configuration", out)

    def test_drift_fails_the_build(self) -> None:
        code, out, _ = self.b.run("build", "aws_ssm_parameter.db_password", tf_exit=2)
        self.assertEqual(code, 2)
        self.assertIn("not verified: aws_ssm_parameter.db_password still differs from its configuration", out)

    def test_plan_error_fails_the_build(self) -> None:
        code, out, _ = self.b.run("build", "aws_ssm_parameter.db_password", tf_exit=1)
        self.assertEqual(code, 1)
        self.assertIn("terraform plan failed with exit code 1", out)


if __name__ == "__main__":
    unittest.main()
