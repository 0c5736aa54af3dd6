# Terraform and provider versions. The module is tested (terraform validate, checkov) against
# hashicorp/aws 5.100.0; any 5.x from 5.80 on has every argument it uses.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        "app"        = var.name
        "managed-by" = "terraform"
      },
      var.tags,
    )
  }
}
