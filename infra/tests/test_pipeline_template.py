"""The pipeline.toml template of the stages: every placeholder is supplied by stages.tf, and the
rendered file is valid TOML with the deployment's names in the expected keys."""

from __future__ import annotations

import re
import tomllib
import unittest

from . import util

TEMPLATE = util.TERRAFORM / "templates" / "pipeline.toml.tftpl"
STAGES = util.TERRAFORM / "stages.tf"


def template_placeholders() -> set[str]:
    return set(re.findall(r"\$\{([a-z_]+)\}", TEMPLATE.read_text(encoding="utf-8")))


def templatefile_keys() -> set[str]:
    text = STAGES.read_text(encoding="utf-8")
    start = text.index('templatefile("${path.module}/templates/pipeline.toml.tftpl", {')
    end = text.index("})", start)
    return set(re.findall(r"^\s+([a-z_]+)\s+=", text[start:end], flags=re.M))


class PipelineTemplateTest(unittest.TestCase):
    def test_placeholders_match_the_templatefile_call(self) -> None:
        self.assertEqual(template_placeholders(), templatefile_keys())

    def test_rendered_toml(self) -> None:
        values = {k: f"value-of-{k}" for k in template_placeholders()}
        values["confidence_threshold"] = "0.8"
        text = re.sub(r"\$\{([a-z_]+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))
        doc = tomllib.loads(text)
        self.assertEqual(doc["mode"], "aws")
        self.assertEqual(doc["act"]["confidence_threshold"], 0.8)
        self.assertEqual(
            doc["act"]["recovery"],
            {"executor": "codebuild", "apply_project": "value-of-apply_project", "verify_project": "value-of-verify_project"},
        )
        self.assertEqual(doc["aws"]["raw_stream"], "value-of-raw_stream")
        self.assertEqual(doc["aws"]["sns_topic_arn"], "value-of-topic_arn")
        self.assertEqual(doc["aws"]["metrics_namespace"], "aiops")


if __name__ == "__main__":
    unittest.main()
