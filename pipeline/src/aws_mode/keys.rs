//! Names aws mode derives: Kinesis partition keys and worker ids.

use aiops_core::stable_hash;

/// A Kinesis partition key for `key`: itself when 1 to 256 characters, else its first 200
/// characters and a 64-bit stable hash of the whole (same key, same shard); `-` when empty.
pub fn partition_key(key: &str) -> String {
    if key.is_empty() {
        return "-".to_string();
    }
    if key.chars().count() <= aiops_aws::producer::MAX_PARTITION_KEY_CHARS {
        return key.to_string();
    }
    let head: String = key.chars().take(200).collect();
    format!("{head}#{:016x}", stable_hash(&[key.as_bytes()]))
}

/// The default worker id: the host name (from `/proc/sys/kernel/hostname`, else `HOSTNAME`,
/// else `aiops`) and 8 random hex digits.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "aiops".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", suffix.get(..8).unwrap_or(&suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_fit_kinesis() {
        assert_eq!(partition_key("logs|/aws/lambda/f"), "logs|/aws/lambda/f");
        assert_eq!(partition_key(""), "-");
        let long = "x".repeat(300);
        let k = partition_key(&long);
        assert_eq!(k.chars().count(), 200 + 1 + 16);
        assert_eq!(k, partition_key(&long));
        assert_ne!(k, partition_key(&"x".repeat(301)));
    }

    #[test]
    fn worker_ids_are_unique_and_named_after_the_host() {
        let a = default_worker_id();
        let b = default_worker_id();
        assert_ne!(a, b);
        let (host, suffix) = a.rsplit_once('-').unwrap();
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 8);
    }
}
