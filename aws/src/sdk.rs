//! Loading the AWS SDK configuration.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Loads the SDK configuration from the standard chain (environment, profile, SSO, instance
/// role). `region` overrides the chain's region when given. `endpoint_url` overrides every
/// client's endpoint (for local emulators); without it the SDK still honours the standard
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables
/// (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>).
/// Nothing secret is logged.
pub async fn load(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An S3 client from `sdk`; `force_path_style` addresses buckets as `endpoint/bucket` (what
/// local emulators need) instead of `bucket.endpoint`.
pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Whether an endpoint override is in effect: `endpoint_url` given, or one of the standard
/// variables `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` set (the SDK honours them).
pub fn endpoint_overridden(endpoint_url: Option<&str>) -> bool {
    endpoint_url.is_some_and(|u| !u.is_empty())
        || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}
