"""Unit tests of infra/tools and of the CodeBuild buildspecs (run by infra/check)."""
